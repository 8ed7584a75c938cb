"""Touching a file (new mtime, same bytes) executes nothing; an edit is never missed, even when the
file keeps its size and its old mtime is put back (``cp -p``, ``touch -r``; SPEC section 8)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.project import Project, clone, hash_bytes, tables, write_build_py

BUILD_PY = '''\
import sqldom


@sqldom.writer("**/*.md", output="{dir}{stem}.html")
def write_html(doc, site):
    return "<h1>" + doc.facts["title"] + "</h1>\\n"
'''
FILES = {"a.txt": "Alpha\nbody\n", "b.md": "# Beta\n", "c.html": "<p>c</p>\n"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Project:
    p = Project(tmp_path_factory.mktemp("touch") / "proj")
    for rel, text in FILES.items():
        p.write(rel, text)
    write_build_py(p, BUILD_PY)
    p.write_root("sqldom.yaml", "build_py: build.py\n")
    res = p.build()
    assert res.code == 0, (res.stderr, res.problems)
    assert res.executed == set(FILES)
    return p


@pytest.fixture
def proj(baseline: Project, tmp_path: Path) -> Project:
    return clone(baseline, tmp_path / "proj")


def touch(path: Path, offset_s: float = 5.0) -> None:
    t = time.time_ns() + int(offset_s * 1e9)
    os.utime(path, ns=(t, t))


def test_touching_a_source_executes_nothing(proj: Project) -> None:
    before = proj.outputs()
    touch(proj.root / "content" / "a.txt")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert (res.summary["built"], res.summary["restored"]) == (0, 0)
    assert proj.outputs() == before


def test_touching_everything_including_build_py_and_sqldom_yaml_executes_nothing(proj: Project) -> None:
    before = proj.outputs()
    for rel in FILES:
        touch(proj.root / "content" / rel)
    touch(proj.root / "build.py")
    touch(proj.root / "sqldom.yaml")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert proj.outputs() == before


def test_rewriting_identical_bytes_executes_nothing(proj: Project) -> None:
    for rel, text in FILES.items():
        path = proj.root / "content" / rel
        path.unlink()
        path.write_text(text)           # a new inode, a new mtime, the same bytes
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(proj: Project) -> None:
    path = proj.root / "content" / "a.txt"
    st = os.stat(path)
    path.write_text("ALPHA\nBODY\n")                        # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))    # old mtime put back
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.txt": "built"}
    assert proj.text("a.txt") == "ALPHA\nBODY\n"
    assert tables(proj).sources()["a.txt"] == hash_bytes("ALPHA\nBODY\n")


def test_an_immediate_same_size_edit_after_a_build_is_seen(proj: Project) -> None:
    """The racily-clean case: an edit landing right after the scan that recorded the file."""
    proj.write("a.txt", "Alpha\nbodY\n")
    assert proj.build().steps == {"a.txt": "built"}
    proj.write("a.txt", "Alpha\nBody\n")
    res = proj.build()
    assert res.steps == {"a.txt": "built"}
    assert proj.text("a.txt") == "Alpha\nBody\n"
