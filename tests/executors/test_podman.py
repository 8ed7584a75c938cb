"""The podman executor beyond the contract: constraint probing, the busybox base image,
no registry pulls, and the tool's failures. Real podman and buildah, in a private store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sqldom.executors import podman
from sqldom.executors.base import CommandJob, ExecutorError
from sqldom.executors.podman import (
    BUSYBOX_TAG,
    INSTALL,
    PodmanExecutor,
    Setup,
    Storage,
    build_busybox_image,
    candidate_setups,
    is_static_elf,
    lowered_ulimits,
)


def buildah(root: Path, *args: str) -> str:
    return subprocess.run([*Storage(root).buildah(), *args], capture_output=True, text=True, check=True).stdout.strip()


def inspect(root: Path, image: str) -> dict[str, object]:
    out = subprocess.run([*Storage(root).podman(), "image", "inspect", image], capture_output=True, text=True,
                         check=True).stdout
    data: dict[str, object] = json.loads(out)[0]
    return data


def containers(root: Path) -> list[str]:
    out = subprocess.run([*Storage(root).podman(), "ps", "--all", "--format", "{{.Names}}"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


# ---- pure parts ------------------------------------------------------------------------------------

def test_lowered_ulimits_stay_within_hard_limits_and_pid_max() -> None:
    assert lowered_ulimits(20000, 96365, 32768) == ("nofile=20000:20000", "nproc=32768:32768")
    assert lowered_ulimits(1048576, 4096, 4194304) == ("nofile=1048576:1048576", "nproc=4096:4096")


def test_candidate_setups_try_the_fewest_flags_first() -> None:
    setups = candidate_setups(installed=["runc"])
    assert setups[0] == Setup()
    assert setups[1] == Setup("runc", ())
    assert [s.runtime for s in setups[2:]] == [None, "runc"] and all(s.ulimits for s in setups[2:])
    assert Setup("runc", ("nofile=1:1",)).flags() == ["--runtime", "runc", "--ulimit", "nofile=1:1"]


def test_the_host_busybox_is_recognised_as_static() -> None:
    import shutil
    found = shutil.which("busybox")
    if found is None:
        pytest.skip("busybox is not installed")
    assert is_static_elf(Path(found))
    assert not is_static_elf(Path("/bin/sh").resolve())        # dynamically linked on Debian


def test_check_names_the_packages_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert PodmanExecutor().check() == INSTALL == "install buildah and podman (Debian: apt-get install buildah podman runc)"
    with pytest.raises(ExecutorError) as info:
        PodmanExecutor().run(CommandJob(step="s", command="true", image=BUSYBOX_TAG))
    assert info.value.hint == INSTALL


# ---- real podman ---------------------------------------------------------------------------------

def test_probe_finds_flags_that_run_a_container_here_and_keeps_them(podman_store: Path) -> None:
    podman.forget_probe()
    podman.probe_log.clear()
    storage = Storage(podman_store)
    setup = podman.probe(storage, BUSYBOX_TAG)
    tried = list(podman.probe_log)
    assert tried[-1].setup == setup and tried[-1].error == ""
    assert all(a.error for a in tried[:-1])                       # the first one that works is kept
    assert tried[0].setup == Setup()                               # podman's defaults come first
    if any("rlimit" in a.error for a in tried):                   # e.g. root without CAP_SYS_RESOURCE
        assert setup.ulimits
    assert podman.probe(storage, BUSYBOX_TAG) == setup              # cached: no second probe
    assert len(podman.probe_log) == len(tried)
    result = PodmanExecutor(storage_root=podman_store, pull="never").run(
        CommandJob(step="s", command="ulimit -n", image=BUSYBOX_TAG))
    assert result.ok and result.detail == setup.describe()


def test_busybox_base_image_is_from_scratch_and_reproducible(podman_store: Path) -> None:
    info = inspect(podman_store, BUSYBOX_TAG)
    assert len(info["RootFS"]["Layers"]) == 1                      # type: ignore[index]
    assert info["Config"]["Env"] == ["PATH=/bin"]                  # type: ignore[index]
    assert not info.get("History")
    assert info["Created"].startswith("1970-01-01")                # type: ignore[union-attr]
    again = build_busybox_image("localhost/sqldom-test/busybox-again:1", storage_root=podman_store, force=True)
    assert again == info["Id"]                                     # same bytes, same image id


def test_image_not_in_the_store_is_the_tools_failure_and_nothing_is_pulled(podman_store: Path) -> None:
    executor = PodmanExecutor(storage_root=podman_store, pull="never")
    for image in ("localhost/sqldom-test/absent:1", "registry.invalid/nothing:1"):
        with pytest.raises(ExecutorError, match=f"image {image} is not in podman's local store") as info:
            executor.run(CommandJob(step="s", command="true", image=image))
        assert info.value.hint is not None and "does not pull" in info.value.hint
    images = subprocess.run([*Storage(podman_store).podman(), "images", "--format", "{{.Repository}}"],
                            capture_output=True, text=True, check=True).stdout
    assert "absent" not in images and "registry.invalid" not in images


def test_an_image_without_a_shell_is_the_tools_failure(podman_store: Path) -> None:
    ctr = buildah(podman_store, "from", "--quiet", "scratch")
    buildah(podman_store, "commit", "--quiet", "--rm", "--timestamp", "0", ctr, "localhost/sqldom-test/empty:1")
    executor = PodmanExecutor(storage_root=podman_store, pull="never")
    with pytest.raises(ExecutorError, match="podman could not start"):
        executor.run(CommandJob(step="s", command="true", image="localhost/sqldom-test/empty:1"))
    assert containers(podman_store) == []


def test_a_non_root_image_user_owns_the_workdir(podman_store: Path) -> None:
    ctr = buildah(podman_store, "from", "--quiet", "--pull=never", BUSYBOX_TAG)
    buildah(podman_store, "config", "--user", "1000:1000", ctr)
    buildah(podman_store, "commit", "--quiet", "--rm", "--timestamp", "0", ctr, "localhost/sqldom-test/user:1")
    result = PodmanExecutor(storage_root=podman_store, pull="never").run(
        CommandJob(step="s", command="id -u; cp {input} {output}", inputs={"a.txt": b"x"}, input="a.txt",
                   outputs=("sub/b.txt",), image="localhost/sqldom-test/user:1"))
    assert result.ok, result
    assert result.stdout == "1000\n"
    assert result.outputs == {"sub/b.txt": b"x"}


def test_no_network_unless_the_job_asks_for_it(podman_store: Path) -> None:
    executor = PodmanExecutor(storage_root=podman_store, pull="never")
    result = executor.run(CommandJob(step="s", command="ls /sys/class/net", image=BUSYBOX_TAG))
    assert result.stdout.split() == ["lo"]


def test_timeout_kills_the_container_and_nothing_is_left_behind(podman_store: Path, tmp_path: Path) -> None:
    executor = PodmanExecutor(storage_root=podman_store, pull="never", scratch_root=tmp_path)
    result = executor.run(CommandJob(step="slow", command="sleep 300 & sleep 300", image=BUSYBOX_TAG, timeout=1))
    assert result.timed_out
    assert containers(podman_store) == []
    assert list(tmp_path.iterdir()) == []
