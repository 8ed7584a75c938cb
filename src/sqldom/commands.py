"""Command steps of one build: turn each into a ``CommandJob`` and run them in parallel.

The engine decides which command steps are dirty (and restores those a trace
covers); this module only runs the rest and hands back each ``CommandResult``,
or the ``ExecutorError`` that kept it from running. Executors are resolved once
per build and name, lazily, so a build without command steps imports none.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqldom.config import CommandRule

if TYPE_CHECKING:
    from sqldom.executors.base import CommandJob, CommandResult, ExecutorError


@dataclass(frozen=True)
class Planned:
    step: str
    rule: CommandRule
    source: str            # content-relative path of the input
    output: str            # build-relative path of the output
    data: bytes | Path     # the input's bytes, or its file for large inputs


def job_for(p: Planned) -> CommandJob:
    """The job: the input at its own relative path, the output beside it under out/ when they collide."""
    from sqldom.executors.base import CommandJob
    out = p.output if p.output != p.source else posixpath.join("out", p.output)
    return CommandJob(step=p.step, command=p.rule.run, inputs={p.source: p.data}, input=p.source,
                      outputs=(out,), env=dict(p.rule.env), image=p.rule.image, timeout=p.rule.timeout)


def run_all(planned: list[Planned], jobs: int, scratch: Path | None,
            on_output: Callable[[str, str], None] | None) -> dict[str, tuple[CommandJob | None, Any]]:
    """step -> (job, CommandResult | ExecutorError). Steps run concurrently, ``jobs`` at a time."""
    from sqldom import executors
    from sqldom.executors.base import ExecutorError

    resolved: dict[str, Any] = {}
    lock = threading.Lock()

    def executor_for(name: str) -> Any:
        with lock:
            if name not in resolved:
                try:
                    resolved[name] = executors.auto(name, scratch_root=scratch)
                except ExecutorError as e:
                    resolved[name] = e
            return resolved[name]

    def one(p: Planned) -> tuple[str, tuple[CommandJob | None, Any]]:
        try:
            job = job_for(p)
        except ExecutorError as e:
            return p.step, (None, e)
        ex = executor_for(p.rule.executor_name)
        if isinstance(ex, ExecutorError):
            return p.step, (job, ex)
        emit = (lambda line: on_output(p.step, line)) if on_output is not None else None
        try:
            return p.step, (job, ex.run(job, on_output=emit))
        except ExecutorError as e:
            return p.step, (job, e)

    workers = max(1, jobs or os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=min(workers, max(1, len(planned)))) as pool:
            return dict(pool.map(one, planned))
    finally:
        for ex in resolved.values():
            if not isinstance(ex, ExecutorError):
                ex.close()


def describe_failure(result: CommandResult) -> str:
    """The problem message of a failed command: why, then its output in full."""
    parts = [result.failure or "command failed"]
    if result.stdout.strip():
        parts.append("--- stdout ---\n" + result.stdout.rstrip())
    if result.stderr.strip():
        parts.append("--- stderr ---\n" + result.stderr.rstrip())
    return "\n".join(parts)


def describe_error(err: ExecutorError) -> str:
    return err.message + (f" ({err.hint})" if err.hint else "")


def image_identity(executor_name: str, image: str) -> str | None:
    """The identity of ``image`` as the executor that would run it sees it (None: unknown).

    Only executors with a local store can say (podman); the step then records it
    as a read, and a rebuilt image under the same tag reruns its steps.
    """
    from sqldom import executors
    from sqldom.executors.base import ExecutorError
    try:
        ex = executors.get(executor_name if executor_name != "auto" else "podman")
    except ExecutorError:
        return None
    ident = getattr(ex, "image_identity", None)
    if ident is None or (executor_name == "auto" and ex.check() is not None):
        return None
    try:
        result: str | None = ident(image)
        return result
    except Exception:  # noqa: BLE001 - an identity we cannot read is simply not recorded
        return None
