"""Workshop validation through the CLI: every mistake exits 2 before anything runs, naming sqldom.yaml,
the line, and a fix. No container engine is needed: nothing may execute."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.project import Project

VALID = """\
executor: podman
workshop:
  image: localhost/sqldom-test/spec-ws
base:
  image: localhost/sqldom-test/busybox:1
steps:
  - id: step-1-setup
    doc: steps/one.md
    files:
      - {source: code/app.sh, target: /workshop/app.sh}
      - {target: /workshop/NOTES, content: "inline"}
      - {source: code/data, target: /workshop/data}
    env: {APP_ENV: dev}
    secrets: {API_TOKEN: env:SQLDOM_SPEC_TOKEN}
    commands: ["sh /workshop/app.sh"]
    outputs: [/workshop/out]
  - id: step-2-more
    commands: ["true"]
"""


@pytest.fixture
def spec_project(project: Project) -> Project:
    project.write("steps/one.md", "# One\n")
    project.write("code/app.sh", "echo hi\n")
    project.write("code/data/a.csv", "a\n")
    project.write("index.md", "# Index\n")
    return project


def line_of(text: str, marker: str) -> int:
    """The line of the last occurrence of ``marker`` (the second of a duplicate)."""
    at = text.rfind(marker)
    assert at >= 0, f"{marker!r} not in the YAML"
    return text.count("\n", 0, at) + 1


def refused(project: Project, text: str, line_marker: str | None, *words: str, hint: bool = True) -> None:
    project.write_root("sqldom.yaml", text)
    proc = project.cli("build", "-C", str(project.root))
    assert proc.returncode == 2, proc.stderr
    first = proc.stderr.splitlines()[0]
    if line_marker is not None:
        assert f"sqldom.yaml:{line_of(text, line_marker)}:" in first, proc.stderr
    else:
        assert "sqldom.yaml" in first, proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)
    if hint:
        assert "hint:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project.root / "build").exists() or not any((project.root / "build").iterdir())


CASES = {
    "workshop without steps": (VALID.split("steps:")[0], "workshop:", ("needs 'steps' too",)),
    "unknown step key": (VALID.replace("    commands: [\"true\"]", "    comands: [\"true\"]"), "comands",
                         ("unknown key 'comands'", "did you mean 'commands'?")),
    "unknown workshop key": (VALID.replace("  image: localhost/sqldom-test/spec-ws",
                                           "  image: localhost/sqldom-test/spec-ws\n  pussh: true"), "pussh",
                             ("unknown key 'pussh'", "did you mean 'push'?")),
    "id not URL-safe": (VALID.replace("id: step-2-more", "id: step 2/more!"), "step 2/more",
                        ("is not URL-safe", "e.g. 'step-2-more'")),
    "duplicate id": (VALID.replace("id: step-2-more", "id: step-1-setup"), "  - id: step-1-setup\n    commands",
                     ("used twice (first on line 7)",)),
    "no steps": (VALID.split("steps:")[0] + "steps: []\n", "steps: []", ("at least one step",)),
    "missing source": (VALID.replace("code/app.sh, target", "code/ap.sh, target"), "code/ap.sh",
                       ("files source 'code/ap.sh' does not exist", "did you mean 'code/app.sh'?")),
    "escaping source": (VALID.replace("code/app.sh, target", "../secret.txt, target"), "../secret.txt",
                        ("must be a path inside content/",)),
    "absolute source": (VALID.replace("code/app.sh, target", "/etc/passwd, target"), "/etc/passwd",
                        ("must be a path inside content/",)),
    "relative target": (VALID.replace("target: /workshop/app.sh", "target: workshop/app.sh"), "target: workshop/app.sh",
                        ("must be an absolute path in the image",)),
    "source and content": (VALID.replace('{target: /workshop/NOTES, content: "inline"}',
                                         '{source: code/app.sh, target: /workshop/NOTES, content: "inline"}'),
                           "/workshop/NOTES", ("exactly one of source",)),
    "bad secret": (VALID.replace("env:SQLDOM_SPEC_TOKEN", "token123"), "API_TOKEN",
                   ("must be 'env:VAR' or 'file:PATH'", "e.g. API_TOKEN: env:API_TOKEN")),
    "bad env name": (VALID.replace("{APP_ENV: dev}", "{1BAD: dev}"), "1BAD", ("not a valid variable name",)),
    "image with a tag": (VALID.replace("spec-ws\n", "spec-ws:latest\n", 1), "spec-ws:latest",
                         ("is not an image repository", "drop the tag")),
    "local executor": (VALID.replace("executor: podman", "executor: local"), "executor: local",
                       ("need a container executor",)),
    "missing doc": (VALID.replace("doc: steps/one.md", "doc: steps/uno.md"), "  - id: step-1-setup",
                    ("doc 'steps/uno.md' does not exist",)),
    "env and secret": (VALID.replace("{APP_ENV: dev}", "{API_TOKEN: x}"), "secrets:",
                       ("both in env and in secrets",)),
    "push not a bool": (VALID.replace("  image: localhost/sqldom-test/spec-ws",
                                      "  image: localhost/sqldom-test/spec-ws\n  push: yes please"), "push:",
                        ("must be true or false",), ),
    "relative output": (VALID.replace("[/workshop/out]", "[out]"), "[out]", ("must be an absolute path",)),
    "command not a string": (VALID.replace('["true"]', "[{run: true}]"), "{run: true}",
                             ("every entry must be a non-empty string",)),
}
NO_HINT = {"duplicate id", "no steps", "source and content",
           "bad env name", "relative target", "relative output", "command not a string", "push not a bool"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_workshop_mistake_exits_2_naming_the_line_before_anything_runs(spec_project: Project, case: str) -> None:
    text, marker, words = CASES[case]
    refused(spec_project, text, marker, *words, hint=case not in NO_HINT)


def test_a_source_that_leads_outside_content_through_a_symlink_is_refused(spec_project: Project,
                                                                          tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("private\n")
    os.symlink(outside, spec_project.root / "content" / "code" / "link.txt")
    refused(spec_project, VALID.replace("code/app.sh, target", "code/link.txt, target"), "code/link.txt",
            "leads outside content/")


def test_a_secret_file_inside_content_is_refused_when_the_step_is_due(spec_project: Project) -> None:
    spec_project.write("token.txt", "t0ken\n")
    refused(spec_project, VALID.replace("env:SQLDOM_SPEC_TOKEN", "file:content/token.txt"), "API_TOKEN",
            "inside content/, where it would be published")


def test_an_unset_secret_variable_is_refused_naming_it(spec_project: Project,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQLDOM_SPEC_TOKEN", raising=False)
    refused(spec_project, VALID, "API_TOKEN", "$SQLDOM_SPEC_TOKEN, which is not set", "export SQLDOM_SPEC_TOKEN=")


def test_from_step_without_a_workshop_is_a_usage_error(project: Project) -> None:
    project.write("a.md", "# A\n")
    proc = project.cli("build", "-C", str(project.root), "--from-step", "step-1")
    assert proc.returncode == 2
    assert "declares no workshop" in proc.stderr and "Traceback" not in proc.stderr
