"""The command line as a user meets it: exit codes, -C, configuration errors, init/clean, --version,
the JSON event stream and the short human output (SPEC sections 2, 3, 8)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import sqldom
from tests.support.project import Project, cli_in, write_build_py

SUMMARY_KEYS = {"built", "restored", "unchanged", "deleted", "failed", "errors", "seconds"}


def json_lines(stdout: str) -> list[dict[str, object]]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    events = []
    for line in lines:
        ev = json.loads(line)            # every line is one JSON object
        assert isinstance(ev, dict) and "event" in ev, line
        events.append(ev)
    return events


# ---- exit codes --------------------------------------------------------------------------------------

def test_exit_0_on_success(project: Project) -> None:
    project.write("a.txt", "A\n")
    project.write("b.txt", "B\n")
    proc = project.cli("build", "-j", "2", "-C", str(project.root))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert project.outputs() == {"a.txt": b"A\n", "b.txt": b"B\n"}


def test_exit_1_when_an_error_problem_is_outstanding_and_the_problem_is_printed(project: Project) -> None:
    project.write("b.html", "<p>\n<a href=\"nowhere.txt\">x</a>\n</p>\n")
    proc = project.cli("build", "-C", str(project.root))
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert re.search(r"b\.html:2\b.*nowhere\.txt", out), out
    assert "Traceback" not in out


def test_missing_root_directory_is_exit_2_with_a_message(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    for args in (("build", "-C", str(missing)), ("build", "--root", str(missing)), ("-C", str(missing), "build")):
        proc = cli_in(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert str(missing) in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not missing.exists()


def test_unknown_flag_is_exit_2(project: Project) -> None:
    proc = project.cli("build", "--no-such-flag")
    assert proc.returncode == 2
    assert "--no-such-flag" in proc.stderr
    assert not (project.root / "build").exists()


def test_minus_c_builds_another_directory(project: Project, tmp_path: Path) -> None:
    project.write("a.txt", "A\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = cli_in(elsewhere, "build", "-C", str(project.root))
    assert proc.returncode == 0, proc.stderr
    assert project.output("a.txt") == b"A\n"
    assert list(elsewhere.iterdir()) == []


# ---- configuration errors: exit 2, the file and line named, no traceback, nothing built ----------------

def assert_config_error(project: Project, proc_stderr: str, code: int, where: str) -> None:
    assert code == 2, proc_stderr
    assert where in proc_stderr, proc_stderr
    assert "Traceback" not in proc_stderr
    assert project.outputs() == {}, "nothing is built"


def test_build_py_syntax_error_is_exit_2_naming_file_and_line(project: Project) -> None:
    project.write("a.txt", "A\n")
    write_build_py(project, "import sqldom\n\n\ndef broken(:\n    pass\n")
    res = project.build()
    assert_config_error(project, res.stderr, res.code, "build.py:4")
    assert [e for e in res.events if e["event"] == "step"] == []


def test_build_py_failing_at_import_is_exit_2_naming_file_and_line(project: Project) -> None:
    project.write("a.txt", "A\n")
    write_build_py(project, "import sqldom\n\nX = 1\nY = undefined_name + X\n")
    proc = project.cli("build", "-C", str(project.root))
    assert_config_error(project, proc.stderr, proc.returncode, "build.py:4")
    assert "undefined_name" in proc.stderr


def test_invalid_sqldom_yaml_is_exit_2_naming_file_and_line(project: Project) -> None:
    project.write("a.txt", "A\n")
    project.write_root("sqldom.yaml", "build_py: build.py\nexecutor: auto\n  nested: nope\n")
    proc = project.cli("build", "-C", str(project.root))
    assert_config_error(project, proc.stderr, proc.returncode, "sqldom.yaml:3")


def test_unknown_key_in_sqldom_yaml_gets_a_suggestion(project: Project) -> None:
    project.write("a.txt", "A\n")
    project.write_root("sqldom.yaml", "# settings\nexecuter: auto\n")
    proc = project.cli("build", "-C", str(project.root))
    assert_config_error(project, proc.stderr, proc.returncode, "sqldom.yaml:2")
    assert "executer" in proc.stderr
    assert "did you mean" in proc.stderr and "executor" in proc.stderr


def test_a_configuration_error_leaves_the_last_build_alone_and_fixing_it_builds_again(project: Project) -> None:
    project.write("a.txt", "A\n")
    good = "import sqldom\n\n\n@sqldom.writer('**/*.txt')\ndef shout(doc, site):\n    return doc.text.upper()\n"
    write_build_py(project, good)
    assert project.build().steps == {"a.txt": "built"}
    before = project.outputs()
    runs = project.query("select count(*) from runs")

    write_build_py(project, good + "\ndef broken(:\n")
    project.write("a.txt", "changed while broken\n")
    res = project.build()
    assert res.code == 2
    assert "build.py:8" in res.stderr
    assert res.steps == {}
    assert project.outputs() == before, "nothing is built"
    assert project.query("select count(*) from runs") == runs

    write_build_py(project, good)
    res = project.build()
    assert res.code == 0
    assert res.steps == {"a.txt": "built"}
    assert project.outputs() == {"a.txt": b"CHANGED WHILE BROKEN\n"}


# ---- init, clean, version --------------------------------------------------------------------------------

def test_init_then_build_works(tmp_path: Path) -> None:
    root = tmp_path / "new"
    root.mkdir()
    proc = cli_in(root, "init")
    assert proc.returncode == 0, proc.stderr
    assert (root / "sqldom.yaml").is_file() and (root / "build.py").is_file()
    assert any(p.is_file() for p in (root / "content").rglob("*"))

    project = Project(root)
    res = project.build()
    assert res.code == 0, (res.stderr, res.problems)
    assert res.problems == []
    assert res.executed and res.executed == set(res.steps)
    assert project.outputs(), "the sample project produces outputs"
    assert any(p.endswith(".html") for p in project.outputs())

    # init does not overwrite what exists
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "var" not in p.parts}
    assert cli_in(root, "init").returncode == 0
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "var" not in p.parts} == before


def test_clean_removes_build_and_var_and_keeps_content(project: Project) -> None:
    project.write("a.txt", "A\n")
    write_build_py(project, "import sqldom\n")
    assert project.build().code == 0
    assert (project.root / "build").is_dir() and (project.root / "var").is_dir()

    proc = project.cli("clean", "-C", str(project.root))
    assert proc.returncode == 0, proc.stderr
    assert not (project.root / "build").exists()
    assert not (project.root / "var").exists()
    assert (project.root / "content" / "a.txt").read_text() == "A\n"
    assert (project.root / "build.py").is_file()


def test_version(tmp_path: Path) -> None:
    proc = cli_in(tmp_path, "--version")
    assert proc.returncode == 0
    assert sqldom.__version__ in proc.stdout


# ---- output: JSON events and the human summary ----------------------------------------------------------

def test_json_events_have_the_documented_shape(project: Project) -> None:
    project.write("a.txt", "Alpha\n")
    project.write("b.html", '<p>\n<a href="a.txt"></a>\n</p>\n')
    first = project.cli("build", "--json", "-C", str(project.root))
    assert first.returncode == 0
    events = json_lines(first.stdout)
    assert events[-1]["event"] == "summary"
    steps = [e for e in events if e["event"] == "step"]
    assert {e["id"] for e in steps} == {"a.txt", "b.html"}
    for e in steps:
        assert {"id", "kind", "status", "reason", "outputs"} <= set(e), e
        assert e["kind"] == "document" and e["status"] == "built" and isinstance(e["reason"], str)
    assert {e["id"]: e["outputs"] for e in steps} == {"a.txt": ["a.txt"], "b.html": ["b.html"]}

    project.delete("a.txt")
    second = project.cli("build", "--json", "-C", str(project.root))
    assert second.returncode == 1
    events = json_lines(second.stdout)
    summary = events[-1]
    assert summary["event"] == "summary"
    assert SUMMARY_KEYS <= set(summary), summary
    assert all(isinstance(summary[k], int) for k in SUMMARY_KEYS - {"seconds"})
    assert isinstance(summary["seconds"], int | float)
    assert (summary["built"], summary["deleted"], summary["errors"]) == (1, 1, 1)
    assert sum(1 for e in events if e["event"] == "summary") == 1

    deleted = [e for e in events if e["event"] == "deleted"]
    assert deleted == [{"event": "deleted", "path": "a.txt", "step": "a.txt"}]
    problems = [e for e in events if e["event"] == "problem"]
    assert len(problems) == 1
    assert {"severity", "step", "path", "line", "message"} <= set(problems[0])
    assert (problems[0]["severity"], problems[0]["path"], problems[0]["line"]) == ("error", "b.html", 2)


def test_human_output_is_a_one_line_summary(project: Project) -> None:
    project.write("a.txt", "Alpha\n")
    project.write("b.md", "# Beta\n")
    proc = project.cli("build", "-C", str(project.root))
    assert proc.returncode == 0
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    assert "2 built" in lines[0]
    assert not proc.stdout.lstrip().startswith("{")
    assert proc.stderr == ""

    # -v: one line per executed step, then the summary
    project.write("a.txt", "Alpha, again\n")
    project.write("b.md", "# Beta, again\n")
    proc = project.cli("build", "-v", "-C", str(project.root))
    assert proc.returncode == 0
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 3, proc.stdout
    assert any("a.txt" in line for line in lines[:2]) and any("b.md" in line for line in lines[:2])
    assert "2 built" in lines[-1]
