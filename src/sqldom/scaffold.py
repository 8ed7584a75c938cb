"""``sqldom init``: a small working project. Existing files are never overwritten."""

from __future__ import annotations

from pathlib import Path

import click

FILES = {
    "sqldom.yaml": """\
# sqldom configuration. Every key is optional.
# build_py: build.py        # the file holding your transforms
""",
    "build.py": '''\
"""Your transforms. Functions decorated here are tried before the built-in rules."""

import sqldom


@sqldom.page("index.html")
def index(site):
    """A list of every Markdown page, linked by title. Rebuilds when a title or the set of pages changes."""
    items = []
    for path in site.glob("**/*.md"):
        title = site.fact(path, "title")
        href = path[:-3] + ".html"
        items.append(f'<li><a href="{href}">{title}</a></li>')
    return (
        "<!DOCTYPE html>\\n<html lang=\\"en\\">\\n<head><meta charset=\\"utf-8\\"><title>Index</title></head>\\n"
        "<body>\\n<h1>Index</h1>\\n<ul>\\n" + "\\n".join(items) + "\\n</ul>\\n</body>\\n</html>\\n"
    )
''',
    "content/hello.md": """\
---
title: Hello, sqldom
---

# Hello, sqldom

This page is built from `content/hello.md` into `build/hello.html`.
An empty link gets its target's title: [](notes.txt).
""",
    "content/notes.txt": """\
Notes

The first line of a text file is its title.
""",
}


def init(root: Path) -> int:
    created = []
    for rel, text in FILES.items():
        path = root / rel
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        created.append(rel)
    if created:
        click.echo("created " + ", ".join(created))
        click.echo("next: sqldom build")
    else:
        click.echo("nothing to do: the project files already exist")
    return 0
