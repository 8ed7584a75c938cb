"""Built-in transforms: markdown, html, text, copy.

Each module offers ``parse(source, problems) -> facts`` and
``write(doc, site, problems) -> bytes``. Modules are imported only when a step
that uses them runs, so a no-op build never imports markdown-it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_loaded: dict[str, ModuleType] = {}


def module(name: str) -> ModuleType:
    """(Kept: ``import_module`` costs microseconds, and a cold build asks twice per document.)"""
    got = _loaded.get(name)
    if got is None:
        got = _loaded[name] = importlib.import_module(f"sqldom.transforms.{name}")
    return got
