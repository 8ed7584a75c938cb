"""The lazy registry: nothing loads until asked, and ``auto`` explains itself."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sqldom import executors
from sqldom.executors.base import Executor, ExecutorError

EXECUTOR_MODULES = ("sqldom.executors.local", "sqldom.executors.podman", "sqldom.executors.dagger", "dagger")
DAGGER_ENV = ("DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN", "_EXPERIMENTAL_DAGGER_CLI_BIN",
              "_EXPERIMENTAL_DAGGER_RUNNER_HOST")


def loaded_after(code: str, cwd: Path | None = None) -> list[str]:
    """Which executor modules a fresh interpreter has loaded after running ``code``."""
    probe = (f"{code}\nimport sys, json\n"
             f"print(json.dumps([m for m in {EXECUTOR_MODULES!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_a_build_without_command_steps_imports_no_executor_module(tmp_path: Path) -> None:
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "a.md").write_text("# A\n\n[](b.txt)\n")
    (tmp_path / "content" / "b.txt").write_text("B\n")
    code = ("import sqldom\n"
            "from sqldom.engine import BuildOptions, build\n"
            "from sqldom.events import ListSink\n"
            f"for _ in range(2): assert build(BuildOptions(root=__import__('pathlib').Path({str(tmp_path)!r})), "
            "ListSink()) == 0\n")
    assert loaded_after(code) == []


def test_get_imports_only_the_executor_asked_for() -> None:
    assert loaded_after("from sqldom import executors; executors.get('local')") == ["sqldom.executors.local"]
    # the dagger executor's check is cheap: it does not import the SDK
    assert loaded_after("from sqldom import executors; executors.get('dagger').check()") == \
        ["sqldom.executors.dagger"]


def test_every_executor_satisfies_the_protocol() -> None:
    for name in executors.NAMES:
        executor = executors.get(name)
        assert isinstance(executor, Executor)
        assert executor.name == name
        check = executor.check()
        assert check is None or (check and "\n" not in check)


def test_unknown_executor_lists_the_choices() -> None:
    with pytest.raises(ExecutorError, match="unknown executor 'dager'") as info:
        executors.get("dager")
    assert info.value.hint == "use one of auto, dagger, podman, local"


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in DAGGER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_auto_with_nothing_available_says_what_to_install(nothing_installed: None) -> None:
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"no container executor is available") as info:
        executors.auto("auto")
    assert time.monotonic() - started < 2.0
    hint = info.value.hint or ""
    assert "dagger: install the Dagger CLI" in hint
    assert "podman: install buildah and podman (Debian: apt-get install buildah podman runc)" in hint
    assert executors.available() == {"dagger": executors.get("dagger").check(),
                                     "podman": executors.get("podman").check(), "local": None}


def test_a_named_executor_that_is_not_usable_is_refused_with_its_hint(nothing_installed: None) -> None:
    with pytest.raises(ExecutorError, match="executor 'podman' is not usable here") as info:
        executors.auto("podman")
    assert info.value.hint == "install buildah and podman (Debian: apt-get install buildah podman runc)"
    assert executors.auto("local").name == "local"


def test_auto_prefers_dagger_when_a_session_answers_fake_session(monkeypatch: pytest.MonkeyPatch, nothing_installed: None) -> None:
    with socket.create_server(("127.0.0.1", 0)) as session:      # stands in for `dagger run`'s session
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(session.getsockname()[1]))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", "t")
        chosen = executors.auto("auto")
    assert chosen.name == "dagger"


def test_auto_falls_back_to_podman_without_a_dagger_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if executors.get("podman").check() is not None:
        pytest.skip("podman is not installed here")
    for name in DAGGER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if executors.get("dagger").check() is None:
        pytest.skip("a Dagger CLI is installed here, so auto rightly picks dagger")
    assert executors.auto("auto").name == "podman"
