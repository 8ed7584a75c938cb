"""``local``: run a command rule with the host's ``/bin/sh``. No isolation.

What it does guarantee, so that a step depends only on what it records:

- a fresh scratch directory holding exactly the declared inputs, removed after;
- a clean environment: ``PATH=/usr/local/bin:/usr/bin:/bin``, ``HOME`` = the
  scratch directory, ``LANG=C.UTF-8``, plus the declared env (which wins), and
  nothing inherited from the shell that started sqldom;
- its own process group, killed when the command exits (no stray daemons) or
  runs past its timeout.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from sqldom.executors.base import TIMEOUT_EXIT_CODE, CommandJob, CommandResult, ExecutorError, OnOutput
from sqldom.executors.streams import StreamReader
from sqldom.executors.workdir import collect_outputs, remove_tree, scratch_dir, stage_inputs

SHELL = "/bin/sh"
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class LocalExecutor:
    name: ClassVar[str] = "local"
    live_output: ClassVar[bool] = True

    def __init__(self, scratch_root: Path | None = None) -> None:
        self.scratch_root = scratch_root        # None: the system temp folder

    def check(self) -> str | None:
        if not os.access(SHELL, os.X_OK):
            return f"{SHELL} is missing; the local executor runs commands with it"
        return None

    def close(self) -> None:
        pass

    def run(self, job: CommandJob, *, on_output: OnOutput | None = None) -> CommandResult:
        command = job.rendered()
        workdir = scratch_dir(self.scratch_root, job.step)
        try:
            stage_inputs(job, workdir)
            env = {**BASE_ENV, "HOME": str(workdir), **job.env}
            started = time.monotonic()
            try:
                proc = subprocess.Popen([SHELL, "-c", command], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            except OSError as e:
                raise ExecutorError(f"step {job.step}: cannot start {SHELL}: {e}", executor=self.name) from e
            assert proc.stdout is not None and proc.stderr is not None
            reader = StreamReader(proc.stdout, proc.stderr, on_output)
            try:
                timed_out = not wait_exited(proc, job.timeout)
            finally:
                # the whole group: what the command left running in the background, or all of it
                # on timeout (and on Ctrl-C in sqldom); the leader is not reaped yet, so the
                # group id cannot have been reused
                kill_group(proc.pid)
                code = proc.wait()
            if timed_out:
                code = TIMEOUT_EXIT_CODE
            duration_ms = int((time.monotonic() - started) * 1000)
            stdout, stderr = reader.join()
            if code < 0:                      # killed by a signal: report it the way a shell does
                code = 128 - code
            outputs: dict[str, bytes] = {}
            missing: tuple[str, ...] = ()
            if code == 0 and not timed_out:
                outputs, missing = collect_outputs(job, workdir)
            return CommandResult(executor=self.name, command=command, exit_code=code, stdout=stdout,
                                 stderr=stderr, outputs=outputs, missing_outputs=missing, timed_out=timed_out,
                                 duration_ms=duration_ms)
        finally:
            remove_tree(workdir)


def wait_exited(proc: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Wait until ``proc`` exits, without reaping it; False if ``timeout`` came first."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):       # no pidfd (old kernel): reap; the race is harmless there
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group (the child made it with ``start_new_session``)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
