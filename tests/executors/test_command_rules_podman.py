"""Command rules through the CLI with ``executor: podman``: real containers, podman's default store.

The image is the busybox base built FROM scratch (no registry). Skipped with the
reason where podman is not usable, unless CI requires it (SQLDOM_REQUIRE_EXECUTORS).
"""

from __future__ import annotations

import shutil

import pytest

from tests.executors.conftest import skip_or_fail
from tests.support.project import Project

RULES = '''
executor: podman
rules:
  - match: "**/*.txt"
    run: "tr a-z A-Z < {input} > {output}; echo in-container $(cat /etc/hostname >/dev/null && echo yes)"
    output: "{dir}{stem}.up"
    image: "localhost/sqldom-test/busybox:1"
'''


@pytest.fixture(scope="module")
def busybox_image() -> str:
    from sqldom.executors.podman import BUSYBOX_TAG, PodmanExecutor, build_busybox_image
    problem = PodmanExecutor().check()
    if problem is not None:
        skip_or_fail("podman", problem)
    if shutil.which("busybox") is None:
        skip_or_fail("podman", "busybox is missing (Debian: apt-get install busybox-static)")
    build_busybox_image(BUSYBOX_TAG)
    return BUSYBOX_TAG


def test_a_command_rule_runs_in_podman_incrementally(project: Project, busybox_image: str) -> None:
    project.write_root("sqldom.yaml", RULES)
    project.write("a.txt", "alpha\n")
    project.write("sub/b.txt", "beta\n")
    project.write("index.md", "# Index\n")
    r = project.build("-v")
    assert r.code == 0, r.stderr
    assert r.steps == {"a.txt": "built", "sub/b.txt": "built", "index.md": "built"}
    assert project.text("a.up") == "ALPHA\n" and project.text("sub/b.up") == "BETA\n"

    assert project.build().steps == {}
    project.write("a.txt", "gamma\n")
    r = project.build()
    assert r.steps == {"a.txt": "built"}
    assert project.text("a.up") == "GAMMA\n"


def test_a_failing_command_in_podman_reports_its_output(project: Project, busybox_image: str) -> None:
    project.write_root("sqldom.yaml", RULES.replace("tr a-z A-Z <", "echo broken >&2; exit 7; tr <"))
    project.write("a.txt", "alpha\n")
    r = project.build()
    assert r.code == 1
    msg = r.problems[0]["message"]
    assert "exited with code 7" in msg and "broken" in msg


def test_a_rebuilt_image_under_the_same_tag_reruns_its_steps(project: Project, busybox_image: str) -> None:
    import subprocess
    tag = "localhost/sqldom-test/retag:1"
    subprocess.run(["podman", "tag", busybox_image, tag], check=True, capture_output=True)
    try:
        project.write_root("sqldom.yaml", RULES.replace(busybox_image, tag))
        project.write("a.txt", "alpha\n")
        assert project.build().steps == {"a.txt": "built"}
        assert project.build().steps == {}
        # the same tag now names another image (one more layer): the step reads the image, so it reruns
        subprocess.run(["buildah", "from", "--name", "sqldom-retag", "--pull-never", busybox_image], check=True,
                       capture_output=True)
        subprocess.run(["buildah", "config", "--label", "rebuilt=yes", "sqldom-retag"], check=True,
                       capture_output=True)
        subprocess.run(["buildah", "commit", "--rm", "sqldom-retag", tag], check=True, capture_output=True)
        r = project.build()
        assert r.steps == {"a.txt": "built"}
        assert "image" in project.query("select reason from executions where step = 'a.txt' order by id desc")[0][0]
    finally:
        subprocess.run(["podman", "rmi", "--force", tag], capture_output=True)
