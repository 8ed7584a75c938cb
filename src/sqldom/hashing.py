"""The one definition of "same": xxh3-128 of bytes and of canonical JSON."""

from __future__ import annotations

import json
from typing import Any

import xxhash

ABSENT = "absent"  # the hash recorded for a thing that was read but did not exist

CHUNK = 1 << 20


def hash_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def hash_text(text: str) -> str:
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal values hash equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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
