"""Executors under test, each with an image it can run offline.

``local`` always runs. ``podman`` runs when buildah/podman are installed, in a
private store under pytest's temp folder with a busybox image built FROM
scratch (no registry is ever contacted: the executor is created with
``pull="never"``). ``dagger`` runs only when a Dagger engine is reachable; its
image comes from ``SQLDOM_DAGGER_TEST_IMAGE`` (default busybox from Docker Hub,
pulled by that engine).

An executor that is not usable is skipped with the reason, unless it is named
in ``SQLDOM_REQUIRE_EXECUTORS`` (CI sets ``local,podman``): then it fails, so
that a missing package cannot turn the podman suite into silent skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sqldom.executors.base import Executor

EXECUTORS = ("local", "podman", "dagger")
DAGGER_IMAGE = os.environ.get("SQLDOM_DAGGER_TEST_IMAGE", "docker.io/library/busybox:1.36")


def required() -> set[str]:
    return {n.strip() for n in os.environ.get("SQLDOM_REQUIRE_EXECUTORS", "").split(",") if n.strip()}


def skip_or_fail(name: str, reason: str) -> None:
    if name in required():
        pytest.fail(f"executor {name} is required here (SQLDOM_REQUIRE_EXECUTORS) but: {reason}")
    pytest.skip(f"executor {name} is not usable here: {reason}")


@dataclass
class Target:
    """An executor and the image its jobs run in (None for local)."""

    name: str
    executor: Executor
    image: str | None


@pytest.fixture(scope="session")
def podman_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private podman/buildah store holding the busybox base image."""
    from sqldom.executors.podman import BUSYBOX_TAG, PodmanExecutor, Storage, build_busybox_image
    problem = PodmanExecutor().check()
    if problem is not None:
        skip_or_fail("podman", problem)
    if shutil.which("busybox") is None:
        skip_or_fail("podman", "busybox is missing (Debian: apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("podman-store")
    build_busybox_image(BUSYBOX_TAG, storage_root=root)
    yield root
    storage = Storage(root)
    subprocess.run([*storage.podman(), "rm", "--all", "--force", "--time", "0"], capture_output=True)
    subprocess.run([*storage.buildah(), "rm", "--all"], capture_output=True)
    subprocess.run([*storage.buildah(), "rmi", "--all", "--force"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def make_target(name: str, request: pytest.FixtureRequest) -> Target:
    from sqldom import executors
    if name == "local":
        return Target(name, executors.get("local"), None)
    if name == "podman":
        from sqldom.executors.podman import BUSYBOX_TAG
        root = request.getfixturevalue("podman_store")
        return Target(name, executors.get("podman", storage_root=root, pull="never"), BUSYBOX_TAG)
    executor = executors.get("dagger")
    problem = executor.check()
    if problem is not None:
        skip_or_fail("dagger", problem)
    return Target(name, executor, DAGGER_IMAGE)


@pytest.fixture(params=EXECUTORS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    t = make_target(request.param, request)
    yield t
    t.executor.close()
