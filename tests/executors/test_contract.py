"""One contract, every executor available here: real processes and real containers, no mocks."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from sqldom.executors.base import TIMEOUT_EXIT_CODE, CommandJob, ExecutorError
from tests.executors.conftest import Target

NASTY = "a b;rm -rf x.txt"          # a file name that is also a shell command
# variables a shell or container runtime sets by itself; anything else must be declared
RUNTIME_VARS = {"PATH", "HOME", "LANG", "PWD", "OLDPWD", "SHLVL", "_", "TERM", "HOSTNAME", "container"}


def job(target: Target, command: str, **kw: object) -> CommandJob:
    return CommandJob(step="docs/step.x", command=command, image=target.image, timeout=60, **kw)  # type: ignore[arg-type]


def test_input_and_output_are_substituted_shell_quoted(target: Target) -> None:
    out = "out dir/it's & done.txt"
    result = target.executor.run(job(target, "cat {input} > {output} && test -f x.txt && echo canary-alive",
                                     inputs={NASTY: b"payload\n", "x.txt": b"canary\n"}, input=NASTY,
                                     outputs=(out,)))
    assert result.ok, result
    assert result.outputs == {out: b"payload\n"}
    assert result.stdout == "canary-alive\n"
    assert result.command == "cat 'a b;rm -rf x.txt' > 'out dir/it'\"'\"'s & done.txt' && test -f x.txt && echo canary-alive"


def test_working_directory_holds_exactly_the_declared_inputs(target: Target) -> None:
    result = target.executor.run(job(target, "find . | sort", inputs={"a.txt": b"a", "sub/deeper/b.bin": b"\0"},
                                     input="a.txt", outputs=("gen/o.txt",)))
    assert result.exit_code == 0, result
    # the inputs, their folders, and the (empty) folder of the declared output; nothing else
    assert result.stdout.split() == [".", "./a.txt", "./gen", "./sub", "./sub/deeper", "./sub/deeper/b.bin"]


def test_environment_is_clean_plus_the_declared_env(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLDOM_HOST_SECRET", "leaked")
    result = target.executor.run(job(target, "env", env={"GREETING": "hello world; $(no)", "EMPTY": ""}))
    assert result.ok, result
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["GREETING"] == "hello world; $(no)"
    assert env["EMPTY"] == ""
    assert "PATH" in env
    assert "SQLDOM_HOST_SECRET" not in env
    assert set(env) - RUNTIME_VARS == {"GREETING", "EMPTY"}


def test_non_zero_exit_is_the_users_failure_with_code_and_streams(target: Target) -> None:
    result = target.executor.run(job(target, "echo to-out; echo to-err >&2; exit 3", outputs=("never.txt",)))
    assert not result.ok
    assert (result.exit_code, result.stdout, result.stderr) == (3, "to-out\n", "to-err\n")
    assert result.outputs == {}
    assert result.failure is not None and "exited with code 3" in result.failure


def test_exit_codes_that_container_tools_also_use_stay_the_users(target: Target) -> None:
    for code in (125, 126, 127):
        result = target.executor.run(job(target, f"exit {code}"))
        assert (result.exit_code, result.ok) == (code, False)
    result = target.executor.run(job(target, "no-such-command-anywhere"))
    assert result.exit_code == 127
    assert "no-such-command-anywhere" in result.stderr


def test_missing_declared_output_is_the_users_failure(target: Target) -> None:
    result = target.executor.run(job(target, "echo made > a.out; mkdir b.out", outputs=("a.out", "b.out", "c.out")))
    assert result.exit_code == 0
    assert not result.ok
    assert result.missing_outputs == ("b.out", "c.out")     # a folder is not an output file
    assert result.outputs == {"a.out": b"made\n"}
    assert result.failure is not None and "did not produce b.out, c.out" in result.failure


def test_timeout_stops_the_command_and_is_the_users_failure(target: Target) -> None:
    started = time.monotonic()
    result = target.executor.run(CommandJob(step="slow", command="echo started; sleep 60; echo never",
                                            image=target.image, timeout=1.5, outputs=("x",)))
    assert time.monotonic() - started < 20
    assert result.timed_out and not result.ok
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert result.failure is not None and "timed out" in result.failure
    assert "never" not in result.stdout
    if target.executor.live_output:
        assert result.stdout == "started\n"        # what it printed before it was stopped


def test_outputs_are_byte_exact(target: Target, tmp_path: Path) -> None:
    small = bytes(range(256)) + b"\r\n\xff\xfe not utf-8 \0"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))       # streamed from a Path, not held as bytes
    result = target.executor.run(job(target, "cat {inputs} > {output}; cp big.bin copy/big.bin",
                                     inputs={"small.bin": small, "big.bin": big}, input="small.bin",
                                     outputs=("joined.bin", "copy/big.bin")))
    assert result.ok, result.failure
    assert result.outputs["joined.bin"] == big.read_bytes() + small     # {inputs} is sorted: big.bin first
    assert result.outputs["copy/big.bin"] == big.read_bytes()


def test_output_lines_reach_the_callback(target: Target) -> None:
    lines: list[tuple[float, str]] = []
    threads: set[int] = set()

    def on_output(line: str) -> None:
        threads.add(threading.get_ident())
        lines.append((time.monotonic(), line))

    result = target.executor.run(job(target, "echo one; echo two >&2; sleep 1.5; printf three"),
                                 on_output=on_output)
    assert result.ok, result
    assert sorted(text for _, text in lines) == ["one", "three", "two"]
    if target.executor.live_output:
        when = {text: t for t, text in lines}
        assert when["three"] - when["one"] > 1.0          # "one" arrived while the command still ran


def test_jobs_run_in_parallel_without_mixing_up(target: Target) -> None:
    from concurrent.futures import ThreadPoolExecutor
    seen: dict[int, list[str]] = {i: [] for i in range(3)}

    def one(i: int) -> tuple[int, bytes]:
        result = target.executor.run(job(target, "sleep 0.5; echo line-$N; cat {input} > {output}",
                                         inputs={f"in{i}.txt": f"data {i}\n".encode()}, input=f"in{i}.txt",
                                         outputs=(f"out{i}.txt",), env={"N": str(i)}),
                                     on_output=seen[i].append)
        assert result.ok, result
        return i, result.outputs[f"out{i}.txt"]

    with ThreadPoolExecutor(3) as pool:
        results = dict(pool.map(one, range(3)))
    assert results == {i: f"data {i}\n".encode() for i in range(3)}
    assert seen == {i: [f"line-{i}"] for i in range(3)}


def test_a_template_that_cannot_be_filled_is_the_tools_failure(target: Target) -> None:
    with pytest.raises(ExecutorError, match=r"uses \{input\} but the step has no input"):
        target.executor.run(job(target, "cat {input}"))


def test_check_passes_for_an_executor_under_test(target: Target) -> None:
    assert target.executor.check() is None
