"""A real ``python -m sqldom watch --json`` subprocess, driven by tests.

Reader threads turn its stdout into JSON events and keep its stderr, so every
wait has a timeout and a test never hangs on a silent watch. Use it as a context
manager: the process is killed on the way out whatever happened.

    with WatchProcess(root) as w:
        first = w.start()                       # events of the first build
        edit(...)
        batch = w.until(lambda: output_ok(), timeout=20)   # events of every batch until then
        assert w.stop(signal.SIGINT) == 0
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Event = dict[str, Any]

SETTLE = 0.3   # seconds for watchfiles to register its watches after the first build


class WatchError(AssertionError):
    """The watch did not do what the test waited for; the message holds everything it printed."""


class Batch(list[Event]):
    """Events of one or more watch batches (each ended by its summary)."""

    @property
    def steps(self) -> dict[str, str]:
        """step id -> status of the last step event for it."""
        return {e["id"]: e["status"] for e in self if e["event"] == "step"}

    def step_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self:
            if e["event"] == "step":
                counts[e["id"]] = counts.get(e["id"], 0) + 1
        return counts

    @property
    def executed(self) -> set[str]:
        return {e["id"] for e in self if e["event"] == "step" and e["status"] in ("built", "failed")}

    @property
    def deleted(self) -> set[str]:
        return {e["path"] for e in self if e["event"] == "deleted"}

    @property
    def problems(self) -> list[Event]:
        return [e for e in self if e["event"] == "problem"]

    @property
    def summaries(self) -> list[Event]:
        return [e for e in self if e["event"] == "summary"]

    @property
    def outputs(self) -> set[str]:
        """Every output path named by a step event."""
        return {o for e in self if e["event"] == "step" for o in e.get("outputs", [])}


class WatchProcess:
    """``sqldom watch --json -C ROOT [ARGS]`` in the background, with bounded waits on what it prints."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._lock = threading.Lock()
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.events: list[Event] = []        # every event taken from the queue so far
        self._ended = False
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> WatchProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0, settle: float = SETTLE) -> Batch:
        """Start the watch; return the events of its first build once watchfiles had time to register."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONFAULTHANDLER"] = "1"      # SIGABRT prints every thread's stack: see ``dump_stacks``
        self.proc = subprocess.Popen([sys.executable, "-m", "sqldom", "watch", "--json", "-C", str(self.root),
                                      *self.args], cwd=self.root, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        for target in (self._pump_stdout, self._pump_stderr):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        first = self.next_summary(timeout)
        time.sleep(settle)
        return first

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
        """Send ``sig`` and return the exit code (the process is killed if it does not end in time)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._timeout(f"`sqldom watch` did not end within {timeout}s of signal {sig}") from None
        self._join()
        return code

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a process SIGKILL cannot end
                pass
        self._join()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def _join(self) -> None:
        for t in self._threads:
            t.join(timeout=5)

    # ---- readers ---------------------------------------------------------------------------------------

    def _pump_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                with self._lock:
                    self.stdout_lines.append(line)
                if line.startswith("{"):
                    try:
                        self._events.put(json.loads(line))
                    except json.JSONDecodeError:
                        pass    # kept in stdout_lines; a test asserting on events will say what came
        except ValueError:      # the stream was closed under us by kill()
            pass
        self._events.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                with self._lock:
                    self.stderr_lines.append(line)
        except ValueError:
            pass

    # ---- what it printed -------------------------------------------------------------------------------

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self.stderr_lines)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self.stdout_lines)

    def transcript(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        return (f"process: {'running' if code is None else f'exited {code}'}\n"
                f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-12000:]}")

    def dump_stacks(self) -> None:
        """End a watch that stopped answering with SIGABRT, so stderr shows where each thread was."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGABRT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return
        self._join()

    def _timeout(self, message: str) -> WatchError:
        self.dump_stacks()
        return WatchError(f"{message}\n{self.transcript()}")

    def _take(self, timeout: float) -> Event | None:
        """The next event, or None when none came within ``timeout``; raises if the process ended."""
        if self._ended:
            raise WatchError(f"`sqldom watch` has ended\n{self.transcript()}")
        try:
            ev = self._events.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if ev is None:
            self._ended = True
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            raise WatchError(f"`sqldom watch` ended unexpectedly\n{self.transcript()}")
        self.events.append(ev)
        return ev

    # ---- waits -----------------------------------------------------------------------------------------

    def next_summary(self, timeout: float = 20.0) -> Batch:
        """Events up to and including the next summary."""
        batch = Batch()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout(f"no summary from `sqldom watch` within {timeout}s; events of this wait: "
                                    f"{list(batch)}")
            ev = self._take(min(left, 0.5))
            if ev is None:
                continue
            batch.append(ev)
            if ev["event"] == "summary":
                return batch

    def until(self, done: Callable[[], bool], timeout: float = 20.0, what: str = "the expected outputs") -> Batch:
        """Events of every batch until a summary after which ``done()`` holds (a change may take several
        batches; a batch writes its outputs before it prints its summary)."""
        batch = Batch()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout(f"{what} not reached within {timeout}s; events of this wait: {list(batch)}")
            ev = self._take(min(left, 0.5))
            if ev is None:
                continue
            batch.append(ev)
            if ev["event"] == "summary" and done():
                return batch

    def quiet(self, seconds: float) -> Batch:
        """Whatever arrives within ``seconds`` (trailing batches of a change, or a build that must not happen)."""
        batch = Batch()
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ev = self._take(min(left, 0.5))
            if ev is not None:
                batch.append(ev)
        # a batch half printed when the time ran out: take it whole
        if batch and batch[-1]["event"] != "summary":
            batch.extend(self.next_summary(10.0))
        return batch

    def wait_stderr(self, text: str, timeout: float = 20.0) -> str:
        """Wait until stderr contains ``text``; return stderr."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if time.monotonic() > deadline:
                raise self._timeout(f"{text!r} not on stderr within {timeout}s")
            if not self.alive():
                time.sleep(0.2)      # let the reader drain what the process printed last
                if text in self.stderr:
                    break
                raise WatchError(f"`sqldom watch` ended before printing {text!r}\n{self.transcript()}")
            time.sleep(0.05)
        return self.stderr

    def drain(self) -> Batch:
        """Events already printed and not yet taken (no waiting)."""
        batch = Batch()
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                return batch
            if ev is None:
                self._ended = True
                return batch
            self.events.append(ev)
            batch.append(ev)
