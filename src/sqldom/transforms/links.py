"""Relative links between documents: resolve, check, fill empty ones, rewrite .md to .html."""

from __future__ import annotations

import html
import posixpath
import re
from urllib.parse import unquote

from sqldom.model import Problem
from sqldom.site import Site

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def split_href(href: str) -> tuple[str, str]:
    """Split ``a.md?v=1#x`` into (``a.md``, ``?v=1#x``) at the first ``?`` or ``#``."""
    cut = [i for i in (href.find("?"), href.find("#")) if i != -1]
    if not cut:
        return href, ""
    i = min(cut)
    return href[:i], href[i:]


def resolve(href: str, doc_path: str) -> str | None:
    """The content-relative source a link points to, ``""`` if it leaves content/, None if not local."""
    href = href.strip()
    if not href or href.startswith(("#", "//")) or _SCHEME.match(href):
        return None
    path, _ = split_href(href)
    if not path:
        return None
    path = unquote(path)
    if path.startswith("/"):
        joined = path.lstrip("/")
    else:
        joined = posixpath.join(posixpath.dirname(doc_path), path)
    norm = posixpath.normpath(joined)
    if norm.startswith("../") or norm == ".." or norm == ".":
        return ""
    return norm


def rewrite(href: str) -> str:
    """``a.md#x`` -> ``a.html#x``: links to Markdown sources point at their outputs."""
    path, rest = split_href(href)
    if path.endswith(".md"):
        return path[:-3] + ".html" + rest
    return href


def check(site: Site, href: str, doc_path: str, line: int | None, problems: list[Problem]) -> str | None:
    """Record the link's dependency; return the target path when it exists, else report it."""
    target = resolve(href, doc_path)
    if target is None:
        return None
    if target == "":
        problems.append(Problem(step=doc_path, path=doc_path, line=line,
                                message=f"link to {href}: outside content/"))
        return None
    if not site.exists(target):
        problems.append(Problem(step=doc_path, path=doc_path, line=line,
                                message=f"link to {target}: no such document"))
        return None
    return target


def title_for(site: Site, target: str) -> str:
    title = site.fact(target, "title")
    return str(title) if title not in (None, "") else target


_A_OPEN = re.compile(r"<a\b([^>]*)>", re.I)
_EMPTY_CLOSE = re.compile(r"\s*</a\s*>", re.I)
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)


def process_html(text: str, doc_path: str, site: Site, problems: list[Problem], first_line: int = 1) -> str:
    """Check every ``<a href>``, fill empty ones with the target's title, rewrite .md hrefs."""
    out: list[str] = []
    pos = 0
    for m in _A_OPEN.finditer(text):
        hm = _HREF.search(m.group(1))
        if not hm:
            continue
        raw = next(g for g in hm.groups()[1:] if g is not None)
        href = html.unescape(raw)
        line = first_line + text.count("\n", 0, m.start())
        target = check(site, href, doc_path, line, problems)
        if target is None:
            continue
        new_attrs = m.group(1)
        new_href = rewrite(raw)
        if new_href != raw:
            new_attrs = new_attrs[: hm.start()] + hm.group(0).replace(raw, new_href, 1) + new_attrs[hm.end():]
        out.append(text[pos: m.start()])
        out.append(f"<a{new_attrs}>")
        pos = m.end()
        close = _EMPTY_CLOSE.match(text, pos)
        if close:
            out.append(html.escape(title_for(site, target), quote=False))
            pos = close.start() + (len(close.group(0)) - len(close.group(0).lstrip()))
    out.append(text[pos:])
    return "".join(out)


def hrefs_in_html(text: str) -> list[tuple[str, int]]:
    """(href, line) of every ``<a href>`` in an HTML text."""
    found = []
    for m in _A_OPEN.finditer(text):
        hm = _HREF.search(m.group(1))
        if hm:
            raw = next(g for g in hm.groups()[1:] if g is not None)
            found.append((html.unescape(raw), 1 + text.count("\n", 0, m.start())))
    return found


def link_targets(hrefs: list[str], doc_path: str) -> list[str]:
    """The ``links`` fact: distinct local targets in document order."""
    seen: dict[str, None] = {}
    for h in hrefs:
        t = resolve(h, doc_path)
        if t:
            seen.setdefault(t, None)
    return list(seen)
