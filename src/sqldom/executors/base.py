"""The contract between the engine and the executors that run command steps.

The engine resolves a step into a ``CommandJob`` (the command, its input files,
the outputs it must produce, env, image, timeout) and hands it to an executor's
``run``; the executor returns a ``CommandResult``. Executors never touch the
database or build/, so every executor can be tested on its own with real
processes and containers, and one contract suite runs against all of them.

Two kinds of failure, kept apart:

- **The user's failure is a value.** The command exited non-zero, ran past its
  timeout, or exited 0 without producing a declared output: ``run`` returns a
  ``CommandResult`` whose ``ok`` is false and whose ``failure`` says why, with the
  exit code, stdout and stderr. Like a broken link, it is data the engine turns
  into a failed step and a problem; an exception would lose the streams or force
  every caller to unpack them from it.
- **The tool's failure is an exception**, ``ExecutorError``: the executor could
  not run the command at all (podman missing, no Dagger engine, an image that
  cannot be found, a container that would not start). Its message and hint say
  what to install or fix. The engine fails the step with that message; other
  steps go on.

**Timeout.** The job carries it (``timeout`` seconds, ``None`` for none) and the
executor enforces it, because only the executor can kill what it started (a
process group, a container). It bounds the command only, not pulling an image
or starting the engine. Running past it is the user's failure: the result has
``timed_out`` set, ``exit_code`` 124 (the convention of coreutils ``timeout``)
and the output produced so far.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import ClassVar, Protocol, runtime_checkable

from sqldom.errors import SqldomError

TIMEOUT_EXIT_CODE = 124
MAX_STREAM_BYTES = 1 << 20          # stdout/stderr kept per stream; the callback still sees every line
PLACEHOLDERS = ("input", "inputs", "output", "outputs")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")

OnOutput = Callable[[str], None]


class ExecutorError(SqldomError):
    """An executor could not run a command (the tool's failure, not the user's).

    The step fails with this message; the build goes on (exit 1).
    """

    exit_code = 1

    def __init__(self, message: str, *, executor: str = "", hint: str | None = None,
                 path: str | None = None, line: int | None = None) -> None:
        super().__init__(message, path=path, line=line, hint=hint)
        self.executor = executor


def _check_relative(path: str, what: str) -> None:
    """Paths in a job stay inside the working directory: relative, no '..', no empty parts."""
    p = PurePosixPath(path)
    if (not path or "\0" in path or "\\" in path or p.is_absolute() or path.endswith("/")
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise ExecutorError(f"{what} {path!r} must be a relative path inside the working directory",
                            hint="this is a bug in sqldom if the path came from a rule")


@dataclass(frozen=True)
class CommandJob:
    """One command to run, fully resolved by the engine.

    ``inputs`` maps a relative path in the working directory to its bytes, or to a
    ``Path`` on the host whose bytes are streamed there (large sources stay out of
    memory). The working directory holds exactly these files when the command
    starts (plus empty parent folders of the outputs), so a command can only
    depend on what the step records.
    """

    step: str                                   # the step id, for messages and streamed lines
    command: str                                # template: {input} {inputs} {output} {outputs}
    inputs: Mapping[str, bytes | Path] = field(default_factory=dict)
    input: str | None = None                    # the input {input} names (one of ``inputs``)
    outputs: tuple[str, ...] = ()               # files the command must produce, relative paths
    env: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None                    # container executors: the image to run in
    timeout: float | None = None                # seconds for the command; None: no limit
    network: bool = False                       # podman: False runs with --network none

    def __post_init__(self) -> None:
        for path in self.inputs:
            _check_relative(path, "input")
        for path in self.outputs:
            _check_relative(path, "output")
        if self.input is not None and self.input not in self.inputs:
            raise ExecutorError(f"step {self.step}: input {self.input!r} is not among the job's inputs")
        if len(set(self.outputs)) != len(self.outputs):
            raise ExecutorError(f"step {self.step}: an output is declared twice: {', '.join(self.outputs)}")
        for name in self.env:
            if not name or "=" in name or "\0" in name:
                raise ExecutorError(f"step {self.step}: bad environment variable name {name!r}",
                                    hint="names are non-empty and contain no '='")
        if self.timeout is not None and self.timeout <= 0:
            raise ExecutorError(f"step {self.step}: timeout must be a positive number of seconds")

    def rendered(self) -> str:
        return render_command(self.command, input=self.input, inputs=sorted(self.inputs),
                              outputs=self.outputs)

    def output_dirs(self) -> list[str]:
        """Parent folders of the outputs, created before the command runs (``sassc`` won't)."""
        dirs = {str(PurePosixPath(o).parent) for o in self.outputs}
        return sorted(d for d in dirs if d != ".")


@dataclass(frozen=True)
class CommandResult:
    """What running a ``CommandJob`` gave. ``ok`` is the one thing the engine must check."""

    executor: str
    command: str                                # the command as run, after substitution
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    outputs: Mapping[str, bytes] = field(default_factory=dict)   # declared outputs that were produced
    missing_outputs: tuple[str, ...] = ()       # declared outputs absent (or not regular files)
    timed_out: bool = False
    duration_ms: int = 0
    detail: str = ""                            # executor specifics, e.g. "podman: runtime runc"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.missing_outputs

    @property
    def failure(self) -> str | None:
        """One line saying why the step failed, in the user's words; ``None`` when ``ok``."""
        if self.timed_out:
            return f"command timed out after {self.duration_ms / 1000:.1f}s: {self.command}"
        if self.exit_code != 0:
            return f"command exited with code {self.exit_code}: {self.command}"
        if self.missing_outputs:
            return (f"command did not produce {', '.join(self.missing_outputs)} "
                    f"(declared outputs must be regular files): {self.command}")
        return None


@runtime_checkable
class Executor(Protocol):
    """Runs command jobs. ``check`` is cheap and never starts anything slow."""

    name: ClassVar[str]
    live_output: ClassVar[bool]      # True: on_output sees lines while the command runs (not only at the end)

    def check(self) -> str | None:
        """``None`` when usable here, else one line saying what to install."""
        ...

    def run(self, job: CommandJob, *, on_output: OnOutput | None = None) -> CommandResult:
        """Run ``job``. ``on_output`` gets each line of stdout and stderr (no newline)
        as it arrives, never from two threads at once for one job."""
        ...

    def close(self) -> None:
        """Release what ``run`` kept open (a Dagger session). Safe to call twice."""
        ...


def _quote(path: str) -> str:
    # "./-x" so that a file named like an option stays a file name
    return shlex.quote("./" + path if path.startswith("-") else path)


def render_command(template: str, *, input: str | None, inputs: list[str] | tuple[str, ...],
                   outputs: tuple[str, ...] | list[str]) -> str:
    """Substitute ``{input}``, ``{inputs}``, ``{output}``, ``{outputs}`` with shell-quoted paths.

    Only these four exact tokens are replaced; every other brace stays as written,
    so ``${HOME}``, ``awk '{print $1}'`` and ``{a,b}`` reach the shell untouched.
    ``{output}`` is the first declared output.
    """
    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "input":
            if input is None:
                raise ExecutorError(f"the command uses {{input}} but the step has no input: {template}")
            return _quote(input)
        if name == "inputs":
            return " ".join(_quote(p) for p in inputs)
        if name == "output":
            if not outputs:
                raise ExecutorError(f"the command uses {{output}} but the step declares no output: {template}")
            return _quote(outputs[0])
        return " ".join(_quote(p) for p in outputs)

    return _PLACEHOLDER.sub(replace, template)


def placeholders(template: str) -> set[str]:
    """The placeholders a command template uses (for validating rules before anything runs)."""
    return set(_PLACEHOLDER.findall(template))
