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

import gc
import os
import pickle
import signal
import sys
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from sqldom.memory import release
from sqldom.timings import mark

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


# A worker's results wait in its pipe while the parent is busy elsewhere (storing a batch of
# blobs, say); 1 MiB (Linux's default ceiling, /proc/sys/fs/pipe-max-size) holds a few hundred.
PIPE_BYTES = 1 << 20


def _widen(fd: int) -> None:
    """Linux: let the pipe hold PIPE_BYTES, so a worker rarely blocks on a parent that is briefly busy."""
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):   # another system, or a lower limit: the default stays
        pass


# Items between two ``memory.release`` calls in a worker: rendering thousands of pages leaves
# the heap holding freed pages that would otherwise stay resident until the worker ends.
RELEASE_EVERY = 1024


def _die_with(parent: int) -> None:
    """Linux: the kernel kills this worker when the parent dies (a SIGKILLed build leaves no orphans)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:          # the parent died before that took effect
        os._exit(1)


def _child(phases: list[Callable[[Any], Any]], items: list[Any], up: int, down: int | None,
           install: Callable[[Any], None] | None, before: Callable[[], None] | None, parent: int) -> None:
    """Body of one worker; never returns (``os._exit``, so no atexit handler or buffered write runs twice)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent decides what Ctrl-C means
        signal.signal(signal.SIGTERM, signal.SIG_DFL)   # and may kill us at any time
        _die_with(parent)
        from sqldom.fs import HELD_LOCKS
        for fd in HELD_LOCKS:   # the project lock is the parent's: an flock is shared across fork
            os.close(fd)
        # fresh standard streams: a lock held by another thread of the parent at fork time stays held
        for name in ("stdout", "stderr"):
            try:
                fd = getattr(sys, name).fileno()
            except (AttributeError, OSError, ValueError):
                fd = 2
            setattr(sys, name, open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="backslashreplace"))
        if before is not None:
            before()
        inbox = open(down, "rb", buffering=1 << 16) if down is not None else None
        with open(up, "wb", buffering=1 << 16) as out:
            for i, fn in enumerate(phases):
                if i > 0:
                    assert inbox is not None and install is not None
                    install(pickle.load(inbox))   # what the parent learnt from every worker's previous phase
                    release()   # (the payload, once installed)
                mark(f"worker phase {i} starts")
                for n, item in enumerate(items, 1):
                    try:
                        result = fn(item)
                    except BaseException:
                        pickle.dump(_FAILED, out)   # the parent redoes it (and sees the exception there)
                        out.flush()
                        return
                    pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
                    if n % RELEASE_EVERY == 0:
                        release()
                mark(f"worker phase {i} done")   # (before the last results go: then the parent may kill us)
                out.flush()
    except BaseException:
        code = 1
    finally:
        os._exit(code)


class Pool:
    """Forked workers that run one or more phases over the same items; each worker keeps its share.

    Item ``k`` goes to worker ``k % n`` in every phase, so what a worker built in
    one phase (say, a rendered template) is still there, in its memory, in the
    next. Between phases the parent sends every worker the same payload
    (``send``), which the worker's ``install`` takes in. The parent reads each
    phase's results in item order (``results``). A worker that dies costs only
    time: the parent computes that worker's remaining items itself, with the
    phase's function, when it reaches them.
    """

    def __init__(self, phases: list[Callable[[Any], Any]], items: list[Any], jobs: int,
                 install: Callable[[Any], None] | None = None, before: Callable[[], None] | None = None) -> None:
        self.phases = phases
        self.items = items
        self.n = max(1, min(jobs, len(items))) if can_fork() else 1
        self.pids: list[int] = []
        self.readers: list[Any] = []
        self.writers: list[Any] = []
        self.dead: list[bool] = []
        if self.n == 1:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        parent = os.getpid()
        # Frozen objects are never visited by the collector: a worker's collections would
        # otherwise touch (and so copy, page by page) every object it inherited.
        gc.freeze()
        try:
            for k in range(self.n):
                r, w = os.pipe()
                _widen(w)
                dr, dw = os.pipe() if len(phases) > 1 else (None, None)
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the child
                    os.close(r)
                    if dw is not None:
                        os.close(dw)
                    for f in self.readers + self.writers:
                        f.close()
                    _child(phases, items[k::self.n], w, dr, install, before, parent)
                os.close(w)
                if dr is not None and dw is not None:
                    os.close(dr)
                    self.writers.append(open(dw, "wb"))
                self.pids.append(pid)
                self.readers.append(open(r, "rb", buffering=1 << 16))
                self.dead.append(False)
        except BaseException:
            self.close()
            raise
        finally:
            gc.unfreeze()   # (in the parent only: each worker keeps its inheritance frozen)

    def results(self, phase: int) -> Generator[Any, None, None]:
        """Phase ``phase``'s results, in item order."""
        fn = self.phases[phase]
        if self.n == 1:
            for item in self.items:
                yield fn(item)
            return
        for i, item in enumerate(self.items):
            k = i % self.n
            result: Any = _FAILED
            if not self.dead[k]:
                try:
                    result = pickle.load(self.readers[k])
                except (EOFError, pickle.UnpicklingError, OSError):
                    result = _FAILED
                self.dead[k] = isinstance(result, str) and result == _FAILED
            yield fn(item) if self.dead[k] else result

    def send(self, payload: Any) -> None:
        """The payload for the next phase, to every live worker."""
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        for k, w in enumerate(self.writers):
            if self.dead[k]:
                continue
            try:
                w.write(data)
                w.flush()
            except OSError:            # it died: ``results`` notices and redoes its items
                self.dead[k] = True

    def close(self) -> None:
        """Kill and reap the workers (they may be done already)."""
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for f in self.readers + self.writers:
            try:
                f.close()
            except OSError:
                pass
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.pids, self.readers, self.writers = [], [], []


def run_ordered(fn: Callable[[T], R], items: list[T], jobs: int,
                before: Callable[[], None] | None = None) -> Generator[R, None, None]:
    """Yield ``fn(item)`` for every item, in order, computed by ``jobs`` forked workers.

    The workers are forked before this returns (they see the parent as it is
    now, not as it is when the first result is asked for). ``before`` runs
    first in each worker (e.g. to open its own database connection: a SQLite
    connection must not be shared across a fork). Closing the generator, or
    an exception (Ctrl-C) while it runs, kills and reaps the workers.
    """
    pool = Pool([fn], items, jobs, before=before)
    return _drain(pool)


def _drain(pool: Pool) -> Generator[Any, None, None]:
    try:
        yield from pool.results(0)
    finally:
        pool.close()
