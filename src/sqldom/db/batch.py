"""What one build writes: the ``Batch`` of rows its record transaction stores (``Store.record``).

Apart from ``store.py`` because only a build makes one: the no-op probe, which
reads the database through ``Store``, then imports neither ``dataclasses`` nor
what a batch spills with (``pickle``, ``tempfile``).
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from sqldom.db.store import BuildUpsert, Execution, SourceUpsert, StepRow, StepRows, TraceRow
    from sqldom.model import Problem

R = TypeVar("R")


class LazyRows(Generic[R]):
    """Rows made while the record writes them: a big build does not hold one tuple per step through it.

    ``count`` is known up front (a batch's emptiness is decided before the record);
    every iteration makes the rows again.
    """

    def __init__(self, count: int, make: Callable[[], Iterator[R]]) -> None:
        self.count = count
        self.make = make

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[R]:
        return self.make()


@dataclass
class Batch:
    """Everything one build phase writes, recorded in one transaction."""

    run: int
    blobs: dict[str, bytes] = field(default_factory=dict)
    sources_upsert: list[SourceUpsert] | LazyRows[SourceUpsert] = field(default_factory=list)
    sources_delete: list[str] = field(default_factory=list)
    steps_upsert: list[StepRow] | LazyRows[StepRow] = field(default_factory=list)
    steps_delete: list[str] = field(default_factory=list)
    deps: dict[tuple[str, str], str] = field(default_factory=dict)   # reads as JSON (packing.reads_json)
    facts: dict[str, str] = field(default_factory=dict)              # packing.fact_rows
    build_upsert: list[BuildUpsert] = field(default_factory=list)
    build_delete: list[str] = field(default_factory=list)
    problems: dict[tuple[str, str], list[Problem]] = field(default_factory=dict)
    traces: list[TraceRow] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    step_executions: list[Execution] | LazyRows[Execution] = field(default_factory=list)   # one per step run
    containers_upsert: list[dict[str, Any]] = field(default_factory=list)   # CONTAINER_COLUMNS, kind container
    workshop_upsert: list[dict[str, Any]] = field(default_factory=list)
    workshop_delete: list[str] = field(default_factory=list)
    spill_file: IO[bytes] | None = None   # step rows moved out of memory (spill), oldest first
    spilled: int = 0
    spilled_deps: int = 0   # (step, phase) read lists in the spilled parts
    spill_failed: bool = False

    def empty(self) -> bool:
        return not self.spilled and not any([
            self.blobs, self.sources_upsert, self.sources_delete, self.steps_upsert, self.steps_delete, self.deps,
            self.facts, self.build_upsert, self.build_delete, self.problems, self.traces, self.executions,
            self.step_executions,
            self.containers_upsert, self.workshop_upsert, self.workshop_delete])

    def spill(self, folder: Path) -> None:
        """Move the step rows held so far to a temporary file, so that a big build's memory stays flat.

        The record replays the parts in order, each as its own delete-then-insert,
        so a step whose rows are set again later still ends with the last ones.
        The file has no name (O_TMPFILE): it vanishes with the process, whatever
        ends it, and the database never depends on it. If it cannot be written
        (a full disk), the rows stay in memory, as they would in a small build.
        """
        if self.spill_failed:
            return
        part = pickle.dumps((self.deps, self.facts, self.problems, self.traces), pickle.HIGHEST_PROTOCOL)
        try:
            if self.spill_file is None:
                folder.mkdir(parents=True, exist_ok=True)
                self.spill_file = tempfile.TemporaryFile(dir=folder)
            self.spill_file.write(part)
            self.spill_file.flush()
        except OSError:
            self.spill_failed = True   # (a partly written part is never read: only ``spilled`` parts are)
            return
        self.spilled_deps += len(self.deps)
        self.deps, self.facts, self.problems, self.traces = {}, {}, {}, []
        self.spilled += 1

    def deps_count(self) -> int:
        """How many (step, phase) read lists the record writes."""
        return self.spilled_deps + len(self.deps)

    def step_rows(self) -> Iterator[StepRows]:
        """Every part of the step rows, spilled ones first, one in memory at a time."""
        if self.spill_file is not None:
            self.spill_file.seek(0)
            for _ in range(self.spilled):
                yield pickle.load(self.spill_file)
        yield self.deps, self.facts, self.problems, self.traces

    def close(self) -> None:
        if self.spill_file is not None:
            self.spill_file.close()
            self.spill_file = None


