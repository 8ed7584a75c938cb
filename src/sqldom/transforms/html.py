"""HTML documents: title from <title> or the first <h1>, links checked, empty links filled."""

from __future__ import annotations

import html
import posixpath
import re
from typing import Any

from sqldom.model import Problem
from sqldom.site import Doc, Site, Source
from sqldom.transforms import links
from sqldom.transforms.common import decoded_text

_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.I | re.S)
_H1 = re.compile(r"<h1\b[^>]*>(.*?)</h1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")


def _plain(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", fragment)).split())


def parse(source: Source, problems: list[Problem]) -> dict[str, Any]:
    text = decoded_text(source, problems)
    title = ""
    for rx in (_TITLE, _H1):
        m = rx.search(text)
        if m and _plain(m.group(1)):
            title = _plain(m.group(1))
            break
    if not title:
        title = posixpath.splitext(posixpath.basename(source.path))[0]
    hrefs = [h for h, _ in links.hrefs_in_html(text)]
    return {"title": title, "links": links.link_targets(hrefs, source.path)}


def write(doc: Doc, site: Site, problems: list[Problem]) -> bytes:
    text = doc.text
    out = links.process_html(text, doc.path, site, problems)
    if out == text:
        return doc.data
    return out.encode("utf-8")
