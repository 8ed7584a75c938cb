"""The objects handed to transforms. Every read goes through them and is logged.

``World`` is the engine's view of current values (source hashes and bytes,
facts, the set of paths). A transform can only see the world through
``Source``, ``Doc`` and ``Site``, so the read log is complete by construction.
"""

from __future__ import annotations

import posixpath
from typing import Any, Protocol

from sqldom.hashing import ABSENT, hash_json
from sqldom.model import Read
from sqldom.patterns import glob_filter

PRESENT = "present"
NO_FACT: Any = object()   # what ``World.fact`` returns for a fact that is not there (the document or the name)


class World(Protocol):
    def source_hash(self, path: str) -> str | None: ...
    def source_bytes(self, path: str) -> bytes: ...
    def facts(self, path: str) -> dict[str, Any] | None: ...
    def fact(self, path: str, name: str) -> tuple[Any, str]: ...   # (value or NO_FACT, ``fact_hash``)
    def paths(self) -> list[str]: ...


def fact_hash(facts: dict[str, Any] | None, key: str) -> str:
    """Hash of what ``site.fact(path, key)`` returns; ``*`` means the whole dict."""
    if facts is None:
        return ABSENT
    return hash_json(facts if key == "*" else facts.get(key))


def fact_of(facts: dict[str, Any] | None, name: str) -> tuple[Any, str]:
    """What ``World.fact`` answers, from a document's facts (None: no such document)."""
    value = NO_FACT if facts is None else facts.get(name, NO_FACT)
    return value, fact_hash(facts, name)


def glob_hash(world: World, pattern: str) -> str:
    return hash_json(glob_filter(pattern, world.paths()))


class ReadLog:
    def __init__(self) -> None:
        self._reads: dict[tuple[str, str, str], Read] = {}

    def add(self, kind: str, target: str, key: str, hash_: str) -> None:
        self._reads.setdefault((kind, target, key), Read(kind, target, key, hash_))

    def reads(self) -> list[Read]:
        return list(self._reads.values())


def normalize(path: str) -> str:
    """A content-relative path as transforms may pass it (``./a.md``, ``/a.md``)."""
    p = posixpath.normpath(path.lstrip("/")) if path else ""
    return "" if p == "." else p


class Source:
    """What a parser sees: ``path``, ``data`` (bytes), ``text`` (str)."""

    def __init__(self, path: str, world: World, log: ReadLog) -> None:
        self.path = path
        self._world = world
        self._log = log
        self._data: bytes | None = None
        self.decode_error: tuple[int, int] | None = None   # (byte offset, line)

    @property
    def data(self) -> bytes:
        if self._data is None:
            h = self._world.source_hash(self.path)
            self._log.add("source", self.path, "", h or ABSENT)
            self._data = self._world.source_bytes(self.path)
        return self._data

    @property
    def hash(self) -> str:
        """The source's content hash, recorded as the same read as ``data``, without loading the bytes.

        A writer that keeps something derived from the bytes (a rendered template)
        can key it by this and skip reading them again.
        """
        h = self._world.source_hash(self.path)
        self._log.add("source", self.path, "", h or ABSENT)
        return h or ABSENT

    @property
    def text(self) -> str:
        data = self.data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            self.decode_error = (e.start, data[: e.start].count(b"\n") + 1)
            return data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"Source({self.path!r})"


class Doc(Source):
    """What a writer sees: a Source plus ``facts`` (this document's parse result) and ``output``."""

    def __init__(self, path: str, world: World, log: ReadLog, output: str) -> None:
        super().__init__(path, world, log)
        self.output = output

    @property
    def facts(self) -> dict[str, Any]:
        f = self._world.facts(self.path)
        self._log.add("fact", self.path, "*", fact_hash(f, "*"))
        return dict(f or {})

    def __repr__(self) -> str:
        return f"Doc({self.path!r})"


class Site:
    """Everything else a writer or page may read; each call records exactly what it read."""

    def __init__(self, world: World, log: ReadLog) -> None:
        self._world = world
        self._log = log

    def fact(self, path: str, name: str, default: Any = None) -> Any:
        path = normalize(path)
        value, h = self._world.fact(path, name)
        self._log.add("fact", path, name, h)
        return default if value is NO_FACT else value

    def facts(self, path: str) -> dict[str, Any] | None:
        path = normalize(path)
        f = self._world.facts(path)
        self._log.add("fact", path, "*", fact_hash(f, "*"))
        return None if f is None else dict(f)

    def glob(self, pattern: str) -> list[str]:
        matches = glob_filter(pattern, self._world.paths())
        self._log.add("glob", pattern, "", hash_json(matches))
        return matches

    def exists(self, path: str) -> bool:
        path = normalize(path)
        present = self._world.source_hash(path) is not None
        self._log.add("exists", path, "", PRESENT if present else ABSENT)
        return present

    def read(self, path: str) -> bytes | None:
        path = normalize(path)
        h = self._world.source_hash(path)
        self._log.add("source", path, "", h or ABSENT)
        return None if h is None else self._world.source_bytes(path)
