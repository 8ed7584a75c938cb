"""The dagger executor. No Dagger engine can run on these machines, so:

- ``*_fake_engine`` / ``*_offline`` tests run sqldom's real pipeline code against
  a scripted engine that validates every GraphQL query against the real schema
  (``fake_dagger``) and never runs a container: they prove the queries are
  well-formed and the results are read correctly, not that a container ran;
- ``test_dagger_check_*`` exercise engine discovery with real env, files and sockets;
- ``test_dagger_runs_a_command_on_a_real_engine`` runs for real only where an
  engine is reachable, and is skipped (with the reason) elsewhere.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import anyio
import pytest

from sqldom.executors.base import TIMEOUT_EXIT_CODE, CommandJob, CommandResult, ExecutorError
from sqldom.executors.dagger import (
    CLI_ENV,
    INSTALL,
    RUNNER_ENV,
    WORKDIR,
    DaggerExecutor,
    close_session,
    engine_problem,
    run_pipeline,
)
from tests.executors.conftest import DAGGER_IMAGE, skip_or_fail
from tests.executors.fake_dagger import FakeConnection, FakeEngine, Script

IMAGE = "127.0.0.1:5000/tools/sass:1"
DAGGER_ENV = ("DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN", CLI_ENV, RUNNER_ENV)


@pytest.fixture
def no_dagger_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No session, no CLI anywhere: an empty PATH and an empty SDK cache."""
    for name in DAGGER_ENV:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return empty


def sass_job(**kw: object) -> CommandJob:
    fields: dict[str, object] = dict(step="styles/main.scss", command="sassc {input} {output}",
                                     inputs={"styles/main.scss": b"a { b: c }\n", "styles/_vars.scss": b"$x: 1;\n"},
                                     input="styles/main.scss", outputs=("styles/main.css",),
                                     env={"SASS_PATH": "styles", "LANG": "C.UTF-8"}, image=IMAGE, timeout=30)
    fields.update(kw)
    return CommandJob(**fields)  # type: ignore[arg-type]


def run_offline(script: Script, job: CommandJob, tmp_path: Path, lines: list[str] | None = None) -> CommandResult:
    """``run_pipeline`` (the executor's own code) against ``script``, with no engine and no I/O."""
    import dagger
    client = dagger.Client.from_connection(FakeConnection(script))  # type: ignore[arg-type]
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    on_output = None if lines is None else lines.append

    async def main() -> CommandResult:
        return await run_pipeline(client, job, inputs, outputs, on_output)

    return anyio.run(main)


# ---- pipelines, offline ----------------------------------------------------------------------------

def test_dagger_pipeline_queries_validate_against_schema_offline(tmp_path: Path) -> None:
    script = Script(stdout="compiled\n", files={f"{WORKDIR}/styles/main.css": b"a{b:c}\n"})
    lines: list[str] = []
    result = run_offline(script, sass_job(), tmp_path, lines)
    assert result.ok, result
    assert result.outputs == {"styles/main.css": b"a{b:c}\n"}
    assert lines == ["compiled"]
    calls = script.calls                     # every query they came in validated against the schema
    host_dir = ("directory", {"path": str(tmp_path / "in")})
    assert host_dir in calls
    assert ("withNewDirectory", {"path": "styles"}) in calls
    # the pipeline, in order, as the engine receives it
    pipeline = [c for c in calls if c[0] in ("from", "withEnvVariable", "withDirectory", "withWorkdir", "withExec")]
    assert pipeline[:6] == [
        ("from", {"address": IMAGE}),
        ("withEnvVariable", {"name": "LANG", "value": "C.UTF-8"}),
        ("withEnvVariable", {"name": "SASS_PATH", "value": "styles"}),
        ("withDirectory", {"path": WORKDIR, "source": pipeline[3][1]["source"]}),
        ("withWorkdir", {"path": WORKDIR}),
        ("withExec", {"args": ["sh", "-c", "sassc styles/main.scss styles/main.css"], "expect": "ANY"}),
    ]
    assert pipeline[3][1]["source"].startswith("fake-")          # the id of the host directory
    names = [name for name, _ in calls]
    for leaf in ("sync", "exitCode", "stdout", "stderr"):
        assert leaf in names
    assert ("exists", {"path": f"{WORKDIR}/styles/main.css", "expectedType": "REGULAR_TYPE"}) in calls
    assert ("export", {"path": str(tmp_path / "out" / "styles" / "main.css")}) in calls


def test_dagger_non_zero_exit_is_the_users_failure_and_exports_nothing_fake_engine(tmp_path: Path) -> None:
    script = Script(exit_code=2, stdout="", stderr="Error: undefined variable\n")
    result = run_offline(script, sass_job(), tmp_path)
    assert (result.ok, result.exit_code, result.stderr) == (False, 2, "Error: undefined variable\n")
    assert not any(name in ("export", "exists") for name, _ in script.calls)


def test_dagger_exec_error_becomes_the_users_failure_fake_engine(tmp_path: Path) -> None:
    script = Script(exec_error={"cmd": ["sh", "-c", "x"], "exitCode": 137, "stdout": "partial\n",
                                "stderr": "Killed\n"})
    result = run_offline(script, sass_job(), tmp_path)
    assert (result.ok, result.exit_code, result.stdout, result.stderr) == (False, 137, "partial\n", "Killed\n")
    assert result.failure == "command exited with code 137: sassc styles/main.scss styles/main.css"


def test_dagger_missing_output_is_the_users_failure_fake_engine(tmp_path: Path) -> None:
    result = run_offline(Script(), sass_job(), tmp_path)
    assert result.missing_outputs == ("styles/main.css",)
    assert not result.ok


def test_dagger_query_error_is_the_tools_failure_fake_engine(tmp_path: Path) -> None:
    script = Script(query_error="failed to resolve source metadata for 127.0.0.1:5000/tools/sass:1: not found")
    with pytest.raises(ExecutorError, match="could not run the container: failed to resolve") as info:
        run_offline(script, sass_job(), tmp_path)
    assert info.value.hint is not None and IMAGE in info.value.hint


def test_dagger_timeout_is_the_users_failure_fake_engine(tmp_path: Path) -> None:
    result = run_offline(Script(sync_delay=5), sass_job(timeout=0.3), tmp_path)
    assert (result.timed_out, result.exit_code, result.ok) == (True, TIMEOUT_EXIT_CODE, False)


def test_dagger_executor_end_to_end_over_http_fake_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real ``dagger.connection()`` path: session env, auth, introspection, the pipeline, export."""
    script = Script(stdout="ok\n", files={f"{WORKDIR}/styles/main.css": b"a{b:c}\n"})
    with FakeEngine(script) as (port, token):
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(port))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", token)
        executor = DaggerExecutor(scratch_root=tmp_path / "scratch")
        try:
            assert executor.check() is None
            first = executor.run(sass_job())
            second = executor.run(sass_job(step="other.scss"))     # the same session, reused
        finally:
            executor.close()
    assert first.ok and second.ok, first
    assert first.outputs == {"styles/main.css": b"a{b:c}\n"}
    assert script.sent[0].split() == ["{", "version", "}"]
    assert sum(q.split() == ["{", "version", "}"] for q in script.sent) == 1
    assert list((tmp_path / "scratch").iterdir()) == []


def test_dagger_session_gone_before_run_is_the_tools_failure_fake_engine(monkeypatch: pytest.MonkeyPatch, no_dagger_env: Path,
                                                          tmp_path: Path) -> None:
    with FakeEngine(Script()) as (port, token):
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(port))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", token)
        assert engine_problem() is None
    # the session went away between check and run (the port is closed now)
    executor = DaggerExecutor()
    with pytest.raises(ExecutorError, match="no Dagger engine is reachable"):
        executor.run(sass_job())
    close_session()


# ---- engine discovery: fast, no SDK import, no download ------------------------------------------

def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_dagger_check_without_cli_or_session_says_what_to_install(no_dagger_env: Path) -> None:
    started = time.monotonic()
    assert DaggerExecutor().check() == INSTALL
    assert time.monotonic() - started < 1.0
    with pytest.raises(ExecutorError) as info:
        DaggerExecutor().run(sass_job())
    assert info.value.hint == INSTALL


def test_dagger_check_session_port_needs_a_token_and_a_listener(monkeypatch: pytest.MonkeyPatch,
                                                                no_dagger_env: Path) -> None:
    monkeypatch.setenv("DAGGER_SESSION_PORT", str(_closed_port()))
    assert "DAGGER_SESSION_TOKEN is not" in (engine_problem() or "")
    monkeypatch.setenv("DAGGER_SESSION_TOKEN", "t")
    assert "no Dagger session answers on DAGGER_SESSION_PORT" in (engine_problem() or "")
    monkeypatch.setenv("DAGGER_SESSION_PORT", "abc")
    assert "is not a port number" in (engine_problem() or "")


def test_dagger_check_finds_a_cli_on_path_or_named_by_env_fake_cli(monkeypatch: pytest.MonkeyPatch,
                                                          no_dagger_env: Path) -> None:
    cli = no_dagger_env / "dagger"
    cli.write_text("#!/bin/sh\nexit 1\n")
    cli.chmod(0o755)
    assert engine_problem() is None
    cli.unlink()
    monkeypatch.setenv(CLI_ENV, str(no_dagger_env / "nope"))
    assert engine_problem() == f"{CLI_ENV}={no_dagger_env / 'nope'} is not an executable file"


def test_dagger_check_probes_a_tcp_runner_host_fake_runner(monkeypatch: pytest.MonkeyPatch, no_dagger_env: Path) -> None:
    cli = no_dagger_env / "dagger"
    cli.write_text("#!/bin/sh\nexit 1\n")
    cli.chmod(0o755)
    port = _closed_port()
    monkeypatch.setenv(RUNNER_ENV, f"tcp://127.0.0.1:{port}")
    assert engine_problem() == f"no Dagger engine answers at {RUNNER_ENV}=tcp://127.0.0.1:{port}"
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setenv(RUNNER_ENV, f"tcp://127.0.0.1:{server.getsockname()[1]}")
        assert engine_problem() is None
    cli.unlink()
    assert "the Dagger CLI that connects to it is missing" in (engine_problem() or "")


def test_dagger_command_rule_needs_an_image() -> None:
    with pytest.raises(ExecutorError, match="needs an image"):
        DaggerExecutor().run(sass_job(image=None))


# ---- a real engine, where there is one -----------------------------------------------------------

def test_dagger_runs_a_command_on_a_real_engine(tmp_path: Path) -> None:
    problem = engine_problem()
    if problem is not None:
        skip_or_fail("dagger", f"no Dagger engine reachable ({problem})")
    executor = DaggerExecutor(scratch_root=tmp_path)
    try:
        result = executor.run(CommandJob(step="real", command="tr a-z A-Z < {input} > {output}; echo done",
                                         inputs={"in put.txt": b"hello\n"}, input="in put.txt",
                                         outputs=("out/x.txt",), image=DAGGER_IMAGE, timeout=300))
    finally:
        executor.close()
    assert result.ok, result
    assert result.outputs == {"out/x.txt": b"HELLO\n"}
    assert result.stdout == "done\n"
