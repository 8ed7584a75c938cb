"""The one definition of "same": xxh3-128 of bytes and of canonical JSON; the identity of the built-in code."""

from __future__ import annotations

import json
from typing import Any

import xxhash

ABSENT = "absent"  # the hash recorded for a thing that was read but did not exist

CHUNK = 1 << 20

# Bump when a built-in transform's output changes, so those steps rebuild.
BUILTIN_REVISION = "2"   # 2: a front-matter date that does not exist is a problem on its line, not a failed parse


def hash_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def hash_text(text: str) -> str:
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


# (one encoder: json.dumps with options builds a new one per call, a cost a cold build pays 10^5 times)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal values hash equal."""
    return _CANONICAL.encode(value)


def hash_json(value: Any) -> str:
    return hash_text(canonical_json(value))


def hash_file(path: str) -> tuple[str, int]:
    """Stream a file through xxh3-128 so memory does not grow with its size."""
    h = xxhash.xxh3_128()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def builtin_code_hash() -> str:
    """What every step that ran built-in code read (kind ``code``): sqldom's version and the Markdown renderer's.

    Here rather than beside the rules so that the no-op probe can compute it
    without importing them (they import the configuration, hence PyYAML).
    """
    from sqldom import __version__
    return hash_json(["builtin", __version__, BUILTIN_REVISION, _dist_version("markdown-it-pyrs", "markdown_it_pyrs")])


def _dist_version(dist: str, module: str) -> str:
    """An installed distribution's version, read from its ``.dist-info`` folder's name beside the module.

    ``importlib.metadata`` answers the same but costs ~30 ms of imports on every
    build; it stays the fallback for installs laid out otherwise.
    """
    import importlib.util
    import os
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.origin:
        site = os.path.dirname(os.path.dirname(spec.origin))
        prefix = dist.replace("-", "_") + "-"
        try:
            names = [n for n in os.listdir(site) if n.startswith(prefix) and n.endswith(".dist-info")]
        except OSError:
            names = []
        if len(names) == 1:
            return names[0][len(prefix):-len(".dist-info")]
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"
