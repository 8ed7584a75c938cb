"""The glossary as values: reads, problems, outcomes. Plain, frozen, hashable."""

from __future__ import annotations

from typing import Any, NamedTuple

PARSE = "parse"
WRITE = "write"

# outcomes (steps.status, executions.outcome, event status)
BUILT = "built"
RESTORED = "restored"
FAILED = "failed"
DELETED = "deleted"


class Read(NamedTuple):
    """One thing a step read: kind (source, exists, fact, glob, code, spec), target, key, hash.

    A tuple because a cold build makes, pickles between processes and records
    hundreds of thousands of them.
    """

    kind: str
    target: str
    key: str
    hash: str

    def as_list(self) -> list[str]:
        return [self.kind, self.target, self.key, self.hash]

    def describe(self) -> str:
        if self.kind == "fact":
            return f"fact {self.key} of {self.target}" if self.key != "*" else f"facts of {self.target}"
        if self.kind == "code":
            return f"code of {self.target}"
        if self.kind == "glob":
            return f"glob {self.target}"
        if self.kind == "exists":
            return f"existence of {self.target}"
        if self.kind == "spec":
            return f"rule {self.target}"
        return f"{self.kind} {self.target}"


class Problem(NamedTuple):
    """An outstanding diagnostic; data, not an exception.

    A tuple, not a dataclass: the no-op probe reads problems, and importing
    ``dataclasses`` was a tenth of its time.
    """

    step: str
    message: str
    severity: str = "error"
    path: str | None = None
    line: int | None = None
    phase: str = WRITE

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "phase": self.phase, "path": self.path, "line": self.line,
                "severity": self.severity, "message": self.message}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Problem:
        return Problem(step=d["step"], phase=d.get("phase", WRITE), path=d.get("path"), line=d.get("line"),
                       severity=d.get("severity", "error"), message=d["message"])


class PhaseResult(NamedTuple):
    """What one execution of a phase produced, as the engine records it (a tuple: workers pickle them)."""

    reads: list[Read]
    problems: list[Problem]
    facts: dict[str, Any] | None = None           # parse
    output: bytes | None = None                   # write
    output_hash: str | None = None
    failed: bool = False
