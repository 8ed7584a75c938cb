"""Forked workers: run one pure function over many items on several cores, results in order.

Why fork: the workers inherit everything the parent already has (the scan, the
loaded rules and build.py, the facts), so nothing needs to be pickled on the way
in, only the results on the way back. Why in order: the parent records the
results exactly as a serial build would, so ``-j N`` gives the same database and
the same build/ as ``-j 1``.

Items are dealt round-robin (item ``k`` goes to worker ``k % n``); each worker
writes its results, one pickle per item, to its own pipe, and the parent reads
them in item order. A worker that dies (a crash in user code, a kill) costs
nothing but time: the parent runs the items it did not get back itself.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_FAILED = "sqldom-worker-failed"


def cores() -> int:
    """The CPUs this process may run on (``-j`` 0 means this many)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform != "win32"


def _child(fn: Callable[[Any], Any], items: list[Any], w: int, before: Callable[[], None] | None) -> None:
    """Body of one worker; never returns (``os._exit``, so no atexit handler or buffered write runs twice)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent decides what Ctrl-C means
        signal.signal(signal.SIGTERM, signal.SIG_DFL)   # and may kill us at any time
        # fresh standard streams: a lock held by another thread of the parent at fork time stays held
        for name in ("stdout", "stderr"):
            try:
                fd = getattr(sys, name).fileno()
            except (AttributeError, OSError, ValueError):
                fd = 2
            setattr(sys, name, open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="backslashreplace"))
        if before is not None:
            before()
        with open(w, "wb", buffering=1 << 16) as out:
            for item in items:
                try:
                    result = fn(item)
                except BaseException:
                    pickle.dump(_FAILED, out)   # the parent redoes it (and sees the exception there)
                    break
                pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def run_ordered(fn: Callable[[T], R], items: list[T], jobs: int,
                before: Callable[[], None] | None = None) -> Generator[R, None, None]:
    """Yield ``fn(item)`` for every item, in order, computed by ``jobs`` forked workers.

    The workers are forked before this returns (they see the parent as it is
    now, not as it is when the first result is asked for). ``before`` runs
    first in each worker (e.g. to open its own database connection: a SQLite
    connection must not be shared across a fork). Closing the generator, or
    an exception (Ctrl-C) while it runs, kills and reaps the workers.
    """
    n = max(1, min(jobs, len(items)))
    if n == 1 or not can_fork():
        return (fn(item) for item in items)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    pids: list[int] = []
    readers: list[Any] = []
    try:
        for k in range(n):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                os.close(r)
                for other in readers:
                    other.close()
                _child(fn, items[k::n], w, before)
            os.close(w)
            pids.append(pid)
            readers.append(open(r, "rb", buffering=1 << 16))
    except BaseException:
        _reap(pids, readers)
        raise
    return _collect(fn, items, pids, readers)


def _collect(fn: Callable[[T], R], items: list[T], pids: list[int], readers: list[Any]) -> Generator[R, None, None]:
    n = len(pids)
    try:
        dead = [False] * n
        for i, item in enumerate(items):
            k = i % n
            result: Any = _FAILED
            if not dead[k]:
                try:
                    result = pickle.load(readers[k])
                except (EOFError, pickle.UnpicklingError, OSError):
                    result = _FAILED
                dead[k] = isinstance(result, str) and result == _FAILED
            yield fn(item) if dead[k] else result
    finally:
        _reap(pids, readers)


def _reap(pids: list[int], readers: list[Any]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for r in readers:
        r.close()
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
