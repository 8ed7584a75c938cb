"""build/ is only a mirror of the ``build`` table: deleting it restores it without executing a step; a
tampered or stray file under build/ is noticed, put back in line and reported (SPEC section 1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.project import Project, clone, tables

FILES: dict[str, str | bytes] = {
    "a.txt": "Alpha\nbody\n",
    "b.md": "# Beta\n\nSee [](a.txt).\n",
    "sub/c.html": "<html><head><title>C</title></head><body>c</body></html>\n",
    "img/logo.bin": bytes(range(256)) * 4,
}
OUTPUTS = {"a.txt", "b.html", "sub/c.html", "img/logo.bin"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Project:
    p = Project(tmp_path_factory.mktemp("mirror") / "proj")
    for rel, data in FILES.items():
        p.write(rel, data)
    res = p.build()
    assert res.code == 0, (res.stderr, res.problems)
    assert set(p.outputs()) == OUTPUTS
    return p


@pytest.fixture
def proj(baseline: Project, tmp_path: Path) -> Project:
    return clone(baseline, tmp_path / "proj")


def test_deleted_build_dir_is_restored_from_the_database_with_no_step_executed(proj: Project) -> None:
    original = proj.outputs()
    shutil.rmtree(proj.root / "build")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert res.executed == set()
    assert (res.summary["built"], res.summary["restored"], res.summary["failed"]) == (0, 0, 0)
    assert proj.outputs() == original
    assert res.repaired == {p: "missing" for p in OUTPUTS}

    again = proj.build()
    assert again.steps == {} and again.repaired == {}


def test_one_missing_output_is_put_back(proj: Project) -> None:
    original = proj.outputs()
    (proj.root / "build" / "sub" / "c.html").unlink()
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert res.repaired == {"sub/c.html": "missing"}
    assert proj.outputs() == original


def test_tampered_output_is_rewritten_and_reported_as_modified(proj: Project) -> None:
    original = proj.outputs()
    (proj.root / "build" / "b.html").write_text("defaced")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert res.repaired == {"b.html": "modified"}
    assert proj.outputs() == original
    assert tables(proj).build()["b.html"][1] == "b.md"

    again = proj.build()
    assert again.steps == {} and again.repaired == {}


def test_tampering_that_keeps_size_and_mtime_is_still_noticed(proj: Project) -> None:
    original = proj.outputs()
    out = proj.root / "build" / "a.txt"
    st = os.stat(out)
    data = out.read_bytes()
    out.write_bytes(data.upper())                           # same size
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))      # same mtime
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert res.repaired == {"a.txt": "modified"}
    assert proj.outputs() == original


def test_stray_files_are_removed_and_reported(proj: Project) -> None:
    original = proj.outputs()
    (proj.root / "build" / "stray.txt").write_text("not an output")
    (proj.root / "build" / "sub" / "extra.html").write_text("<p>nor this</p>")
    (proj.root / "build" / "newdir").mkdir()
    (proj.root / "build" / "newdir" / "x.css").write_text("x")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert res.repaired == {"stray.txt": "stray", "sub/extra.html": "stray", "newdir/x.css": "stray"}
    assert proj.outputs() == original

    again = proj.build()
    assert again.repaired == {}


def test_the_database_holds_every_output_byte_for_byte(proj: Project) -> None:
    t = tables(proj)
    assert set(t.build()) == OUTPUTS
    for path, data in proj.outputs().items():
        assert t.output_bytes(path) == data
