"""Events of a build and the sinks that show them: human (with progress), JSON lines, a list for tests.

Events are named tuples, not dataclasses: the no-op probe prints a summary
through this module, and ``dataclasses`` with its decorators was a tenth of
that build's time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import IO, Any, NamedTuple, Protocol


class StepEvent(NamedTuple):
    id: str
    kind: str
    status: str
    reason: str
    outputs: Sequence[str] = ()
    event: str = "step"


class ContainerStepEvent(NamedTuple):
    """A container step's event also names its image (SPEC §3)."""

    id: str
    kind: str
    status: str
    reason: str
    outputs: Sequence[str] = ()
    image: str = ""
    digest: str = ""
    event: str = "step"


STEP_EVENTS = (StepEvent, ContainerStepEvent)


class DeletedEvent(NamedTuple):
    path: str
    step: str
    event: str = "deleted"


class RepairedEvent(NamedTuple):
    """build/ disagreed with the database and was put back in line."""

    path: str
    what: str            # missing | modified | stray
    event: str = "repaired"


class ProblemEvent(NamedTuple):
    severity: str
    step: str
    path: str | None
    line: int | None
    message: str
    event: str = "problem"


class OutputEvent(NamedTuple):
    """A line a running command step printed (only with -v)."""

    id: str
    line: str
    event: str = "output"


class SummaryEvent(NamedTuple):
    built: int
    restored: int
    unchanged: int
    deleted: int
    failed: int
    errors: int
    seconds: float
    repaired: int = 0
    event: str = "summary"


Event = StepEvent | ContainerStepEvent | DeletedEvent | RepairedEvent | ProblemEvent | OutputEvent | SummaryEvent


class Sink(Protocol):
    def emit(self, event: Event) -> None: ...
    def progress(self, done: int, total: int, what: str) -> None: ...
    def close(self) -> None: ...


def as_dict(event: Event) -> dict[str, Any]:
    """The event's fields, ``event`` first."""
    d = event._asdict()
    return {"event": d.pop("event"), **d}


class ListSink:
    """Collects events; what tests assert on."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def progress(self, done: int, total: int, what: str) -> None:
        pass

    def close(self) -> None:
        pass


class JsonSink:
    """One JSON object per line on stdout (SPEC §3).

    Without ``out``, the events go to a duplicate of the stdout file descriptor
    taken when the sink is made: the CLI then points ``sys.stdout`` at stderr
    for the build, so a ``print()`` in the user's transforms cannot break the
    event stream.
    """

    def __init__(self, out: IO[str] | None = None) -> None:
        self._own: IO[str] | None = None
        if out is None:
            out = sys.stdout
            try:
                fd = os.dup(out.fileno())
            except (AttributeError, OSError, ValueError):   # no real file behind it (a test's capture)
                pass
            else:
                self._own = os.fdopen(fd, "w", encoding=getattr(out, "encoding", None) or "utf-8",
                                      errors="backslashreplace", closefd=True)
                out.flush()
                out = self._own
        self.out = out

    _encode = json.JSONEncoder(ensure_ascii=False).encode   # (json.dumps with an option builds one per call)

    def emit(self, event: Event) -> None:
        self.out.write(self._encode(as_dict(event)) + "\n")
        if not isinstance(event, STEP_EVENTS):   # a build's step events come in one burst, and its summary
            self.out.flush()                   # (or close, on an error) always follows: one write, not 10^4

    def progress(self, done: int, total: int, what: str) -> None:
        pass

    def close(self) -> None:
        try:
            self.out.flush()
        except (OSError, ValueError):   # (a closed pipe: nothing more can reach the reader)
            pass
        if self._own is not None:
            own, self._own = self._own, None
            own.close()


def format_problem(p: ProblemEvent) -> str:
    where = p.path or p.step
    if p.line:
        where = f"{where}:{p.line}"
    return f"{where}: {p.severity}: {p.message}"


class HumanSink:
    """Short output: executed steps with -v, every problem, repairs, one summary line.

    A progress bar (rich) appears on a TTY once work has taken about a second.
    """

    def __init__(self, verbose: bool = False, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.verbose = verbose
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.started = time.monotonic()
        self.tty = self.err.isatty()
        self._progress: Any = None
        self._task: Any = None
        self.missing = 0

    def _print(self, text: str, err: bool = False) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.err if err else self.out, flush=True)

    def emit(self, event: Event) -> None:
        if isinstance(event, STEP_EVENTS):
            if self.verbose or event.status == "failed":
                outs = f" -> {', '.join(event.outputs)}" if event.outputs else ""
                self._print(f"{event.status:8} {event.id}{outs} ({event.reason})")
        elif isinstance(event, DeletedEvent):
            if self.verbose:
                self._print(f"deleted  {event.path} (step {event.step} is gone)")
        elif isinstance(event, RepairedEvent):
            if event.what == "missing":
                self.missing += 1
                if self.verbose:
                    self._print(f"restored build/{event.path} from the database")
            else:
                what = "was modified outside sqldom" if event.what == "modified" else "is not an output"
                action = "restored" if event.what == "modified" else "removed"
                self._print(f"repaired build/{event.path}: {what}; {action}")
        elif isinstance(event, ProblemEvent):
            self._print(format_problem(event), err=True)
        elif isinstance(event, OutputEvent):
            self._print(f"[{event.id}] {event.line}")
        elif isinstance(event, SummaryEvent):
            self._stop()
            parts = [f"{event.built} built", f"{event.restored} restored", f"{event.unchanged} unchanged"]
            if event.deleted:
                parts.append(f"{event.deleted} deleted")
            if event.failed:
                parts.append(f"{event.failed} failed")
            if event.errors:
                parts.append(f"{event.errors} error{'s' if event.errors != 1 else ''}")
            if self.missing:
                parts.append(f"{self.missing} output{'s' if self.missing != 1 else ''} restored to build/")
            print(f"{', '.join(parts)} in {event.seconds:.2f}s", file=self.out, flush=True)
            self.missing = 0                     # a watch prints one summary per batch
            self.started = time.monotonic()

    def progress(self, done: int, total: int, what: str) -> None:
        if not self.tty or time.monotonic() - self.started < 1.0:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      console=Console(file=self.err), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(what, total=total)
        self._progress.update(self._task, completed=done, total=total, description=what)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        self._stop()


class ReloadingSink:
    """Passes events on, and after each build that changed an output calls ``reload(paths)``.

    What ``sqldom watch --serve`` uses to tell open pages to reload.
    """

    def __init__(self, inner: Sink, reload: Any) -> None:
        self.inner = inner
        self.reload = reload
        self.changed: list[str] = []

    def emit(self, event: Event) -> None:
        if isinstance(event, STEP_EVENTS) and event.status != "failed":
            self.changed.extend(event.outputs)
        elif isinstance(event, DeletedEvent | RepairedEvent):
            self.changed.append(event.path)
        self.inner.emit(event)
        if isinstance(event, SummaryEvent):
            if self.changed:
                self.reload(self.changed)
            self.changed = []

    def progress(self, done: int, total: int, what: str) -> None:
        self.inner.progress(done, total, what)

    def close(self) -> None:
        self.inner.close()
