"""The no-op probe (sqldom/probe.py): ``sqldom build`` with nothing to do is answered before the
engine is imported, says exactly what the full path says, and never hides a change.

Every change a user can make is built twice, by twin projects: through the probe, and with
``SQLDOM_NO_PROBE=1``; outputs, executed steps, repairs, problems and exit codes must agree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sqldom import probe
from tests.support.project import Project, write_build_py

HEAVY = ("sqldom.engine", "click", "yaml", "sqlalchemy", "markdown_it_pyrs")
# what a no-op did import until session 13, a fifth of its time: the build.py API, the exit-code module,
# a batch of rows to record, and the standard library modules they came with
NOT_FOR_A_NO_OP = {"dataclasses", "inspect", "tempfile", "pickle", "sqldom.api", "sqldom.exits", "sqldom.db.batch"}


def settle(project: Project, no_probe: bool = False) -> None:
    """Build until every source and output is past the racy window (a later no-op trusts every stat)."""
    for _ in range(2):
        time.sleep(0.06)
        assert run(project, no_probe)[0] in (0, 1)


def run(project: Project, no_probe: bool = False, *extra: str) -> tuple[int, list[dict[str, object]], str]:
    env = {**os.environ, "SQLDOM_NO_PROBE": "1"} if no_probe else {k: v for k, v in os.environ.items()
                                                                     if k != "SQLDOM_NO_PROBE"}
    proc = subprocess.run([sys.executable, *extra, "-m", "sqldom", "build", "--json", "-C", str(project.root)],
                          capture_output=True, text=True, timeout=120, env=env)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for e in events:
        e.pop("seconds", None)
    return proc.returncode, events, proc.stderr


def site(project: Project) -> None:
    project.write("a.md", "# Alpha\n\nSee [](b.md) and [gone](missing.md).\n")
    project.write("b.md", "---\ntitle: Beta\n---\nBody of b.\n")
    project.write("sub/c.md", "# Gamma\n\nBack to [](../a.md).\n")
    project.write("notes/n.txt", "plain text\n")


def imported(stderr: str) -> set[str]:
    """Module names from ``python -X importtime``."""
    return {m.group(1).strip() for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", stderr, re.M)}


def test_a_no_op_is_answered_without_the_engine_and_says_what_the_full_path_says(project: Project) -> None:
    site(project)
    settle(project)
    runs_before = project.query("select count(*) from runs")[0][0]
    code, events, stderr = run(project, False, "-X", "importtime")
    modules = imported(stderr)
    assert "sqldom.probe" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY or m == "sqldom.engine"}, sorted(modules)
    at_start = imported(subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True,
                                       text=True).stderr)   # (a .pth file of this machine's may import some)
    assert not (modules - at_start) & NOT_FOR_A_NO_OP, sorted((modules - at_start) & NOT_FOR_A_NO_OP)
    assert code == 1                                     # the broken link is an outstanding error
    problems = [e for e in events if e["event"] == "problem"]
    assert len(problems) == 1 and problems[0]["path"] == "a.md" and "missing.md" in str(problems[0]["message"])
    assert events[-1] == {"event": "summary", "built": 0, "restored": 0, "unchanged": 4, "deleted": 0,
                          "failed": 0, "errors": 1, "repaired": 0}
    assert (code, events) == run(project, True)[:2]
    rows = project.query("select command, finished_at is not null, unchanged, errors from runs order by id")
    assert len(rows) == runs_before + 2
    assert rows[-2] == ("build", 1, 4, 1)
    human = project.cli("build", "-C", str(project.root))
    assert human.stdout.startswith("0 built, 0 restored, 4 unchanged, 1 error in ")
    assert "a.md:3: error:" in human.stderr


def test_a_build_without_sqldom_yaml_and_with_flat_front_matter_never_imports_pyyaml(project: Project) -> None:
    """PyYAML (a fifth of a build's imports) is for sqldom.yaml and for front matter the fast reader cannot read."""
    site(project)
    code, events, stderr = run(project, False, "-X", "importtime")
    assert code == 1 and events[-1]["built"] == 4
    assert "yaml" not in imported(stderr)
    project.write("c.md", "---\ntitle: Nested\ntags: [a, b]\n---\nBody.\n")   # (a list: PyYAML reads it)
    code, events, stderr = run(project, False, "-X", "importtime")
    assert "yaml" in imported(stderr)
    assert project.query("select value from facts where path = 'c.md' and name = 'tags'") == [('["a","b"]',)]


def _edit_body(p: Project) -> None:
    p.write("sub/c.md", "# Gamma\n\nBack to [](../a.md), edited.\n")


def _edit_title(p: Project) -> None:
    p.write("b.md", "---\ntitle: Beta two\n---\nBody of b.\n")


def _add_in_new_folder(p: Project) -> None:
    p.write("new/deep/d.md", "# Delta\n\nSee [](../../b.md).\n")


def _delete_source(p: Project) -> None:
    p.delete("notes/n.txt")


def _tamper_output(p: Project) -> None:
    (p.root / "build" / "b.html").write_text("tampered")


def _delete_output(p: Project) -> None:
    (p.root / "build" / "sub" / "c.html").unlink()


def _stray_in_build(p: Project) -> None:
    (p.root / "build" / "stray.html").write_text("not an output")


def _symlink_for_output(p: Project) -> None:
    out = p.root / "build" / "b.html"
    out.unlink()
    out.symlink_to(p.root / "content" / "b.md")


def _edit_config(p: Project) -> None:
    p.write_root("sqldom.yaml", "rules:\n  - match: '**/*.txt'\n    run: 'tr a-z A-Z < {input} > {output}'\n"
                                "    output: '{dir}{stem}.up'\n")


def _add_build_py(p: Project) -> None:
    write_build_py(p, '''
import sqldom

@sqldom.writer("**/*.txt", output="{dir}{stem}.shout")
def shout(doc, site):
    return doc.text.upper()
''')


def _raising_build_py(p: Project) -> None:
    write_build_py(p, '''
import sqldom

@sqldom.writer("**/*.txt")
def boom(doc, site):
    raise ValueError("no")
''')


def _touch_only(p: Project) -> None:
    path = p.root / "content" / "a.md"
    path.write_bytes(path.read_bytes())   # same bytes, new stat


CHANGES: dict[str, Callable[[Project], None]] = {f.__name__[1:]: f for f in (
    _edit_body, _edit_title, _add_in_new_folder, _delete_source, _tamper_output, _delete_output, _stray_in_build,
    _symlink_for_output, _edit_config, _add_build_py, _raising_build_py, _touch_only)}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_after_a_change_the_build_equals_a_build_without_the_probe(tmp_path: Path, change: str) -> None:
    twins = [Project(tmp_path / "probe"), Project(tmp_path / "no-probe")]
    for p, no_probe in zip(twins, (False, True), strict=True):
        site(p)
        settle(p, no_probe)
        CHANGES[change](p)
    for _ in range(2):   # the change, then a no-op after it (a failed step must still be reported)
        got = [run(p, no_probe)[:2] for p, no_probe in zip(twins, (False, True), strict=True)]
        assert got[0] == got[1]
        assert twins[0].outputs() == twins[1].outputs()
        assert not any(p.is_symlink() for p in (twins[0].root / "build").rglob("*"))


def test_a_build_py_named_in_sqldom_yaml_and_created_later_is_seen(project: Project) -> None:
    site(project)
    project.write_root("sqldom.yaml", "build_py: code/site.py\n")
    settle(project)
    assert project.output("notes/n.txt") == b"plain text\n"
    (project.root / "code").mkdir()
    (project.root / "code" / "site.py").write_text(
        "import sqldom\n\n@sqldom.writer('**/*.txt')\ndef up(doc, site):\n    return doc.text.upper()\n")
    code, events, _ = run(project)
    assert code == 1
    assert {e["id"] for e in events if e["event"] == "step"} == {"notes/n.txt"}
    assert project.output("notes/n.txt") == b"PLAIN TEXT\n"


def test_the_engine_ignores_what_the_probe_saw_once_another_build_ran(project: Project) -> None:
    """The handoff names the paths that changed when the probe looked; a build in between makes it stale."""
    from sqldom.engine import BuildOptions, build
    from sqldom.events import ListSink
    site(project)
    project.write("x.txt", "x one\n")
    settle(project)
    project.write("notes/n.txt", "changed once\n")
    assert probe.try_build(project.root, ListSink) is None       # not a no-op: a handoff for the engine
    assert run(project)[0] == 1                                  # another process builds meanwhile
    project.write("x.txt", "x two\n")                           # ... and then x.txt changes
    sink = ListSink()
    build(BuildOptions(root=project.root), sink)
    assert project.output("x.txt") == b"x two\n"
    assert {e.id for e in sink.events if getattr(e, "event", "") == "step"} == {"x.txt"}


def test_a_project_the_probe_cannot_answer_for_is_built_by_the_engine(project: Project) -> None:
    """No database yet, a locked project: the probe steps aside (the full path reports or waits)."""
    from sqldom.events import ListSink
    from sqldom.fs import ProjectLock
    site(project)
    assert probe.try_build(project.root, ListSink) is None      # no database
    settle(project)
    with ProjectLock(project.root / "var"):
        assert probe.try_build(project.root, ListSink) is None  # another build holds the lock
    assert probe.try_build(project.root, ListSink) == 1         # answered (the broken link: exit 1)
    shutil.rmtree(project.root / "build")
    assert probe.try_build(project.root, ListSink) is None      # build/ gone: the engine restores it


@pytest.mark.parametrize(("argv", "expected"), [
    (["build"], ("", False, False, None)),
    (["build", "--json", "-C", "ROOT"], ("ROOT", True, False, None)),
    (["-C", "ROOT", "build", "-v", "-j", "2"], ("ROOT", False, True, 2)),
    (["--root=ROOT", "build", "--verbose", "--jobs=3", "-j4"], ("ROOT", False, True, 4)),
    (["build", "--full"], None),
    (["build", "--from-step", "x"], None),
    (["build", "--push"], None),
    (["build", "-j", "0"], None),
    (["build", "-j"], None),
    (["build", "--help"], None),
    (["status"], None),
    (["watch"], None),
    ([], None),
    (["build", "-C"], None),
])
def test_only_a_plain_build_goes_to_the_probe(argv: list[str], expected: tuple[str, bool, bool, int | None] | None,
                                              tmp_path: Path) -> None:
    args = probe.build_args([a.replace("ROOT", str(tmp_path)) for a in argv])
    if expected is None:
        assert args is None
        return
    assert args is not None
    root, as_json, verbose, jobs = expected
    assert (args.root, args.as_json, args.verbose, args.jobs) == (tmp_path if root else Path.cwd(), as_json,
                                                                  verbose, jobs)


def test_an_edit_handed_over_by_the_probe_reads_only_the_rows_it_touches(project: Project,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The narrow plan (engine.Build.narrow_plan): no table is loaded whole, the result is the full path's."""
    from sqldom.db.store import Store
    site(project)
    for i in range(30):
        project.write(f"many/m{i:02}.md", f"# M{i}\n\nSee [](../b.md).\n")
    settle(project)
    whole: list[str] = []
    for name in ("sources", "steps", "outputs"):
        real = getattr(Store, name)

        def spy(self: Store, _real: Callable[..., object] = real, _name: str = name) -> object:
            whole.append(_name)
            return _real(self)
        monkeypatch.setattr(Store, name, spy)
    project.write("b.md", "---\ntitle: Beta again\n---\nBody of b.\n")
    result = project.build_inproc()
    assert whole == []
    assert set(result.steps) == {"b.md", "a.md", *(f"many/m{i:02}.md" for i in range(30))}
    assert "Beta again" in (project.text("many/m07.html") or "")
    (project.root / "build" / "notes" / "n.txt").write_text("tampered")   # build/ differs: all is checked
    project.write("b.md", "---\ntitle: Beta once more\n---\nBody of b.\n")
    result = project.build_inproc()
    assert "outputs" in whole and result.repaired == {"notes/n.txt": "modified"}
    assert "Beta once more" in (project.text("a.html") or "")


def test_a_no_op_the_probe_cannot_record_goes_to_the_full_path(project: Project,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write (a full disk, say) records and prints nothing: the engine does it again and explains."""
    import sqlite3

    from sqldom.db.store import Store
    from sqldom.events import ListSink
    site(project)
    settle(project)
    runs = project.query("select count(*) from runs")

    def full(*_args: object, **_kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(Store, "record_quiet_run", full)
    sink = ListSink()
    assert probe.try_build(project.root, lambda: sink) is None
    assert sink.events == [] and project.query("select count(*) from runs") == runs


def test_an_unexpected_error_in_the_probe_is_reported_like_any_command_s(project: Project, capsys: pytest.CaptureFixture[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sqldom import entry
    site(project)

    def broken(_args: object) -> int | None:
        raise RuntimeError("probe bug")
    monkeypatch.setattr(probe, "run", broken)
    monkeypatch.setattr("sys.argv", ["sqldom", "build", "-C", str(project.root)])
    with pytest.raises(SystemExit) as ended:
        entry.main()
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: probe bug" in err and "Traceback" not in err
    assert list((project.root / "var").glob("crash-*.txt"))


def test_the_build_after_an_edit_is_narrow_too(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs the last build wrote are racily clean (their stat was taken too soon): the probe hashes those
    few instead of handing the whole project to the full path; a tampered one still sends it there."""
    from sqldom.db.store import Store
    site(project)
    settle(project)
    whole: list[str] = []
    real = Store.outputs

    def spy(self: Store) -> object:
        whole.append("outputs")
        return real(self)
    monkeypatch.setattr(Store, "outputs", spy)
    for n in range(3):
        time.sleep(0.06)   # (past the racy window of the edit itself)
        project.write("b.md", f"---\ntitle: Beta {n}\n---\nBody of b.\n")
        result = project.build_inproc()
        assert "b.md" in result.steps and f"Beta {n}" in (project.text("a.html") or "")
        assert whole == [], n   # the first edit after settling, and each one after an edit
    (project.root / "build" / "b.html").write_text("tampered, same stat size?")
    time.sleep(0.06)
    project.write("b.md", "---\ntitle: Beta 9\n---\nBody of b.\n")
    result = project.build_inproc()
    assert whole == ["outputs"] and "Beta 9" in (project.text("a.html") or "")
