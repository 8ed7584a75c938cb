"""sqldom: an incremental build engine whose single source of truth is a SQLite database.

This module is the API for ``build.py`` authors::

    import sqldom

    @sqldom.parser("**/*.md")
    def parse(source): ...

    @sqldom.writer("**/*.md", output="{dir}{stem}.html")
    def write(doc, site): ...

    @sqldom.page("index.html")
    def index(site): ...

Importing it must stay cheap: no SQLAlchemy, no markdown-it, no dagger.
"""

from __future__ import annotations

from sqldom.api import UserRule, page, parser, writer

__version__ = "0.1.0"

__all__ = ["UserRule", "__version__", "page", "parser", "writer"]
