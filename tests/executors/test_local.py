"""The local executor: what it promises beyond the contract (real processes, no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqldom.executors.base import CommandJob
from sqldom.executors.local import LocalExecutor


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for init."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_timeout_kills_the_whole_process_group() -> None:
    result = LocalExecutor().run(CommandJob(step="t", command="sleep 300 & echo $!; sleep 300", timeout=1))
    assert result.timed_out
    background = int(result.stdout.split()[0])
    assert wait_gone(background), f"background process {background} survived the timeout"


def test_processes_left_behind_by_a_finished_command_are_killed() -> None:
    result = LocalExecutor().run(CommandJob(step="t", command="sleep 300 >/dev/null 2>&1 & echo $!"))
    assert result.ok
    assert wait_gone(int(result.stdout.strip()))


def test_a_background_process_holding_the_pipes_does_not_hang_the_run() -> None:
    result = LocalExecutor().run(CommandJob(step="t", command="(sleep 300; echo late) & echo early", timeout=30))
    assert result.ok
    assert result.stdout == "early\n"
    assert result.duration_ms < 10_000


def test_environment_is_exactly_path_home_lang_and_the_declared_env() -> None:
    result = LocalExecutor().run(CommandJob(step="t", command='env; echo "cwd=$(pwd)"', env={"PATH": "/bin", "X": "1"}))
    lines = result.stdout.splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("cwd="))
    cwd = next(line[4:] for line in lines if line.startswith("cwd="))
    assert env.pop("PWD") == cwd
    env.pop("SHLVL", None)
    env.pop("OLDPWD", None)
    assert env == {"PATH": "/bin", "HOME": cwd, "LANG": "C.UTF-8", "X": "1"}   # declared PATH wins


def test_scratch_directory_is_removed_even_when_the_command_locks_it(tmp_path: Path) -> None:
    executor = LocalExecutor(scratch_root=tmp_path)
    result = executor.run(CommandJob(step="t", command="mkdir -p ro/x && touch ro/x/f && chmod 000 ro/x && chmod 555 ro",
                                     inputs={"a": b"1"}))
    assert result.ok
    assert list(tmp_path.iterdir()) == []


def test_output_symlink_is_followed_inside_the_workdir_never_out_to_the_host(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("host data")
    result = LocalExecutor().run(CommandJob(step="t", command=f"echo in > real; ln -s real inside; ln -s {secret} out; "
                                            f"mkdir d; ln -s {tmp_path} d2",
                                            outputs=("inside", "out", "d2/host-secret")))
    assert result.outputs == {"inside": b"in\n"}
    assert result.missing_outputs == ("out", "d2/host-secret")


def test_death_by_signal_is_reported_the_way_a_shell_does() -> None:
    result = LocalExecutor().run(CommandJob(step="t", command="kill -9 $$"))
    assert result.exit_code == 128 + 9
    assert not result.ok


def test_huge_output_is_kept_bounded_but_every_line_is_streamed() -> None:
    seen = []
    result = LocalExecutor().run(CommandJob(step="t", command="i=0; while [ $i -lt 3000 ]; do printf '%0999d\\n' $i; "
                                            "i=$((i+1)); done"), on_output=seen.append)
    assert result.ok
    assert len(seen) == 3000 and seen[-1] == f"{2999:0999d}"
    assert result.stdout.startswith("[... ") and "bytes of output omitted" in result.stdout.splitlines()[0]
    assert result.stdout.endswith(f"{2999:0999d}\n")
    assert len(result.stdout) < 1.1 * (1 << 20)


def test_a_failing_output_callback_does_not_lose_the_output() -> None:
    def broken(line: str) -> None:
        raise RuntimeError("printer on fire")

    result = LocalExecutor().run(CommandJob(step="t", command="echo a; echo b"), on_output=broken)
    assert result.stdout == "a\nb\n"


def test_inputs_are_plain_files_whatever_their_source_mode(tmp_path: Path) -> None:
    src = tmp_path / "tool.sh"
    src.write_text("echo hi\n")
    src.chmod(0o700)
    result = LocalExecutor().run(CommandJob(step="t", command="stat -c %a tool.sh; sh tool.sh", inputs={"tool.sh": src}))
    assert result.stdout == "644\nhi\n"


def test_inputs_that_cannot_be_placed_are_the_tools_failure(tmp_path: Path) -> None:
    from sqldom.executors.base import ExecutorError
    with pytest.raises(ExecutorError, match="cannot place input gone.txt"):
        LocalExecutor(scratch_root=tmp_path).run(CommandJob(step="t", command="true",
                                                            inputs={"gone.txt": tmp_path / "vanished"}))
    with pytest.raises(ExecutorError, match="cannot place input a/b"):
        LocalExecutor(scratch_root=tmp_path).run(CommandJob(step="t", command="true", inputs={"a": b"", "a/b": b""}))
    assert list(tmp_path.iterdir()) == []
