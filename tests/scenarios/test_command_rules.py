"""Command rules (sqldom.yaml ``rules:``): one command step per matching source, fully incremental."""

from __future__ import annotations

from pathlib import Path

from tests.support.project import Project

UPPER = '''
rules:
  - match: "**/*.scss"
    run: "tr a-z A-Z < {input} > {output} && echo converted {input}"
    output: "{dir}{stem}.css"
'''


def setup(project: Project, rules: str = UPPER) -> None:
    project.write_root("sqldom.yaml", rules)
    project.write("css/a.scss", "a { color: red; }\n")
    project.write("css/b.scss", "b { color: blue; }\n")
    project.write("index.md", "# Home\n\nSee [the style](css/a.scss).\n")


def test_each_matching_source_runs_its_command_once_and_only_changed_ones_rerun(project: Project) -> None:
    setup(project)
    r = project.build()
    assert r.code == 0, r.stderr
    assert r.steps == {"css/a.scss": "built", "css/b.scss": "built", "index.md": "built"}
    assert project.text("css/a.css") == "A { COLOR: RED; }\n"
    assert project.query("select kind from steps where id = 'css/a.scss'") == [("command",)]
    assert project.query("select step from build where path = 'css/a.css'") == [("css/a.scss",)]

    assert project.build().steps == {}
    project.write("css/a.scss", "a { color: green; }\n")
    r = project.build()
    assert r.steps == {"css/a.scss": "built"}
    assert project.text("css/a.css") == "A { COLOR: GREEN; }\n"


def test_reverting_a_source_restores_the_output_without_running_the_command(project: Project) -> None:
    setup(project)
    project.build()
    project.write("css/a.scss", "a { color: green; }\n")
    project.build()
    project.write("css/a.scss", "a { color: red; }\n")
    r = project.build()
    assert r.steps == {"css/a.scss": "restored"}
    assert project.text("css/a.css") == "A { COLOR: RED; }\n"


def test_changing_the_rule_reruns_its_steps_only(project: Project) -> None:
    setup(project)
    project.build()
    project.write_root("sqldom.yaml", UPPER.replace("tr a-z A-Z", "tr a-z a-z"))
    r = project.build()
    assert r.steps == {"css/a.scss": "built", "css/b.scss": "built"}
    assert project.text("css/b.css") == "b { color: blue; }\n"


def test_a_failing_command_reports_exit_code_and_output_and_the_rest_builds(project: Project) -> None:
    setup(project, UPPER.replace("tr a-z A-Z <", "echo to-out; echo to-err >&2; exit 3; tr a-z A-Z <"))
    r = project.build()
    assert r.code == 1
    assert r.steps["css/a.scss"] == "failed" and r.steps["index.md"] == "built"
    messages = {p["step"]: p["message"] for p in r.problems}
    assert "exited with code 3" in messages["css/a.scss"]
    assert "to-out" in messages["css/a.scss"] and "to-err" in messages["css/a.scss"]
    assert project.output("css/a.css") is None
    # the failure stands (reported again) without running the command again
    again = project.build()
    assert again.code == 1 and again.steps == {}
    assert {p["step"] for p in again.problems} == {"css/a.scss", "css/b.scss"}


def test_verbose_streams_each_steps_output_prefixed_with_its_id(project: Project) -> None:
    setup(project)
    proc = project.cli("build", "-v", "-C", str(project.root))
    assert proc.returncode == 0, proc.stderr
    assert "[css/a.scss] converted css/a.scss" in proc.stdout
    assert "[css/b.scss] converted css/b.scss" in proc.stdout


def test_steps_run_in_parallel_with_j(project: Project, tmp_path: Path) -> None:
    log = tmp_path / "log"
    rules = f'''
rules:
  - match: "*.txt"
    run: "echo start $(date +%s.%N) >> {log}; sleep 1; echo end $(date +%s.%N) >> {log}; cp {{input}} {{output}}"
    output: "{{stem}}.out"
'''
    project.write_root("sqldom.yaml", rules)
    for i in range(2):
        project.write(f"t{i}.txt", f"{i}\n")
    r = project.build("-j", "2")
    assert r.code == 0, r.stderr
    events = [line.split() for line in log.read_text().splitlines()]
    starts = sorted(float(t) for w, t in events if w == "start")
    ends = sorted(float(t) for w, t in events if w == "end")
    assert len(starts) == 2 and starts[1] < ends[0], "with -j 2 the second command starts before the first ends"


def test_an_unavailable_executor_fails_the_command_steps_and_documents_still_build(project: Project) -> None:
    setup(project, UPPER + '    image: "localhost/none:1"\n    executor: dagger\n')
    r = project.build()
    assert r.code == 1
    assert r.steps["index.md"] == "built"
    msg = {p["step"]: p["message"] for p in r.problems}["css/a.scss"]
    assert "cannot run command step" in msg and "dagger" in msg.lower() and "install" in msg.lower()
    assert "Traceback" not in r.stderr


def test_a_rule_with_an_unknown_key_is_a_configuration_error(project: Project) -> None:
    project.write_root("sqldom.yaml", UPPER.replace("output:", "outptu:"))
    r = project.build()
    assert r.code == 2
    assert "sqldom.yaml:5" in r.stderr and "did you mean 'output'" in r.stderr
