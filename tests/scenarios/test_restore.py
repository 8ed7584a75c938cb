"""Results are reusable by content: reverting an edit restores the earlier outputs from the database
without executing the steps again (status "restored"); ``--full`` re-executes every step (SPEC 3, 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.project import Project, clone, tables, write_build_py

BUILD_PY = '''\
import sqldom


@sqldom.writer("**/*.md", output="{dir}{stem}.html")
def write_html(doc, site):
    return "<p>" + doc.facts["title"] + "</p>\\n"
'''

A_TXT = "Alpha\nversion one\n"
FILES = {
    "a.txt": A_TXT,
    "b.html": '<html><head><title>B</title></head><body><a href="a.txt"></a></body></html>\n',
    "c.md": "# Gamma\n",
    "d.css": "p { margin: 0 }\n",
}
ALL_STEPS = {"a.txt", "b.html", "c.md", "d.css"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Project:
    p = Project(tmp_path_factory.mktemp("restore") / "proj")
    for rel, text in FILES.items():
        p.write(rel, text)
    write_build_py(p, BUILD_PY)
    res = p.build()
    assert res.code == 0, (res.stderr, res.problems)
    assert res.executed == ALL_STEPS
    return p


@pytest.fixture
def proj(baseline: Project, tmp_path: Path) -> Project:
    return clone(baseline, tmp_path / "proj")


def test_reverting_a_source_edit_restores_without_executing(proj: Project) -> None:
    original = proj.outputs()
    proj.write("a.txt", "Alpha\nversion two\n")
    res = proj.build()
    assert res.steps == {"a.txt": "built"}
    assert proj.text("a.txt") == "Alpha\nversion two\n"

    proj.write("a.txt", A_TXT)
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.txt": "restored"}
    assert res.executed == set()
    assert res.restored == {"a.txt"}
    assert (res.summary["built"], res.summary["restored"]) == (0, 1)
    assert proj.outputs() == original
    last = tables(proj).last_execution("a.txt")
    assert last is not None and last[0] == "restored"      # the executions table keeps the history


def test_reverting_a_title_edit_restores_the_target_and_the_pages_showing_it(proj: Project) -> None:
    original = proj.outputs()
    proj.write("a.txt", "Aleph\nversion one\n")
    res = proj.build()
    assert res.steps == {"a.txt": "built", "b.html": "built"}
    assert '<a href="a.txt">Aleph</a>' in (proj.text("b.html") or "")

    proj.write("a.txt", A_TXT)
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.txt": "restored", "b.html": "restored"}
    assert proj.outputs() == original
    assert tables(proj).facts("a.txt")["title"] == "Alpha"


def test_reverting_a_code_edit_restores_the_outputs_of_that_code(proj: Project) -> None:
    original = proj.outputs()
    write_build_py(proj, BUILD_PY.replace('"<p>"', '"<p class=x>"'))
    res = proj.build()
    assert res.steps == {"c.md": "built"}
    assert proj.text("c.html") == "<p class=x>Gamma</p>\n"

    write_build_py(proj, BUILD_PY)
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"c.md": "restored"}
    assert proj.outputs() == original


def test_deleting_a_file_and_bringing_it_back_restores_it(proj: Project) -> None:
    """Like switching a git branch and back."""
    original = proj.outputs()
    proj.delete("c.md")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert res.deleted == {"c.html"}

    proj.write("c.md", FILES["c.md"])
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"c.md": "restored"}
    assert proj.outputs() == original


def test_full_executes_every_step_and_changes_no_output(proj: Project) -> None:
    original = proj.outputs()
    res = proj.build("--full")
    assert res.code == 0
    assert res.steps == {s: "built" for s in ALL_STEPS}
    assert res.summary["built"] == len(ALL_STEPS) and res.summary["restored"] == 0
    assert proj.outputs() == original

    res = proj.build()
    assert res.code == 0
    assert res.steps == {}


def test_full_after_an_edit_and_revert_still_executes(proj: Project) -> None:
    proj.write("a.txt", "Alpha\nversion two\n")
    assert proj.build().steps == {"a.txt": "built"}
    proj.write("a.txt", A_TXT)
    res = proj.build("--full")
    assert res.code == 0
    assert res.steps == {s: "built" for s in ALL_STEPS}
    assert proj.text("a.txt") == A_TXT
