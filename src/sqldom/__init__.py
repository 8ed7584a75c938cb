"""sqldom: an incremental build engine whose single source of truth is a SQLite database.

This module is the API for ``build.py`` authors::

    import sqldom

    @sqldom.parser("**/*.md")
    def parse(source): ...

    @sqldom.writer("**/*.md", output="{dir}{stem}.html")
    def write(doc, site): ...

    @sqldom.page("index.html")
    def index(site): ...

Importing it must stay cheap: no SQLAlchemy, no markdown-it, no dagger. It is
imported before every command's module, the no-op probe's included, so the API
itself is loaded on first use (``__getattr__``): its dataclass costs more than
a fifth of a no-op build's imports.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["UserRule", "__version__", "page", "parser", "writer"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from sqldom.api import UserRule, page, parser, writer


def __getattr__(name: str) -> Any:
    if name in ("UserRule", "page", "parser", "writer"):
        from sqldom import api
        return getattr(api, name)
    raise AttributeError(f"module 'sqldom' has no attribute {name!r}")
