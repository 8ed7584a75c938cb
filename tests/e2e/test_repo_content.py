"""The README's first command builds the repository's own user guide: it must build cleanly."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.project import Project

REPO = Path(__file__).resolve().parents[2]


def test_the_user_guide_builds_with_no_problems(tmp_path: Path) -> None:
    project = Project(tmp_path / "guide")
    shutil.rmtree(project.root / "content")
    shutil.copytree(REPO / "content", project.root / "content")
    r = project.build()
    assert r.code == 0, r.problems or r.stderr
    assert r.problems == []
    assert project.text("index.html") is not None and "<title>sqldom user guide</title>" in project.text("index.html")
    assert project.build().steps == {}
