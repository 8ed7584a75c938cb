"""A tiny in-memory ``World`` (the Protocol in sqldom.site) for transform and site tests."""

from __future__ import annotations

from typing import Any

from sqldom.hashing import hash_bytes
from sqldom.site import Doc, ReadLog, Site, Source, fact_of


class FakeWorld:
    def __init__(self, sources: dict[str, bytes | str] | None = None,
                 facts: dict[str, dict[str, Any]] | None = None) -> None:
        self.sources = {p: (b.encode("utf-8") if isinstance(b, str) else b) for p, b in (sources or {}).items()}
        self.fact_map = dict(facts or {})

    def source_hash(self, path: str) -> str | None:
        data = self.sources.get(path)
        return None if data is None else hash_bytes(data)

    def source_bytes(self, path: str) -> bytes:
        return self.sources[path]

    def facts(self, path: str) -> dict[str, Any] | None:
        return self.fact_map.get(path)

    def fact(self, path: str, name: str) -> tuple[Any, str]:
        return fact_of(self.facts(path), name)

    def paths(self) -> list[str]:
        return sorted(self.sources)


def source(world: FakeWorld, path: str) -> tuple[Source, ReadLog]:
    log = ReadLog()
    return Source(path, world, log), log


def doc_and_site(world: FakeWorld, path: str, output: str | None = None) -> tuple[Doc, Site, ReadLog]:
    log = ReadLog()
    return Doc(path, world, log, output or path), Site(world, log), log
