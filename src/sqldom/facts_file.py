"""This build's new facts (packed JSON, one string per document) kept in a file rather than in memory.

A cold build of 100,000 documents parses all of them before writing any, and
every write may read any document's facts (a link's title). As strings, in the
build process and again in each worker, they were ~31 MiB per process at the
build's peak. Here each is appended to one unnamed temporary file (it vanishes
with the process, whatever ends it), and only an int per document stays in
memory. Workers forked before the first append read the same file: the parent
sends them the index (``index``, ``adopt``), not the strings. Reads are
``pread`` calls on a file the kernel still caches, and the few documents a
write reads are decoded once (``engine.Current.unpacked`` keeps the last ones).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path

FLUSH_BYTES = 1 << 20   # appends gathered before one write


class FactsFile(MutableMapping[str, str]):
    """path -> packed facts, the strings in a file, ``(offset << 24 | length)`` per path in memory."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.file = tempfile.TemporaryFile(dir=folder)
        self.fd = self.file.fileno()
        self.where: dict[str, int] = {}
        self.end = 0                          # bytes written to the file
        self.pending = bytearray()            # appended since, not yet written

    def __setitem__(self, path: str, packed: str) -> None:
        data = packed.encode()
        if len(data) >= 1 << 24:
            raise ValueError(f"facts of {path} are larger than 16 MiB")
        self.where[path] = (self.end + len(self.pending)) << 24 | len(data)
        self.pending += data
        if len(self.pending) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what was appended (before another process reads the file)."""
        view = memoryview(self.pending)
        while view:
            n = os.pwrite(self.fd, view, self.end)
            self.end += n
            view = view[n:]
        self.pending = bytearray()

    def __getitem__(self, path: str) -> str:
        at = self.where[path]
        offset, length = at >> 24, at & 0xFFFFFF
        if offset + length > self.end:
            self.flush()
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise OSError(f"the facts file of this build was cut short at {path}")
        return data.decode()

    def __delitem__(self, path: str) -> None:
        del self.where[path]   # (the bytes stay in the file until it is closed)

    def __contains__(self, path: object) -> bool:
        return path in self.where

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)

    def index(self) -> dict[str, int]:
        """Where each document's facts are, every append written: what a forked worker ``adopt``s."""
        self.flush()
        return self.where

    def adopt(self, where: dict[str, int]) -> None:
        """In a worker forked after this file was made: read what the parent's ``index`` says."""
        self.where = where
        self.pending = bytearray()
        self.end = max(((at >> 24) + (at & 0xFFFFFF) for at in where.values()), default=0)

    def close(self) -> None:
        self.file.close()
