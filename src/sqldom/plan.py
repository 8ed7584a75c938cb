"""Deciding what to run: verify a step's recorded reads against current values.

Pure. The same functions power ``build`` (execute what is dirty), ``status``
(say what would run and why) and ``explain`` (show the reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqldom.hashing import ABSENT
from sqldom.model import Read


def short(h: str) -> str:
    return h if h in (ABSENT, "present") else h[:8]


def change_reason(read: Read, now: str) -> str:
    """The user's words for one read that no longer matches."""
    if read.kind == "source" and read.key == "":
        if now == ABSENT:
            return f"source {read.target} deleted"
        if read.hash == ABSENT:
            return f"source {read.target} appeared"
        return f"source {read.target} changed"
    if read.kind == "exists":
        return f"{read.target} {'disappeared' if now == ABSENT else 'appeared'}"
    if read.kind == "fact" and (now == ABSENT or read.hash == ABSENT):
        return f"document {read.target} {'disappeared' if now == ABSENT else 'appeared'}"
    if read.kind == "spec":
        return "rule changed"
    return f"{read.describe()} changed"


def verify(reads: Iterable[Read], current: Callable[[Read], str]) -> tuple[str, str] | None:
    """None when every read still matches; else (reason, detail with hashes) of the first mismatch."""
    for read in reads:
        now = current(read)
        if now != read.hash:
            reason = change_reason(read, now)
            return reason, f"{reason} ({short(read.hash)} -> {short(now)})"
    return None


def duplicate_outputs(claims: dict[str, str]) -> dict[str, str]:
    """Given step -> output path, return loser step -> winner step for every shared output.

    The winner is the step whose id sorts first, so the answer does not depend on
    what happened to run in this build.
    """
    if len(set(claims.values())) == len(claims):
        return {}
    by_output: dict[str, list[str]] = {}
    for step, out in claims.items():
        by_output.setdefault(out, []).append(step)
    losers: dict[str, str] = {}
    for steps in by_output.values():
        if len(steps) > 1:
            steps.sort()
            for s in steps[1:]:
                losers[s] = steps[0]
    return losers


def path_clashes(claims: dict[str, str]) -> dict[str, tuple[str, str]]:
    """loser -> (winner, message) where one output would need another's file as a folder.

    ``a`` and ``a/b.html`` cannot both exist in build/. As with duplicates, the
    step whose id sorts first wins, whatever ran in this build.
    """
    owner: dict[str, str] = {}
    for step, out in sorted(claims.items()):
        owner.setdefault(out, step)
    found: dict[str, tuple[str, str]] = {}
    for step, out in claims.items():
        parts = out.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            other = owner.get(folder)
            if other is None or other == step:
                continue
            loser, winner = (step, other) if step > other else (other, step)
            found[loser] = (winner, f"output {out} (step {step}) needs build/{folder} to be a folder, but step "
                                    f"{other} writes a file there; only {winner} is written")
    return found
