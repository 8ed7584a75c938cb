"""``status`` and ``explain``: the planner's answers without executing anything."""

from __future__ import annotations

from pathlib import Path


def status(root: Path, as_json: bool) -> int:
    raise NotImplementedError


def explain(root: Path, path: str, as_json: bool) -> int:
    raise NotImplementedError
