"""Built-in transforms: markdown, html, text, copy.

Each module offers ``parse(source, problems) -> facts`` and
``write(doc, site, problems) -> bytes``. Modules are imported only when a step
that uses them runs, so a no-op build never imports markdown-it.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def module(name: str) -> ModuleType:
    return importlib.import_module(f"sqldom.transforms.{name}")
