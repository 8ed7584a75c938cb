"""Anything else: no facts, the output is the source, byte for byte."""

from __future__ import annotations

from typing import Any

from sqldom.model import Problem
from sqldom.site import Doc, Site, Source


def parse(source: Source, problems: list[Problem]) -> dict[str, Any]:
    return {}


def write(doc: Doc, site: Site, problems: list[Problem]) -> bytes:
    return doc.data
