"""Problems: a broken link is an error (exit 1) with path, line and message, re-reported until fixed;
an exception in a transform, or a wrong return type, fails that step only and the rest builds; two
steps producing one output are an error naming both (SPEC sections 3, 4, 5)."""

from __future__ import annotations

import re

from tests.support.project import Project, tables, write_build_py

B_HTML = "<html>\n<body>\n<p>A link to <a href=\"missing.txt\">M</a>.</p>\n</body>\n</html>\n"


def where(problem: dict[str, object]) -> dict[str, object]:
    return {k: problem[k] for k in ("severity", "step", "path", "line")}


def test_broken_link_is_an_error_reported_until_its_target_exists(project: Project) -> None:
    project.write("b.html", B_HTML)
    project.write("ok.txt", "fine\n")
    res = project.build()
    assert res.code == 1
    assert res.steps == {"b.html": "built", "ok.txt": "built"}
    assert len(res.problems) == 1
    prob = res.problems[0]
    assert where(prob) == {"severity": "error", "step": "b.html", "path": "b.html", "line": 3}
    assert "missing.txt" in prob["message"]
    assert project.text("b.html") == B_HTML, "the output is still written"
    assert res.summary["errors"] == 1
    assert [where(p) for p in tables(project).problems()] == [where(prob)]

    # a no-op build still reports it and still exits 1
    again = project.build()
    assert again.code == 1
    assert again.steps == {}
    assert again.problems == res.problems

    # a build that runs something else still reports it
    project.write("ok.txt", "fine, edited\n")
    other = project.build()
    assert other.code == 1
    assert other.steps == {"ok.txt": "built"}
    assert other.problems == res.problems

    # the target appears: the problem is gone
    project.write("missing.txt", "Missing no more\n")
    fixed = project.build()
    assert fixed.code == 0
    assert fixed.steps == {"missing.txt": "built", "b.html": "built"}
    assert fixed.problems == []
    assert tables(project).problems() == []
    assert fixed.summary["errors"] == 0


def test_broken_link_in_markdown_names_its_line(project: Project) -> None:
    project.write("doc.md", "# Doc\n\nIntro.\n\nSee [the guide](guide.md) for more.\n")
    project.write("fm.md", "---\ntitle: With front matter\n---\n\nText.\n\nA [broken](nope.txt) link.\n")
    res = project.build()
    assert res.code == 1
    assert res.steps == {"doc.md": "built", "fm.md": "built"}
    assert sorted((p["step"], p["path"], p["line"], p["severity"]) for p in res.problems) == [
        ("doc.md", "doc.md", 5, "error"), ("fm.md", "fm.md", 7, "error")]
    messages = {p["step"]: p["message"] for p in res.problems}
    assert "guide.md" in messages["doc.md"] and "nope.txt" in messages["fm.md"]
    assert project.output("doc.html") is not None and project.output("fm.html") is not None


BUILD_PY_RAISES = '''\
import sqldom


@sqldom.writer("**/*.txt")
def write_text(doc, site):
    if "boom" in doc.text:
        raise ValueError("kaboom in " + doc.path)
    return doc.text.upper()
'''


def test_an_exception_in_a_transform_fails_only_that_step(project: Project) -> None:
    write_build_py(project, BUILD_PY_RAISES)
    project.write("bad.txt", "this goes boom\n")
    project.write("good.txt", "all good\n")
    project.write("page.md", "# Page\n")
    res = project.build()
    assert res.code == 1
    assert res.steps == {"bad.txt": "failed", "good.txt": "built", "page.md": "built"}
    assert res.summary["failed"] == 1
    assert project.output("bad.txt") is None
    assert project.text("good.txt") == "ALL GOOD\n"
    assert project.output("page.html") is not None

    assert len(res.problems) == 1
    prob = res.problems[0]
    assert prob["severity"] == "error" and prob["step"] == "bad.txt"
    msg = prob["message"]
    assert "ValueError" in msg and "kaboom in bad.txt" in msg
    assert re.search(r'build\.py", line 7, in write_text', msg), msg      # the traceback, in the user's file
    assert "Traceback" not in res.stderr

    # a no-op build: the failure is still reported, nothing else runs
    again = project.build()
    assert again.code == 1
    assert again.executed <= {"bad.txt"}
    assert [p["message"] for p in again.problems] == [msg]

    # the cause is fixed
    project.write("bad.txt", "this is fine now\n")
    fixed = project.build()
    assert fixed.code == 0
    assert fixed.steps == {"bad.txt": "built"}
    assert fixed.problems == []
    assert project.text("bad.txt") == "THIS IS FINE NOW\n"


def test_an_exception_in_a_parser_fails_only_that_step(project: Project) -> None:
    write_build_py(project, '''\
import sqldom


@sqldom.parser("**/*.txt")
def parse_text(source):
    return {"title": source.text.splitlines()[0]}
''')
    project.write("empty.txt", "")
    project.write("fine.txt", "Fine\n")
    res = project.build()
    assert res.code == 1
    assert res.steps == {"empty.txt": "failed", "fine.txt": "built"}
    assert [p["step"] for p in res.problems] == ["empty.txt"]
    assert "IndexError" in res.problems[0]["message"]
    assert project.text("fine.txt") == "Fine\n"


def test_a_writer_returning_a_wrong_type_fails_that_step(project: Project) -> None:
    write_build_py(project, '''\
import sqldom


@sqldom.writer("**/*.txt")
def write_text(doc, site):
    if doc.path == "n.txt":
        return 42
    return doc.text
''')
    project.write("n.txt", "a number\n")
    project.write("s.txt", "a string\n")
    res = project.build()
    assert res.code == 1
    assert res.steps == {"n.txt": "failed", "s.txt": "built"}
    assert project.output("n.txt") is None
    assert project.text("s.txt") == "a string\n"
    assert [p["step"] for p in res.problems] == ["n.txt"]
    msg = res.problems[0]["message"]
    assert "int" in msg and "str" in msg and "bytes" in msg, msg


def test_two_steps_producing_one_output_is_an_error_naming_both(project: Project) -> None:
    project.write("a.md", "# From Markdown\n")
    project.write("a.html", "<html><head><title>From HTML</title></head><body>html</body></html>\n")
    res = project.build()
    assert res.code == 1
    assert res.summary["errors"] >= 1
    errors = [p for p in res.problems if p["severity"] == "error"]
    assert errors, res.events
    shown = ["{}: {}".format(p["path"] or p["step"], p["message"]) for p in errors]
    assert any("a.md" in s and "a.html" in s and "a.html" in p["message"] for s, p in zip(shown, errors, strict=True)), shown
    assert project.output("a.html") is not None
    assert set(project.outputs()) == {"a.html"}
    assert list(tables(project).build()) == ["a.html"]

    # a no-op build reports it again
    again = project.build()
    assert again.code == 1
    assert [p["message"] for p in again.problems] == [p["message"] for p in res.problems]

    # removing one of the two ends the conflict
    project.delete("a.md")
    fixed = project.build()
    assert fixed.code == 0
    assert fixed.problems == []
    assert project.text("a.html") == "<html><head><title>From HTML</title></head><body>html</body></html>\n"
    assert tables(project).build()["a.html"][1] == "a.html"


def test_a_page_and_a_document_producing_one_output_is_an_error_naming_both(project: Project) -> None:
    write_build_py(project, '''\
import sqldom


@sqldom.page("index.html")
def index(site):
    return "generated index"
''')
    project.write("index.html", "<p>hand-written index</p>\n")
    project.write("other.txt", "other\n")
    res = project.build()
    assert res.code == 1
    errors = [p for p in res.problems if p["severity"] == "error"]
    assert errors, res.events
    shown = " | ".join("{}: {}".format(p["path"] or p["step"], p["message"]) for p in errors)
    assert "index.html" in shown and "page" in shown, shown      # the source index.html and the page index()
    assert project.output("index.html") in (b"generated index", b"<p>hand-written index</p>\n")
    assert project.text("other.txt") == "other\n"


def test_a_failed_parse_stays_failed_without_output_until_its_inputs_change(project: Project) -> None:
    project.write_root("build.py", "import sqldom\n\n@sqldom.parser('*.txt')\ndef p(source):\n"
                                   "    raise ValueError('bad')\n")
    project.write("bad.txt", "hi\n")
    project.write("ok.md", "# ok\n")
    first = project.build()
    assert first.code == 1 and first.steps["bad.txt"] == "failed"
    assert project.output("bad.txt") is None
    again = project.build()
    assert again.code == 1 and again.steps == {}, "nothing changed: nothing runs, the problem stands"
    assert project.output("bad.txt") is None, "incremental == clean: a failed parse writes no output"
    project.write_root("build.py", "import sqldom\n\n@sqldom.parser('*.txt')\ndef p(source):\n"
                                   "    return {'title': 'fixed'}\n")
    fixed = project.build()
    assert fixed.code == 0 and fixed.steps == {"bad.txt": "built"}
    assert project.output("bad.txt") == b"hi\n"
