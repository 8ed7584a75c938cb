"""The repo's example workshop (examples/workshop), copied per test under unique image names.

Each test gets its own repository (``localhost/sqldom-test-<random>/…``) in
podman's default store, a base image built by the example's own ``base.sh``
(busybox FROM scratch: no registry, no network), and every image of that
repository removed afterwards. Podman being unusable skips these tests with
the reason, or fails them when CI requires podman (SQLDOM_REQUIRE_EXECUTORS).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.executors.conftest import skip_or_fail
from tests.support.project import Project

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workshop"
EXAMPLE_IMAGE = "localhost/sqldom-example/shell-workshop"
EXAMPLE_BASE = "localhost/sqldom-example/busybox:1"
TOKEN = "tok-3f9a1c77e2d54b08"


@dataclass
class Workshop:
    project: Project
    image: str            # the repository of the step images
    base: str

    def tag(self, step: str) -> str:
        return f"{self.image}:{step}"

    def row(self, step: str) -> dict[str, object]:
        con = self.project.db()
        con.row_factory = __import__("sqlite3").Row
        try:
            r = con.execute("select * from steps where id = ?", (step,)).fetchone()
        finally:
            con.close()
        assert r is not None, f"no steps row for {step}"
        return dict(r)

    def image_id(self, ref: str) -> str | None:
        p = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True)
        return f"sha256:{p.stdout.strip()}" if p.returncode == 0 else None

    def yaml(self) -> str:
        return (self.project.root / "sqldom.yaml").read_text()

    def edit_yaml(self, old: str, new: str) -> None:
        text = self.yaml()
        assert old in text, old
        (self.project.root / "sqldom.yaml").write_text(text.replace(old, new))


def remove_images(prefix: str) -> None:
    out = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                         text=True).stdout.split()
    refs = [r for r in out if r.startswith(prefix)]
    if refs:
        subprocess.run(["podman", "rmi", "--force", *refs], capture_output=True)


@pytest.fixture(scope="session")
def podman_usable() -> None:
    from sqldom.workshop.podman import PodmanChain
    problem = PodmanChain().check()
    if problem is not None:
        skip_or_fail("podman", problem)
    if shutil.which("busybox") is None:
        skip_or_fail("podman", "busybox is missing (Debian: apt-get install busybox-static)")


@pytest.fixture
def workshop(tmp_path: Path, podman_usable: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workshop]:
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build", "var"))
    prefix = f"localhost/sqldom-test-{uuid.uuid4().hex[:10]}"
    image, base = f"{prefix}/shell-workshop", f"{prefix}/busybox:1"
    text = (root / "sqldom.yaml").read_text().replace(EXAMPLE_IMAGE, image).replace(EXAMPLE_BASE, base)
    (root / "sqldom.yaml").write_text(text)
    subprocess.run(["sh", str(root / "base.sh"), base], check=True, capture_output=True)
    monkeypatch.setenv("WORKSHOP_API_TOKEN", TOKEN)
    try:
        yield Workshop(Project(root), image, base)
    finally:
        remove_images(prefix)
