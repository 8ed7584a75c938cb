"""The seed walk-through (seeds/004, "SQLDOM"), scenario by scenario, through the real CLI.

One test per scenario, in the seed's order, from "Startup, empty everything" to
"Remove link". Each test builds the state the previous scenarios left behind
itself (so tests do not depend on each other or on their order), then performs
the scenario's change and asserts exactly what a user sees: which steps ran and
how, the files under build/, the exit code and the problems, and the rows of
var/build.db (``sources``, ``build``, ``facts``, ``deps``, ``problems``).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Project, Result, clone, hash_bytes, popen, reasons, tables, write_build_py

# ---- the documents of the walk-through ----------------------------------------------------------------

HELLO = b"Hello World"
HELLO_EDITED = b"Hello, edited World"

B_MD = "# Document B\n\nSome *body* text for document B.\n"

# build.py of "Change parse function" / "First dependency": parse_markdown + write_html for Markdown
BUILD_PY = '''\
import sqldom


@sqldom.parser("**/*.md")
def parse_markdown(source):
    lines = source.text.splitlines()
    title = lines[0].lstrip("#").strip()
    body = "\\n".join(lines[1:]).strip()
    return {"title": title, "body": body}


@sqldom.writer("**/*.md", output="{dir}{stem}.html")
def write_html(doc, site):
    f = doc.facts
    return f"<html><head><title>{f['title']}</title></head><body><h1>{f['title']}</h1><p>{f['body']}</p></body></html>"
'''

A_TXT = "Document A\nThe body of document A.\n"


def b_html(anchor: str | None) -> str:
    """content/b.html; ``anchor`` (if any) is on line 6."""
    link = f"<p>{anchor}</p>\n" if anchor is not None else ""
    return ("<!DOCTYPE html>\n<html>\n<head><title>Document B</title></head>\n<body>\n"
            "<p>This is document B.</p>\n" + link + "</body>\n</html>\n")


LINK_LINE = 6
B_PLAIN = b_html(None)
B_LINK_TEXT = b_html('<a href="a.txt">Document A</a>')
B_LINK_EMPTY = b_html('<a href="a.txt"></a>')


# ---- helpers -------------------------------------------------------------------------------------------

def ok(result: Result) -> Result:
    """A build that must have succeeded with no problems."""
    assert result.code == 0, (result.stdout, result.stderr)
    assert result.problems == [], result.problems
    return result


def setup_build(project: Project, files: dict[str, str | bytes], build_py: str | None = None) -> Result:
    """Bring the project to the state an earlier scenario left: write files, build, expect success."""
    for rel, data in files.items():
        project.write(rel, data)
    if build_py is not None:
        write_build_py(project, build_py)
    return ok(project.build())


# States that several scenarios start from are built once per module; every test gets its own copy
# (``clone``), so no test depends on another or on the order they run in.

def _baseline(factory: pytest.TempPathFactory, name: str) -> Project:
    return Project(factory.mktemp(name) / "proj")


@pytest.fixture(scope="module")
def _hello(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """After "Full build, one input document": content/a.txt built."""
    p = _baseline(tmp_path_factory, "hello")
    setup_build(p, {"a.txt": HELLO})
    return p


@pytest.fixture(scope="module")
def _markdown_and_code(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """a.txt and b.md built with build.py's parse_markdown / write_html."""
    p = _baseline(tmp_path_factory, "code")
    setup_build(p, {"a.txt": HELLO, "b.md": B_MD}, BUILD_PY)
    assert p.text("b.html") == ("<html><head><title>Document B</title></head><body><h1>Document B</h1>"
                                "<p>Some *body* text for document B.</p></body></html>")
    return p


@pytest.fixture(scope="module")
def _linked(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The state at "Change target title": a.txt with a title line, b.html linking to it (empty link)."""
    p = _baseline(tmp_path_factory, "linked")
    setup_build(p, {"a.txt": A_TXT, "b.html": B_LINK_EMPTY})
    assert p.text("b.html") == B_LINK_EMPTY.replace('<a href="a.txt"></a>', '<a href="a.txt">Document A</a>')
    return p


@pytest.fixture(scope="module")
def _target_deleted(_linked: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """After "Delete second doc": the linked state, then a.txt deleted (b.html has a broken link)."""
    p = clone(_linked, tmp_path_factory.mktemp("deleted") / "proj")
    p.delete("a.txt")
    assert p.build().code == 1
    return p


@pytest.fixture
def hello(_hello: Project, tmp_path: Path) -> Project:
    return clone(_hello, tmp_path / "proj")


@pytest.fixture
def markdown_and_code(_markdown_and_code: Project, tmp_path: Path) -> Project:
    return clone(_markdown_and_code, tmp_path / "proj")


@pytest.fixture
def linked(_linked: Project, tmp_path: Path) -> Project:
    return clone(_linked, tmp_path / "proj")


@pytest.fixture
def target_deleted(_target_deleted: Project, tmp_path: Path) -> Project:
    return clone(_target_deleted, tmp_path / "proj")


# ---- the scenarios -------------------------------------------------------------------------------------

def test_01_startup_empty_everything(project: Project) -> None:
    """An empty content/: the build makes an empty build/ and var/build.db with a (empty) sources table."""
    res = ok(project.build())
    assert res.steps == {}
    assert res.deleted == set()
    s = res.summary
    assert (s["built"], s["restored"], s["unchanged"], s["deleted"], s["failed"], s["errors"]) == (0, 0, 0, 0, 0, 0)
    assert (project.root / "build").is_dir(), "the seed: 'It generates a directory build with no files in it'"
    assert project.outputs() == {}
    assert (project.root / "var" / "build.db").is_file()
    names = {r[0] for r in project.query("select name from sqlite_master where type = 'table'")}
    assert "sources" in names
    assert project.query("select * from sources") == []
    assert project.query("select * from build") == []


def test_02_full_build_one_input_document(project: Project) -> None:
    """content/a.txt and no build/: the build copies it to build/a.txt; sources and build record it."""
    project.write("a.txt", HELLO)
    res = ok(project.build())
    assert res.steps == {"a.txt": "built"}
    assert res.executed == {"a.txt"}
    assert project.outputs() == {"a.txt": HELLO}

    t = tables(project)
    h = hash_bytes(HELLO)
    assert t.sources() == {"a.txt": h}
    assert t.source_bytes("a.txt") == HELLO
    assert t.build() == {"a.txt": (h, "a.txt")}
    assert t.output_bytes("a.txt") == HELLO
    assert res.summary["built"] == 1


def test_03_incremental_one_unchanged_input_document(hello: Project) -> None:
    """A second build finds no changes: nothing runs, nothing is written, the log counts 1 unchanged."""
    project = hello
    out = project.root / "build" / "a.txt"
    before = os.stat(out)
    rows_before = (tables(project).sources(), tables(project).build())

    res = ok(project.build())
    assert res.steps == {}
    assert res.executed == set()
    assert res.summary["unchanged"] == 1
    assert res.summary["built"] == 0 and res.summary["restored"] == 0
    after = os.stat(out)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "build/a.txt was rewritten"
    assert (tables(project).sources(), tables(project).build()) == rows_before

    # "a message is logged with the number of unchanged documents" (human output)
    proc = project.cli("build", "-C", str(project.root))
    assert proc.returncode == 0, proc.stderr
    assert "1 unchanged" in proc.stdout

    # ... and with no build/ directory at all: still nothing executes, build/ is filled from the database
    shutil.rmtree(project.root / "build")
    res = ok(project.build())
    assert res.executed == set()
    assert res.steps == {}
    assert project.outputs() == {"a.txt": HELLO}


def test_04_change_one_input_document(hello: Project) -> None:
    """Editing a.txt rebuilds a.txt; sources and build carry the new hash."""
    project = hello
    project.write("a.txt", HELLO_EDITED)
    res = ok(project.build())
    assert res.steps == {"a.txt": "built"}
    assert project.outputs() == {"a.txt": HELLO_EDITED}
    t = tables(project)
    h = hash_bytes(HELLO_EDITED)
    assert t.sources() == {"a.txt": h}
    assert t.source_bytes("a.txt") == HELLO_EDITED
    assert t.build() == {"a.txt": (h, "a.txt")}
    assert t.output_bytes("a.txt") == HELLO_EDITED


class _Lines:
    """Lines of a background process's stdout, read by a thread so the test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def until_summary(self, timeout: float) -> list[dict[str, Any]]:
        """Events up to and including the next summary line."""
        import json
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no summary from `sqldom watch` within {timeout}s; output so far: {self.seen}"
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, (f"`sqldom watch` ended (exit {self.proc.wait()}); "
                                      f"stdout {self.seen}; stderr {self.proc.stderr.read() if self.proc.stderr else ''}")
            self.seen.append(line)
            if line.startswith("{"):
                ev = json.loads(line)
                events.append(ev)
                if ev["event"] == "summary":
                    return events


def test_05_server_watch_one_input_document(hello: Project) -> None:
    """`sqldom watch`: a first build finds nothing changed; editing a.txt rebuilds it without a new command."""
    project = hello
    proc = popen(project, "watch", "--json", "-C", str(project.root))
    try:
        lines = _Lines(proc)
        first = lines.until_summary(timeout=30)
        assert [e for e in first if e["event"] == "step"] == []
        assert first[-1]["unchanged"] == 1 and first[-1]["built"] == 0

        # edit a.txt atomically (no half-written file for the watcher to see), give the watcher a moment
        # to be ready first
        time.sleep(1.0)
        tmp = project.root / "a.txt.tmp"
        tmp.write_bytes(HELLO_EDITED)
        os.replace(tmp, project.root / "content" / "a.txt")
        deadline = time.monotonic() + 30
        while True:
            batch = lines.until_summary(timeout=max(deadline - time.monotonic(), 0.1))
            steps = {e["id"]: e["status"] for e in batch if e["event"] == "step"}
            if steps:
                break
            # a build triggered by something else (its own writes?) must at least do nothing
            assert batch[-1]["built"] == 0 and batch[-1]["deleted"] == 0, batch
        assert steps == {"a.txt": "built"}
        assert project.outputs() == {"a.txt": HELLO_EDITED}
        assert tables(project).sources() == {"a.txt": hash_bytes(HELLO_EDITED)}

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, "Ctrl-C ends the watch with exit 0"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_06_delete_one_input_document(hello: Project) -> None:
    """Deleting a.txt empties sources and build, and removes build/a.txt."""
    project = hello
    project.delete("a.txt")
    res = ok(project.build())
    assert res.steps == {}
    assert res.executed == set()
    assert res.deleted == {"a.txt"}
    assert {"event": "deleted", "path": "a.txt", "step": "a.txt"} in res.events
    assert res.summary["deleted"] == 1
    assert project.outputs() == {}
    assert not (project.root / "build" / "a.txt").exists()
    t = tables(project)
    assert t.sources() == {}
    assert t.build() == {}
    assert t.steps() == set()


def test_07_add_one_markdown_document_with_title(hello: Project) -> None:
    """Adding b.md (a.txt unchanged): only b.md runs; build/b.html is a full HTML document with its title."""
    project = hello
    project.write("b.md", B_MD)
    res = ok(project.build())
    assert res.steps == {"b.md": "built"}
    assert res.summary["unchanged"] == 1
    html = project.text("b.html")
    assert html is not None
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "<title>Document B</title>" in html
    assert "<h1>Document B</h1>" in html
    assert "<em>body</em>" in html
    assert html.rstrip().endswith("</html>")
    assert set(project.outputs()) == {"a.txt", "b.html"}

    t = tables(project)
    assert t.sources() == {"a.txt": hash_bytes(HELLO), "b.md": hash_bytes(B_MD)}
    assert t.build()["b.html"] == (hash_bytes(html.encode()), "b.md")
    assert t.facts("b.md")["title"] == "Document B"


def test_08_change_parse_function(markdown_and_code: Project) -> None:
    """Editing write_html in build.py rebuilds b.html (it is no longer skipped); build.py is in sources."""
    project = markdown_and_code
    edited = BUILD_PY.replace("<body><h1>", "<body><main><h1>").replace("</p></body>", "</p></main></body>")
    write_build_py(project, edited)
    res = ok(project.build())
    assert res.steps == {"b.md": "built"}
    assert "write_html" in reasons(res)["b.md"]
    assert project.text("b.html") == ("<html><head><title>Document B</title></head><body><main><h1>Document B"
                                      "</h1><p>Some *body* text for document B.</p></main></body></html>")
    assert project.output("a.txt") == HELLO

    # "store your build.py file as a path in the cache, with a hash"
    rows = [(p, h) for p, h in tables(project).sources().items() if p.endswith("build.py")]
    assert rows and all(h == hash_bytes(edited) for _, h in rows), rows


def test_09_first_dependency(markdown_and_code: Project) -> None:
    """An edit to build.py rebuilds only what used the edited code: never a.txt."""
    project = markdown_and_code

    # the parser of Markdown changes: b.md re-parses (and its page is rewritten); a.txt is left alone
    edited = BUILD_PY.replace('title = lines[0].lstrip("#").strip()', 'title = lines[0].lstrip("#").strip().upper()')
    write_build_py(project, edited)
    res = ok(project.build())
    assert res.steps == {"b.md": "built"}
    assert "parse_markdown" in reasons(res)["b.md"]
    assert "<title>DOCUMENT B</title>" in (project.text("b.html") or "")
    assert tables(project).facts("b.md")["title"] == "DOCUMENT B"

    # a new function that no rule uses: nothing runs
    write_build_py(project, edited + "\n\ndef slugify(text):\n    return text.lower().replace(' ', '-')\n")
    res = ok(project.build())
    assert res.steps == {}
    assert res.summary["built"] == 0 and res.summary["unchanged"] == 2


def test_10_link_from_b_to_a(project: Project) -> None:
    """Editing b.html to link to a.txt rebuilds b.html only; the link is recorded as a fact of b.html."""
    setup_build(project, {"a.txt": A_TXT, "b.html": B_PLAIN})

    project.write("b.html", B_LINK_TEXT)
    res = ok(project.build())
    assert res.steps == {"b.html": "built"}
    assert project.text("b.html") == B_LINK_TEXT        # a link with text is left as written
    assert project.text("a.txt") == A_TXT
    t = tables(project)
    assert t.sources()["b.html"] == hash_bytes(B_LINK_TEXT)
    assert t.build()["b.html"] == (hash_bytes(B_LINK_TEXT), "b.html")
    assert t.facts("b.html")["links"] == ["a.txt"]
    assert t.problems() == []


def test_11_link_from_a_to_b_with_title_as_link_text(project: Project) -> None:
    """a.txt gets the first-line title "Document A"; an empty <a href="a.txt"></a> in b.html shows it."""
    setup_build(project, {"a.txt": HELLO, "b.html": B_LINK_TEXT})

    project.write("a.txt", A_TXT)
    project.write("b.html", B_LINK_EMPTY)
    res = ok(project.build())
    assert res.steps == {"a.txt": "built", "b.html": "built"}
    assert project.text("b.html") == B_LINK_EMPTY.replace('<a href="a.txt"></a>', '<a href="a.txt">Document A</a>')
    assert project.text("a.txt") == A_TXT

    t = tables(project)
    assert t.facts("a.txt")["title"] == "Document A"            # "the cache ... stores ... the title"
    assert t.sources()["a.txt"] == hash_bytes(A_TXT)
    assert t.build()["a.txt"] == (hash_bytes(A_TXT), "a.txt")
    # b.html's writer depends on the fact `title` of a.txt, and only on it
    assert {(target, key) for _, target, key in t.deps("b.html", "fact")} == {("a.txt", "title")}


def test_12_change_target_title(linked: Project) -> None:
    """After a full build (var/ and build/ deleted), changing a.txt's title rebuilds a.txt and b.html."""
    project = linked
    shutil.rmtree(project.root / "var")
    shutil.rmtree(project.root / "build")
    res = ok(project.build())
    assert res.steps == {"a.txt": "built", "b.html": "built"}

    project.write("a.txt", "The Document A\nThe body of document A.\n")
    res = ok(project.build())
    assert res.steps == {"a.txt": "built", "b.html": "built"}
    why = reasons(res)["b.html"]
    assert "title" in why and "a.txt" in why, why
    assert project.text("b.html") == B_LINK_EMPTY.replace('<a href="a.txt"></a>',
                                                          '<a href="a.txt">The Document A</a>')
    assert tables(project).facts("a.txt")["title"] == "The Document A"
    outcome, reason = tables(project).last_execution("b.html") or ("", "")
    assert outcome == "built" and "title" in reason and "a.txt" in reason


def test_13_target_body_changes_but_not_title(linked: Project) -> None:
    """Changing a.txt's body (not its first line) rebuilds only a.txt; b.html is not touched."""
    project = linked
    b_out = project.root / "build" / "b.html"
    before_bytes, before_stat = b_out.read_bytes(), os.stat(b_out)

    project.write("a.txt", "Document A\nA completely different body.\nWith two lines.\n")
    res = ok(project.build())
    assert res.steps == {"a.txt": "built"}
    assert project.text("a.txt") == "Document A\nA completely different body.\nWith two lines.\n"
    assert b_out.read_bytes() == before_bytes
    after = os.stat(b_out)
    assert (after.st_ino, after.st_mtime_ns) == (before_stat.st_ino, before_stat.st_mtime_ns)


def _broken_link_problem() -> dict[str, Any]:
    return {"severity": "error", "step": "b.html", "path": "b.html", "line": LINK_LINE}


def test_14_delete_second_doc(linked: Project) -> None:
    """Deleting a.txt removes it from build/ and the database; b.html's link to it is an error (exit 1),
    reported again by the next build although nothing changed."""
    project = linked

    project.delete("a.txt")
    res = project.build()
    assert res.code == 1
    assert res.steps == {"b.html": "built"}
    assert res.deleted == {"a.txt"}
    assert {"event": "deleted", "path": "a.txt", "step": "a.txt"} in res.events
    assert not (project.root / "build" / "a.txt").exists()
    assert project.output("b.html") is not None, "the output is still written"
    assert set(project.outputs()) == {"b.html"}

    assert len(res.problems) == 1
    prob = res.problems[0]
    assert {k: prob[k] for k in ("severity", "step", "path", "line")} == _broken_link_problem()
    assert "a.txt" in prob["message"]
    assert res.summary["errors"] == 1

    t = tables(project)
    assert "a.txt" not in t.sources()
    assert "a.txt" not in t.build()
    assert "a.txt" not in t.steps()
    assert t.facts("a.txt") == {}
    assert [{k: p[k] for k in ("severity", "step", "path", "line")} for p in t.problems()] == [_broken_link_problem()]

    # a no-op build: nothing runs, the problem is still there and still fails the build
    again = project.build()
    assert again.code == 1
    assert again.steps == {}
    assert again.problems == res.problems
    assert again.summary["errors"] == 1


def test_15_remove_link(target_deleted: Project) -> None:
    """With a.txt gone, deleting the <a> from b.html clears the error: exit 0, no problems, no link entry."""
    project = target_deleted
    project.write("b.html", B_PLAIN)
    res = ok(project.build())
    assert res.steps == {"b.html": "built"}
    assert project.text("b.html") == B_PLAIN
    t = tables(project)
    assert t.problems() == []
    assert t.facts("b.html")["links"] == []
    assert not any(target == "a.txt" for _, target, _ in t.deps("b.html")), t.deps("b.html")

    again = ok(project.build())
    assert again.steps == {}


def test_16_remove_link_then_put_everything_back(_linked: Project, target_deleted: Project) -> None:
    """Putting a.txt and the link back returns to normal: the earlier outputs come back from the database
    (restored, not executed), no problem, exit 0."""
    project = target_deleted
    normal = _linked.outputs()
    project.write("b.html", B_PLAIN)
    ok(project.build())

    project.write("a.txt", A_TXT)
    project.write("b.html", B_LINK_EMPTY)
    res = ok(project.build())
    assert res.steps == {"a.txt": "restored", "b.html": "restored"}
    assert res.executed == set()
    assert project.outputs() == normal
    t = tables(project)
    assert t.problems() == []
    assert t.build() == {"a.txt": (hash_bytes(A_TXT), "a.txt"), "b.html": (hash_bytes(normal["b.html"]), "b.html")}
    assert {(target, key) for _, target, key in t.deps("b.html", "fact")} == {("a.txt", "title")}

    # and it is normal: a title change propagates again
    project.write("a.txt", "Another A\n")
    res = ok(project.build())
    assert res.steps == {"a.txt": "built", "b.html": "built"}
    assert '<a href="a.txt">Another A</a>' in (project.text("b.html") or "")
