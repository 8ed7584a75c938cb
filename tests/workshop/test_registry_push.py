"""Pushing the example workshop to a real registry: Debian's ``docker-registry`` on 127.0.0.1, started here.

The digest sqldom records is the one a learner pulls: the registry's
``Docker-Content-Digest`` for each tag equals ``steps.image_digest``, and the
digest recorded before any push already was that value.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.executors.conftest import skip_or_fail
from tests.workshop.conftest import Workshop, remove_images
from tests.workshop.test_podman_workshop import STEPS, digests, ok

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """``host:port`` of a fresh plain-HTTP registry on 127.0.0.1."""
    binary = shutil.which("docker-registry")
    if binary is None:
        skip_or_fail("registry", "docker-registry is missing (Debian: apt-get install docker-registry)")
        return
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog: {{level: error}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'registry-data'}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\n")
    log = tmp_path / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start on {address}: {log.read_text()}")
            time.sleep(0.1)
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        remove_images(address)


def registry_digest(address: str, repository: str, tag: str) -> str:
    req = urllib.request.Request(f"http://{address}/v2/{repository}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.headers["Docker-Content-Digest"])


def tags_of(address: str, repository: str) -> set[str]:
    import json
    with urllib.request.urlopen(f"http://{address}/v2/{repository}/tags/list", timeout=10) as resp:
        return set(json.load(resp)["tags"])


def in_registry(workshop: Workshop, address: str) -> Workshop:
    """Point the copy of the example at the registry (plain HTTP, so ``insecure: true``)."""
    image = f"{address}/workshops/shell"
    workshop.edit_yaml(f"  image: {workshop.image}", f"  image: {image}\n  insecure: true")
    workshop.image = image
    return workshop


def test_build_push_sends_both_tags_and_records_the_registrys_digest(workshop: Workshop, registry: str) -> None:
    ws = in_registry(workshop, registry)
    # built locally first: the digest recorded is already the one a push will give
    ok(ws.project.build())
    local = digests(ws)
    assert all(ws.row(s)["image_pushed"] is None for s in STEPS)
    r = ok(ws.project.build("--push"))
    assert not set(r.steps) & set(STEPS)          # pushing rebuilds nothing
    pushed = ws.project.query("select step, outcome from executions where outcome = 'pushed'")
    assert {s for s, _ in pushed} == set(STEPS)
    tags = tags_of(registry, "workshops/shell")
    for step in STEPS:
        digest = local[step]
        short = f"{step}-{digest.removeprefix('sha256:')[:12]}"
        assert {step, short} <= tags
        assert registry_digest(registry, "workshops/shell", step) == digest
        assert registry_digest(registry, "workshops/shell", short) == digest
        assert ws.row(step)["image_pushed"] == digest
    # pushed already: the next --push pushes nothing
    assert ok(ws.project.build("--push")).steps == {}
    assert len(ws.project.query("select 1 from executions where outcome = 'pushed'")) == len(STEPS)


def test_push_true_in_sqldom_yaml_pushes_each_rebuilt_step(workshop: Workshop, registry: str) -> None:
    ws = in_registry(workshop, registry)
    ws.edit_yaml("  insecure: true", "  insecure: true\n  push: true")
    ok(ws.project.build())
    assert all(ws.row(s)["image_pushed"] == ws.row(s)["image_digest"] for s in STEPS)
    ws.project.write("code/data/rivers.csv", "river,length_km\nDanube,2850\n")
    r = ok(ws.project.build())
    assert {s for s in r.steps if s in STEPS} == {"step-2-data", "step-3-secret"}
    for step in ("step-2-data", "step-3-secret"):
        assert registry_digest(registry, "workshops/shell", step) == ws.row(step)["image_digest"]


def test_a_plain_http_registry_without_insecure_fails_with_a_hint(workshop: Workshop, registry: str) -> None:
    ws = in_registry(workshop, registry)
    ws.edit_yaml("  insecure: true", "  insecure: false")
    r = ws.project.build("--push")
    assert r.code == 1
    [problem] = [p for p in r.problems if p["step"] == "step-1-setup"]
    assert "cannot push" in problem["message"] and "insecure: true" in problem["message"]
    assert r.steps.get("step-1-setup") == "failed" and "step-2-data" not in r.steps
