"""Plain text: the first line is the title; the output is the source, byte for byte."""

from __future__ import annotations

import posixpath
from typing import Any

from sqldom.model import Problem
from sqldom.site import Doc, Site, Source
from sqldom.transforms.common import decoded_text


def parse(source: Source, problems: list[Problem]) -> dict[str, Any]:
    text = decoded_text(source, problems)
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    title = first or posixpath.splitext(posixpath.basename(source.path))[0]
    return {"title": title, "links": []}


def write(doc: Doc, site: Site, problems: list[Problem]) -> bytes:
    return doc.data
