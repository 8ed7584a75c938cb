"""Bad input and hostile environments, each through the real CLI in a subprocess (issue 6, item 3; SPEC §3, §8).

Every case asserts what a user sees: the exit code of SPEC §3 (0 ok, 1 a step failed or an error
problem is outstanding, 2 bad usage or configuration), a message naming the file (and the line
where there is one), no bare traceback on stdout or stderr, no data lost (content/ untouched; where
it matters the previous build/ and database too), and the rest of the build going on where the
spec says so. content/guide/reliability.md lists every case with what the user sees and the test
that proves it; cases fully covered by other tests are referenced there, not repeated here.

Faults inside a build are injected without touching sqldom: ``build.py`` is user code executed
right after the scan, so its top level can delete or rewrite sources at a deterministic instant
between the scan and the record, or replace an engine function to force an internal error.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import xxhash

from tests.support.project import Project, cli_in, clone, write_build_py

MiB = 1 << 20

# ---- helpers ------------------------------------------------------------------------------------------


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COV")}


def said(proc: subprocess.CompletedProcess[str] | Any) -> str:
    """Everything a command printed."""
    return f"{proc.stdout}\n{proc.stderr}"


def assert_no_traceback(*procs: Any) -> None:
    for proc in procs:
        assert "Traceback" not in said(proc), said(proc)


def assert_not_a_crash(*procs: Any) -> None:
    """No bare traceback, and bad input is not reported as a bug in sqldom."""
    for proc in procs:
        out = said(proc)
        assert "Traceback" not in out, out
        assert "internal error" not in out and "this is a bug" not in out, out


def tree(top: Path) -> dict[str, Any]:
    """Every entry under ``top`` without following symlinks: file -> bytes, link -> ('->', target)."""
    found: dict[str, Any] = {}
    if not top.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(top).as_posix()
            if p.is_symlink():
                found[rel] = ("->", os.readlink(p))
            elif p.is_file():
                found[rel] = p.read_bytes()
    return found


def files(top: Path) -> dict[str, bytes]:
    """Regular files under ``top`` (symlinks not followed)."""
    return {k: v for k, v in tree(top).items() if isinstance(v, bytes)}


def clean_build(project: Project, dest: Path) -> dict[str, bytes]:
    """build/ of a fresh project made of the same sources, built once: what any build must converge to."""
    dest.mkdir(parents=True)
    shutil.copytree(project.root / "content", dest / "content", symlinks=True)
    for name in ("build.py", "sqldom.yaml"):
        if (project.root / name).is_file():
            shutil.copy2(project.root / name, dest / name)
    fresh = Project(dest)
    res = fresh.build()
    assert res.code in (0, 1), res.stderr
    return files(dest / "build")


def integrity(project: Project) -> str:
    return str(project.query("pragma integrity_check")[0][0])


def hash_of(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def assert_blobs_match_their_hashes(project: Project) -> None:
    """Content addressing holds: every blob's bytes hash to its key (else a later restore is wrong)."""
    con = project.db()
    try:
        bad = [h for h, data in con.execute("select hash, data from blobs") if hash_of(bytes(data)) != h]
    finally:
        con.close()
    assert bad == [], f"blobs whose bytes do not match their hash: {bad}"


def problems_for(res: Any, step: str) -> list[dict[str, Any]]:
    return [p for p in res.problems if p["step"] == step]


def lines_marked(text: str, marker: str) -> set[int]:
    return {i for i, line in enumerate(textwrap.dedent(text).splitlines(), 1) if marker in line}


def human_build(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return project.cli("build", "-C", str(project.root), *args)


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them unless it drops two capabilities)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


def sqldom_as_user(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*unprivileged(), sys.executable, "-m", "sqldom", *args, "-C", str(project.root)],
                          capture_output=True, text=True, timeout=120, env=env())


# ---- sqldom.yaml and build.py that cannot be used: exit 2, file and line, nothing built, nothing lost ----

GOOD_BUILD_PY = """\
import sqldom


@sqldom.writer("**/*.txt")
def shout(doc, site):
    return doc.text.upper()
"""

CONFIG_ERRORS = {
    # id: (file, text, "file:line" expected, other fragments expected in stderr)
    "yaml-syntax": ("sqldom.yaml", "build_py: build.py\nexecutor: auto: twice\n", "sqldom.yaml:2",
                    ["invalid YAML"]),
    "yaml-unknown-key": ("sqldom.yaml", "# settings\nbuild_py: build.py\nexecuter: local\n", "sqldom.yaml:3",
                         ["executer", "did you mean 'executor'"]),
    "yaml-unknown-key-no-match": ("sqldom.yaml", "colour: blue\n", "sqldom.yaml:1", ["colour", "hint:"]),
    "yaml-bad-value": ("sqldom.yaml", "build_py: build.py\nexecutor: docker\n", "sqldom.yaml:2",
                       ["executor 'docker' is not one of"]),
    "build-py-syntax": ("build.py", GOOD_BUILD_PY + "\n\ndef broken(:\n    pass\n", "build.py:9",
                        ["syntax error"]),
    "build-py-raises-at-import": ("build.py", GOOD_BUILD_PY + "\nLIMIT = int('ten')\n", "build.py:8",
                                  ["ValueError"]),
    "build-py-not-utf8": ("build.py", "import sqldom\n# caf\xe9\n", "build.py:2", ["not valid UTF-8"]),
    "build-py-calls-sys-exit": ("build.py", "import sys\n\nimport sqldom\n\nsys.exit(0)\n", "build.py:5",
                                ["SystemExit"]),
}


@pytest.fixture(scope="module")
def built_once(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A small project with a build.py, built once; each test gets its own copy."""
    base = Project(tmp_path_factory.mktemp("configured") / "proj")
    base.write("a.txt", "a\n")
    base.write("doc.md", "# Doc\n")
    write_build_py(base, GOOD_BUILD_PY)
    assert base.build().code == 0
    return base


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_a_configuration_error_is_exit_2_naming_file_and_line_and_keeps_the_last_build(
        built_once: Project, tmp_path: Path, case: str) -> None:
    name, text, where, fragments = CONFIG_ERRORS[case]
    project = clone(built_once, tmp_path / "proj")
    before_build, runs = files(project.root / "build"), project.query("select count(*) from runs")

    (project.root / name).write_bytes(text.encode("latin-1" if case.endswith("not-utf8") else "utf-8"))
    project.write("a.txt", "edited while the configuration is broken\n")
    before_content = tree(project.root / "content")
    proc = human_build(project)
    assert proc.returncode == 2, said(proc)
    assert where in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert_not_a_crash(proc)
    assert files(project.root / "build") == before_build, "nothing is built"
    assert project.query("select count(*) from runs") == runs, "nothing is recorded"
    assert tree(project.root / "content") == before_content

    # fixing the file builds again
    if name == "build.py":
        write_build_py(project, GOOD_BUILD_PY)
    else:
        (project.root / name).unlink()
    fixed = project.build()
    assert fixed.code == 0, fixed.stderr
    assert project.text("a.txt") == "EDITED WHILE THE CONFIGURATION IS BROKEN\n"


# ---- build.py transforms that fail: that step only, exit 1, a problem with file and line ---------------

TRANSFORM_FAILURES: dict[str, tuple[str, str, list[str]]] = {
    # id: (build.py, the failing step, fragments of the problem message); "# L" marks acceptable lines
    "writer-raises": ('''\
        import sqldom


        @sqldom.writer("**/*.txt")
        def shout(doc, site):
            if doc.path == "bad.txt":
                raise RuntimeError("cannot shout " + doc.path)  # L
            return doc.text.upper()
        ''', "bad.txt", ["shout", "RuntimeError", "cannot shout bad.txt", "line {line}, in shout"]),
    "writer-returns-a-dict": ('''\
        import sqldom


        @sqldom.writer("**/*.txt")  # L
        def shout(doc, site):  # L
            if doc.path == "bad.txt":  # L
                return {"not": "bytes"}  # L
            return doc.text.upper()  # L
        ''', "bad.txt", ["shout", "dict", "str or bytes"]),
    "page-returns-none": ('''\
        import sqldom


        @sqldom.page("index.html")  # L
        def index(site):  # L
            site.glob("*.txt")  # L
        ''', "index.html", ["index", "NoneType"]),
    "parser-returns-a-list": ('''\
        import sqldom


        @sqldom.parser("**/*.txt")  # L
        def facts(source):  # L
            if source.path == "bad.txt":  # L
                return ["title"]  # L
            return {"title": source.text.strip()}  # L
        ''', "bad.txt", ["facts", "list", "dict"]),
    "parser-returns-an-object": ('''\
        import sqldom


        class When:
            pass


        @sqldom.parser("**/*.txt")  # L
        def facts(source):  # L
            if source.path == "bad.txt":  # L
                return {"title": "Bad", "when": When()}  # L
            return {"title": source.text.strip()}  # L
        ''', "bad.txt", ["facts", "JSON", "When"]),
    "parser-returns-nan": ('''\
        import sqldom


        @sqldom.parser("**/*.txt")  # L
        def facts(source):  # L
            if source.path == "bad.txt":  # L
                return {"title": "Bad", "score": float("nan")}  # L
            return {"title": source.text.strip()}  # L
        ''', "bad.txt", ["facts", "JSON"]),
    "parser-returns-a-lone-surrogate": ('''\
        import sqldom


        @sqldom.parser("**/*.txt")  # L
        def facts(source):  # L
            if source.path == "bad.txt":  # L
                return {"title": source.data.decode("utf-8", "surrogateescape")}  # L
            return {"title": source.text.strip()}  # L
        ''', "bad.txt", ["facts"]),
    "writer-calls-sys-exit": ('''\
        import sys

        import sqldom


        @sqldom.writer("**/*.txt")
        def shout(doc, site):
            if doc.path == "bad.txt":
                sys.exit(3)  # L
            return doc.text.upper()
        ''', "bad.txt", ["shout", "SystemExit"]),
}


@pytest.mark.parametrize("case", list(TRANSFORM_FAILURES))
def test_a_failing_transform_fails_only_its_step_with_file_and_line(project: Project, case: str) -> None:
    code, bad, fragments = TRANSFORM_FAILURES[case]
    write_build_py(project, code)
    lines = lines_marked(code, "# L")
    project.write("bad.txt", b"bad \xff bytes\n" if "surrogate" in case else b"bad\n")
    project.write("good.txt", "good\n")
    project.write("page.md", "# Page\n")
    before = tree(project.root / "content")

    res = project.build()
    assert res.code == 1, said(res)
    assert_not_a_crash(res)
    assert res.steps.get(bad) == "failed", res.steps
    assert res.steps.get("page.md") == "built", res.steps
    assert project.output("page.html") is not None, "the rest of the build goes on"
    assert project.output("good.txt") is not None
    if bad == "bad.txt":
        assert project.output("bad.txt") is None
    assert res.summary["failed"] == 1

    probs = problems_for(res, bad)
    assert len(probs) == 1, res.problems
    prob = probs[0]
    assert prob["severity"] == "error"
    assert prob["path"] == "build.py", prob
    for fragment in fragments:
        assert fragment.format(line=prob["line"]) in prob["message"], prob["message"]
    assert tree(project.root / "content") == before

    # the human output names the file; a no-op build says it again and still exits 1
    again = human_build(project)
    assert again.returncode == 1, said(again)
    assert re.search(rf"^build\.py(:\d+)?: error: .*{re.escape(fragments[0])}", again.stderr, re.M), again.stderr
    assert_not_a_crash(again)

    # and the line: where the exception was raised, else the function that returned the wrong value
    assert prob["line"] in lines, f"{prob} should name one of the lines {sorted(lines)} of build.py"
    assert f"build.py:{prob['line']}: error:" in again.stderr, again.stderr


def test_print_in_a_transform_does_not_break_the_json_event_stream(project: Project) -> None:
    write_build_py(project, '''\
        import sqldom


        @sqldom.writer("**/*.txt")
        def noisy(doc, site):
            print("debugging", doc.path)
            return doc.data
        ''')
    project.write("a.txt", "a\n")
    proc = project.cli("build", "--json", "-C", str(project.root))
    assert proc.returncode == 0, said(proc)
    for line in proc.stdout.splitlines():
        if line.strip():
            event = json.loads(line)          # SPEC §3: one JSON object per line
            assert isinstance(event, dict) and "event" in event, line
    assert project.output("a.txt") == b"a\n"


# ---- text that is not text --------------------------------------------------------------------------


def test_non_utf8_and_binary_bytes_in_text_documents_are_problems_naming_the_file(project: Project) -> None:
    project.write("latin1.md", b"# Caf\xe9\n\nsecond line \xff\n")
    project.write("latin1.txt", b"Caf\xe9 au lait\n")
    project.write("nul.txt", b"Title line\nbin\x00ary\x01\x02\n")
    project.write("nul.html", b"<p>one</p>\n<p>\x00</p>\n")
    project.write("ok.md", "# Fine\n")
    before = tree(project.root / "content")

    res = project.build()
    assert_not_a_crash(res)
    named = {(p["path"], p["line"]) for p in res.problems}
    assert {("latin1.md", 1), ("latin1.txt", 1), ("nul.txt", 2), ("nul.html", 2)} <= named, res.problems
    errors = [p for p in res.problems if p["severity"] == "error"]
    assert res.code == (1 if errors else 0)
    assert res.steps["ok.md"] == "built"
    assert project.output("ok.html") is not None, "the rest builds"
    assert project.output("nul.txt") == b"Title line\nbin\x00ary\x01\x02\n", "text files are copied byte for byte"
    assert project.output("latin1.txt") == b"Caf\xe9 au lait\n"
    assert "Caf\ufffd" in (project.text("latin1.html") or ""), "bad bytes are shown as U+FFFD"
    assert tree(project.root / "content") == before

    human = human_build(project)
    assert re.search(r"^latin1\.md:1: error: .*UTF-8", human.stderr, re.M), human.stderr
    assert re.search(r"^nul\.txt:2: error: .*NUL", human.stderr, re.M), human.stderr
    assert_not_a_crash(human)


def test_empty_files_build_with_sensible_titles(project: Project) -> None:
    for name in ("blank.md", "void.txt", "nothing.html", "zero.bin", "fm-only.md"):
        project.write(name, "---\n---\n" if name == "fm-only.md" else b"")
    project.write_root("sqldom.yaml", "")
    project.write_root("build.py", "")
    res = project.build()
    assert res.code == 0, said(res)
    assert_not_a_crash(res)
    assert res.problems == []
    assert set(res.steps) == {"blank.md", "void.txt", "nothing.html", "zero.bin", "fm-only.md"}
    titles = dict(project.query("select path, value from facts where name = 'title'"))
    assert {k: json.loads(v) for k, v in titles.items()} == {
        "blank.md": "blank", "void.txt": "void", "nothing.html": "nothing", "fm-only.md": "fm-only"}
    assert "<title>blank</title>" in (project.text("blank.html") or "")
    assert project.output("void.txt") == b"" and project.output("nothing.html") == b""
    assert project.output("zero.bin") == b""


# ---- outputs: two claims, templates leaving build/, file/folder clashes ---------------------------------


def test_a_writer_template_sending_several_steps_to_one_output_names_both(project: Project) -> None:
    write_build_py(project, '''\
        import sqldom


        @sqldom.writer("**/*.txt", output="all.html")
        def every(doc, site):
            return doc.data
        ''')
    for name in ("a.txt", "b.txt", "c.txt"):
        project.write(name, name)
    project.write("page.md", "# Page\n")
    res = project.build()
    assert res.code == 1
    assert_not_a_crash(res)
    losers = {p["step"]: p["message"] for p in res.problems}
    assert set(losers) == {"b.txt", "c.txt"}, res.problems
    for step, msg in losers.items():
        assert "all.html" in msg and "a.txt" in msg and step in msg, msg
    assert project.output("all.html") == b"a.txt"
    assert project.output("page.html") is not None


def test_output_templates_leaving_build_are_refused_and_nothing_is_written_outside(project: Project,
                                                                                  tmp_path: Path) -> None:
    absolute = tmp_path / "x"
    write_build_py(project, f'''\
        import sqldom


        @sqldom.writer("up/*.md", output="../{{stem}}.html")
        def escape_up(doc, site):
            return "escaped"


        @sqldom.writer("deep/*.md", output="{{dir}}../../../{{stem}}.html")
        def escape_deep(doc, site):
            return "escaped"


        @sqldom.writer("abs/*.txt", output={str(absolute)!r})
        def escape_abs(doc, site):
            return "absolute"


        @sqldom.page("../page.html")
        def escape_page(site):
            return "page"
        ''')
    project.write("up/a.md", "# A\n")
    project.write("deep/b.md", "# B\n")
    project.write("abs/c.txt", "c\n")
    project.write("ok.md", "# Fine\n")
    outside_before = sorted(p.name for p in tmp_path.iterdir())

    res = project.build()
    assert res.code in (1, 2), said(res)
    assert_not_a_crash(res)
    text = said(res)
    for step in ("up/a.md", "deep/b.md", "abs/c.txt"):
        assert step in text, f"the refusal names {step}: {text}"
    assert "../page.html" in text
    assert "outside build/" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == outside_before, "nothing written beside the project"
    assert not absolute.exists()
    assert sorted(p.name for p in project.root.iterdir()) == ["build", "build.py", "content", "var"]
    assert not (project.root / "page.html").exists() and not (project.root / "a.html").exists()
    if res.code == 1:
        assert project.output("ok.html") is not None, "exit 1: the rest builds"
        assert set(files(project.root / "build")) == {"ok.html"}


def test_an_output_that_is_also_a_folder_of_other_outputs_is_a_problem_naming_both(project: Project) -> None:
    write_build_py(project, '''\
        import sqldom


        @sqldom.writer("a.txt", output="{stem}")
        def no_extension(doc, site):
            return doc.data
        ''')
    project.write("a.txt", "a\n")                 # -> build/a (a file)
    project.write("a/b.md", "# B\n")              # -> build/a/b.html (needs a folder a/)
    project.write("ok.txt", "ok\n")
    for attempt in range(2):                      # and the next build is not stuck on it
        res = project.build()
        assert res.code == 1, said(res)
        assert_not_a_crash(res)
        assert any("a.txt" in p["message"] + str(p["step"]) and "a/b.md" in p["message"] + str(p["step"])
                   for p in res.problems), (attempt, res.problems)
        assert project.output("ok.txt") == b"ok\n", "the rest builds"


# ---- paths and symlinks leading out of the project -----------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the project with a secret in it."""
    d = tmp_path / "outside"
    (d / "dir").mkdir(parents=True)
    (d / "secret.txt").write_text("TOP SECRET\n")
    (d / "dir" / "also-secret.txt").write_text("TOP SECRET TOO\n")
    return d


def assert_no_secret(project: Project) -> None:
    for path, data in files(project.root / "build").items():
        assert b"TOP SECRET" not in data, f"build/{path} leaks a file from outside the project"
    con = project.db()
    try:
        leaked = [h for h, data in con.execute("select hash, data from blobs") if b"TOP SECRET" in bytes(data)]
    finally:
        con.close()
    assert leaked == [], "the database holds bytes from outside the project"


def test_symlinks_in_content_pointing_outside_are_never_followed(project: Project, outside: Path) -> None:
    project.write("a.txt", "a\n")
    project.write_root("build.py", "# user code\n")
    c = project.root / "content"
    (c / "leak.txt").symlink_to(outside / "secret.txt")                   # absolute, to a file
    (c / "rel-leak.txt").symlink_to(Path("..", "..", "outside", "secret.txt"))   # relative, to a file
    (c / "leakdir").symlink_to(outside / "dir", target_is_directory=True)  # to a folder
    (c / "code.txt").symlink_to(Path("..", "build.py"))                   # inside the project, outside content/
    (c / "passwd.txt").symlink_to("/etc/passwd")
    (c / "alias.txt").symlink_to("a.txt")                                 # inside content/: fine
    outside_before = tree(outside)
    before = tree(c)

    for _ in range(2):
        res = project.build()
        assert res.code in (0, 1), said(res)
        assert_not_a_crash(res)
        built = set(files(project.root / "build"))
        assert built <= {"a.txt", "alias.txt"}, built
        assert "a.txt" in built
        assert_no_secret(project)
        assert not any(p.startswith("leakdir") for (p,) in project.query("select path from sources")), \
            "nothing under a symlinked folder outside the project is a source"
    assert tree(outside) == outside_before
    assert tree(c) == before


def test_reads_outside_content_through_site_or_links_see_nothing(project: Project, outside: Path) -> None:
    write_build_py(project, '''\
        import sqldom


        @sqldom.writer("probe.txt")
        def probe(doc, site):
            seen = [site.read(p) for p in ("../build.py", "../../outside/secret.txt", "/etc/passwd", "../var/build.db")]
            return repr(seen)
        ''')
    project.write("probe.txt", "probe\n")
    project.write("doc.md", "# Doc\n\n[secret](../../outside/secret.txt)\n")
    res = project.build()
    assert res.code == 1, said(res)                       # the link is an error problem
    assert_not_a_crash(res)
    assert project.text("probe.txt") == "[None, None, None, None]"
    probs = problems_for(res, "doc.md")
    assert probs and probs[0]["line"] == 3 and "outside content/" in probs[0]["message"], res.problems
    assert_no_secret(project)


def test_a_symlinked_folder_inside_build_is_not_written_through(project: Project, outside: Path) -> None:
    project.write("posts/a.txt", "a\n")
    project.write("b.txt", "b\n")
    (project.root / "build").mkdir()
    (project.root / "build" / "posts").symlink_to(outside / "dir", target_is_directory=True)
    outside_before = tree(outside)

    res = project.build()
    assert res.code == 0, said(res)
    assert_not_a_crash(res)
    assert tree(outside) == outside_before, "sqldom wrote outside the project through build/posts"
    assert not (project.root / "build" / "posts").is_symlink()
    assert files(project.root / "build") == {"posts/a.txt": b"a\n", "b.txt": b"b\n"}


def test_a_symlink_inside_build_where_an_output_goes_is_replaced_not_followed(project: Project,
                                                                             outside: Path) -> None:
    project.write("a.txt", "a\n")
    project.write("b.txt", "b\n")
    (project.root / "build").mkdir()
    (project.root / "build" / "a.txt").symlink_to(outside / "dir", target_is_directory=True)
    (project.root / "build" / "b.txt").symlink_to(outside / "secret.txt")
    outside_before = tree(outside)

    res = project.build()
    assert res.code == 0, said(res)
    assert_not_a_crash(res)
    assert tree(outside) == outside_before
    assert tree(project.root / "build") == {"a.txt": b"a\n", "b.txt": b"b\n"}


def test_symlink_loops_and_special_files_do_not_stop_the_build(project: Project) -> None:
    project.write("a.txt", "a\n")
    project.write("sub/b.txt", "b\n")
    c = project.root / "content"
    (c / "loop").symlink_to(".", target_is_directory=True)              # content/loop -> content/
    (c / "sub" / "up").symlink_to("..", target_is_directory=True)       # content/sub/up -> content/
    (c / "root").symlink_to(Path("..", "content"), target_is_directory=True)
    (c / "x.txt").symlink_to("y.txt")                                    # x -> y -> x
    (c / "y.txt").symlink_to("x.txt")
    (c / "self.txt").symlink_to("self.txt")
    os.mkfifo(c / "pipe.txt")                                            # reading it would block forever
    sock = socket.socket(socket.AF_UNIX)
    try:
        with contextlib.chdir(c):
            sock.bind("sock.txt")
        before = tree(c)
        for _ in range(2):
            proc = project.cli("build", "--json", "-C", str(project.root), timeout=60)
            assert proc.returncode == 0, said(proc)
            assert_not_a_crash(proc)
            assert files(project.root / "build") == {"a.txt": b"a\n", "sub/b.txt": b"b\n"}
        assert tree(c) == before
    finally:
        sock.close()


# ---- files that vanish or change while a build runs ----------------------------------------------------

BIG = 9 * MiB   # above the size sqldom keeps in memory during a scan (streamed, read again later)


def test_files_vanishing_after_the_scan_do_not_stop_the_build(project: Project, tmp_path: Path) -> None:
    project.write("a.txt", "a\n")
    project.write("small.txt", "gone soon\n")
    project.write("big.bin", b"v" * BIG)
    (project.root / "vanish-once").touch()
    # build.py runs right after the scan: the deletion lands between the scan and the record
    write_build_py(project, '''\
        from pathlib import Path

        ROOT = Path(__file__).parent
        if (ROOT / "vanish-once").exists():
            (ROOT / "vanish-once").unlink()
            for name in ("small.txt", "big.bin"):
                (ROOT / "content" / name).unlink()
        ''')
    res = project.build()
    assert res.code in (0, 1), said(res)
    assert_not_a_crash(res)
    assert project.output("a.txt") == b"a\n", "the rest builds"
    assert integrity(project) == "ok"

    after = project.build()
    assert after.code == 0, said(after)
    assert_not_a_crash(after)
    assert files(project.root / "build") == clean_build(project, tmp_path / "clean")
    assert project.build().steps == {}, "then a no-op"


def test_a_file_changing_after_the_scan_never_poisons_the_cache(project: Project, tmp_path: Path) -> None:
    project.write("a.txt", "a\n")
    project.write("small.txt", "small, first\n")
    project.write("big.bin", b"1" * BIG)
    (project.root / "change-once").touch()
    write_build_py(project, '''\
        from pathlib import Path

        ROOT = Path(__file__).parent
        if (ROOT / "change-once").exists():
            (ROOT / "change-once").unlink()
            (ROOT / "content" / "small.txt").write_text("small, second\\n")
            (ROOT / "content" / "big.bin").write_bytes(b"2" * (9 << 20))
        ''')
    res = project.build()
    assert res.code in (0, 1), said(res)
    assert_not_a_crash(res)

    caught_up = project.build()
    assert caught_up.code == 0, said(caught_up)
    assert files(project.root / "build") == files(project.root / "content"), "the next build catches up"

    # the first version comes back: what is restored must be that version's output
    project.write("big.bin", b"1" * BIG)
    project.write("small.txt", "small, first\n")
    back = project.build()
    assert back.code == 0, said(back)
    got = project.output("big.bin") or b""
    assert got == b"1" * BIG, f"build/big.bin holds {got[:8]!r}... for a source of b'11111111'..."
    assert files(project.root / "build") == files(project.root / "content")
    assert_blobs_match_their_hashes(project)


def test_files_churning_during_builds_converge_to_a_clean_build(project: Project, tmp_path: Path) -> None:
    names = [f"d{i % 6}/f{i:03}.{'md' if i % 3 == 0 else 'txt'}" for i in range(120)]
    for n in names:
        project.write(n, f"# {n}\n\n" + "word " * 100)
    content = project.root / "content"
    stop = threading.Event()

    def churn() -> None:
        rng = random.Random(6)
        while not stop.is_set():
            p = content / rng.choice(names)
            with contextlib.suppress(OSError):
                if rng.random() < 0.45:
                    p.unlink()
                elif rng.random() < 0.9:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(f"# changed {rng.random()}\n")
                else:
                    shutil.rmtree(content / f"d{rng.randrange(6)}")

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(2):
            res = project.build()
            assert res.code in (0, 1), said(res)
            assert_not_a_crash(res)
    finally:
        stop.set()
        worker.join()
    final = project.build()
    assert final.code in (0, 1), said(final)
    assert integrity(project) == "ok"
    assert files(project.root / "build") == clean_build(project, tmp_path / "clean")
    assert_blobs_match_their_hashes(project)


def test_an_unreadable_file_is_a_problem_naming_it_and_the_rest_builds(project: Project) -> None:
    project.write("a.txt", "a\n")
    locked = project.write("locked.txt", "you cannot read me\n")
    locked.chmod(0)
    try:
        proc = sqldom_as_user(project, "build", "--json")
    finally:
        locked.chmod(0o644)
    assert_not_a_crash(proc)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    probs = [e for e in events if e["event"] == "problem" and "locked.txt" in f"{e['path']} {e['message']}"]
    assert probs, f"no problem names locked.txt: {said(proc)}"
    assert proc.returncode == (1 if any(p["severity"] == "error" for p in probs) else 0), said(proc)
    assert project.output("a.txt") == b"a\n", "the rest builds"


def test_a_read_only_build_folder_fails_clearly(project: Project) -> None:
    project.write("a.txt", "a\n")
    assert project.build().code == 0
    project.write("b.txt", "b\n")
    build = project.root / "build"
    build.chmod(0o555)
    try:
        proc = sqldom_as_user(project, "build")
    finally:
        build.chmod(0o755)
    assert proc.returncode in (1, 2), said(proc)
    assert re.search(r"build/|b\.txt", proc.stderr) and re.search(r"permission|read-only", proc.stderr, re.I), \
        proc.stderr
    assert_not_a_crash(proc)
    assert integrity(project) == "ok"
    res = project.build()
    assert res.code == 0, said(res)
    assert files(build) == {"a.txt": b"a\n", "b.txt": b"b\n"}


def test_a_read_only_var_folder_is_not_called_corrupt(project: Project) -> None:
    project.write("a.txt", "a\n")
    assert project.build().code == 0
    project.write("b.txt", "b\n")
    var, db = project.root / "var", project.root / "var" / "build.db"
    before = db.read_bytes()
    var.chmod(0o555)
    db.chmod(0o444)
    try:
        proc = sqldom_as_user(project, "build")
    finally:
        var.chmod(0o755)
        db.chmod(0o644)
    assert proc.returncode == 2, said(proc)
    assert "var/" in proc.stderr and re.search(r"permission|read-?only|not writable", proc.stderr, re.I), proc.stderr
    assert "corrupt" not in proc.stderr, f"a permission problem is not a corrupt database: {proc.stderr}"
    assert_not_a_crash(proc)
    assert db.read_bytes() == before


# ---- big files, odd names --------------------------------------------------------------------------------

MEASURE = """\
import json, resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "sqldom", "build", "-C", sys.argv[1]], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": proc.returncode, "peak": peak, "stdout": proc.stdout, "stderr": proc.stderr}))
"""


def peak_rss_of_a_build(root: Path) -> tuple[int, dict[str, Any]]:
    """Peak RSS (bytes) of one ``sqldom build`` subprocess, measured from a fresh helper process."""
    helper = subprocess.run([sys.executable, "-c", MEASURE, str(root)], capture_output=True, text=True,
                            timeout=600, env=env())
    assert helper.returncode == 0, helper.stderr
    out = json.loads(helper.stdout)
    peak = out["peak"] if sys.platform == "darwin" else out["peak"] * 1024   # Linux: KiB
    return peak, out


def file_hash(path: Path) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.slow
def test_a_200_mib_file_builds_without_memory_growing_with_its_size(project: Project) -> None:
    size = 200 * MiB
    limit = int(size * 2.5) + 150 * MiB
    project.write("a.txt", "a\n")
    huge = project.root / "content" / "huge.bin"
    block = os.urandom(MiB)
    try:
        with open(huge, "wb") as f:
            for i in range(size // MiB):
                f.write(block[i:] + block[:i])
        peak_cold, out = peak_rss_of_a_build(project.root)
        assert out["code"] == 0, out
        assert_not_a_crash(subprocess.CompletedProcess([], 0, out["stdout"], out["stderr"]))
        assert file_hash(project.root / "build" / "huge.bin") == file_hash(huge)

        (project.root / "build" / "huge.bin").unlink()                    # restored from the database
        peak_restore, out = peak_rss_of_a_build(project.root)
        assert out["code"] == 0, out
        assert file_hash(project.root / "build" / "huge.bin") == file_hash(huge)
        print(f"peak RSS for a {size // MiB} MiB file: cold build {peak_cold / MiB:.0f} MiB, "
              f"restore {peak_restore / MiB:.0f} MiB (limit {limit / MiB:.0f} MiB)")
        assert peak_restore < limit, f"restore: peak RSS {peak_restore / MiB:.0f} MiB > {limit / MiB:.0f} MiB"
        assert peak_cold < limit, f"cold build: peak RSS {peak_cold / MiB:.0f} MiB > {limit / MiB:.0f} MiB"
    finally:
        shutil.rmtree(project.root, ignore_errors=True)   # do not keep 600 MB in pytest's tmp dirs


def test_unicode_and_spaces_in_names_build_and_url_encoded_links_work(project: Project) -> None:
    project.write("naïve café/über doc.md", "# Über\n\nBody.\n")
    project.write("my notes.txt", "My notes\n")
    project.write("index.md", "# Index\n\n"
                              "[](na%C3%AFve%20caf%C3%A9/%C3%BCber%20doc.md)\n\n"
                              "[angle](<naïve café/über doc.md>)\n\n"
                              "[notes](my%20notes.txt)\n\n"
                              '<a href="naïve%20café/über%20doc.md"></a>\n')
    res = project.build()
    assert res.code == 0, said(res)
    assert_not_a_crash(res)
    assert res.problems == []
    assert project.text("naïve café/über doc.html") is not None
    assert project.output("my notes.txt") == b"My notes\n"
    html = project.text("index.html") or ""
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert len(hrefs) == 4, html
    for href in hrefs:
        assert (project.root / "build" / unquote(href)).is_file(), f"{href} does not lead to an output"
    assert ">Über</a>" in html, "the empty link got the target's title"

    proc = project.cli("explain", "naïve café/über doc.md", "-C", str(project.root))
    assert proc.returncode == 0, said(proc)
    assert "naïve café/über doc.html" in proc.stdout


def test_a_file_name_that_is_not_utf8_is_a_problem_naming_it_and_the_rest_builds(project: Project) -> None:
    project.write("a.txt", "a\n")
    content = bytes(project.root / "content")
    with open(content + b"/caf\xe9.txt", "wb") as f:                  # a Latin-1 name, as old archives have
        f.write(b"latin-1 name\n")
    res = project.build()
    assert res.code in (0, 1), said(res)
    assert_not_a_crash(res)
    assert project.output("a.txt") == b"a\n", "the rest builds"
    assert any("caf" in f"{p['path']} {p['message']}" for p in res.problems), \
        f"no problem names the file: {said(res)}"
    assert sorted(os.listdir(content)) == [b"a.txt", b"caf\xe9.txt"], "the file is left alone"


# ---- var/build.db: corrupt, foreign, newer -------------------------------------------------------------


def test_a_corrupt_database_is_refused_with_a_hint_and_nothing_is_lost(project: Project, tmp_path: Path) -> None:
    for i in range(1, 201):
        project.write(f"d{i}.md", f"---\ntitle: Doc {i}\n---\n\n[](d{i % 200 + 1}.md)\n\nText {i}.\n")
    assert project.build().code == 0
    db = project.root / "var" / "build.db"
    assert not (project.root / "var" / "build.db-wal").exists() or \
        (project.root / "var" / "build.db-wal").stat().st_size == 0
    data = bytearray(db.read_bytes())
    third = len(data) // 3
    rng = random.Random(6)
    data[third: 2 * third] = bytes(rng.randrange(256) for _ in range(third))   # the header page survives
    db.write_bytes(bytes(data))
    corrupt = db.read_bytes()
    content_before, build_before = tree(project.root / "content"), tree(project.root / "build")

    status = project.cli("status", "-C", str(project.root))
    assert_not_a_crash(status)
    assert status.returncode in (0, 2), said(status)
    assert db.read_bytes() == corrupt, "status only reads"
    for args in (("build",), ("build", "--full")):
        proc = project.cli(*args, "-C", str(project.root))
        assert_not_a_crash(proc)
        assert tree(project.root / "content") == content_before
        if proc.returncode == 2:          # refused: says which file and what to do, and leaves it alone
            assert "var/build.db" in proc.stderr and "hint:" in proc.stderr, proc.stderr
            assert db.read_bytes() == corrupt
            assert tree(project.root / "build") == build_before
        else:                             # or recovered: the corrupt file kept aside, a correct build
            assert proc.returncode == 0, said(proc)
            kept = [p for p in (project.root / "var").rglob("*") if p.is_file() and p.read_bytes() == corrupt]
            assert kept, "the corrupt database was not kept"
            assert files(project.root / "build") == clean_build(project, tmp_path / f"clean-{args[-1]}")
            break


def write_foreign_wal_database(db: Path) -> None:
    """Another program's SQLite file in WAL mode, with committed pages still in its -wal file."""
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("pragma journal_mode=wal")
    con.execute("pragma wal_autocheckpoint=0")
    con.execute("create table invoices (id integer primary key, total real)")
    con.executemany("insert into invoices (total) values (?)", [(i * 1.5,) for i in range(500)])
    con.commit()
    shutil.copy(db, db.with_name("keep.db"))
    shutil.copy(db.with_name(db.name + "-wal"), db.with_name("keep.db-wal"))
    con.close()
    os.replace(db.with_name("keep.db"), db)
    os.replace(db.with_name("keep.db-wal"), db.with_name(db.name + "-wal"))


DATABASES = {
    "foreign-sqlite": (write_foreign_wal_database, "not a sqldom database"),
    "not-sqlite": (lambda db: (db.parent.mkdir(parents=True, exist_ok=True),
                               db.write_bytes(b"my diary, not a database\n" * 40)), "not a SQLite database"),
}


@pytest.mark.parametrize("kind", list(DATABASES))
def test_a_database_of_another_program_is_left_untouched_byte_for_byte(project: Project, kind: str) -> None:
    make, words = DATABASES[kind]
    project.write("a.txt", "a\n")
    db = project.root / "var" / "build.db"
    make(db)
    before = {p.name: p.read_bytes() for p in (project.root / "var").iterdir() if p.name.startswith("build.db")}
    for args in (("build",), ("status",), ("explain", "a.txt"), ("build", "--full")):
        proc = project.cli(*args, "-C", str(project.root))
        assert proc.returncode == 2, (args, said(proc))
        assert f"var/build.db: {words}" in proc.stderr and "hint:" in proc.stderr, proc.stderr
        assert_not_a_crash(proc)
    after = {p.name: p.read_bytes() for p in (project.root / "var").iterdir() if p.name in before}
    assert after == before
    assert files(project.root / "build") == {}


def test_a_database_from_a_newer_sqldom_is_refused_by_every_command(project: Project) -> None:
    project.write("a.txt", "a\n")
    assert project.build().code == 0
    con = project.db()
    con.execute("update alembic_version set version_num = '9999'")
    con.commit()
    con.close()
    db = project.root / "var" / "build.db"
    before = db.read_bytes()
    for args in (("build",), ("status",), ("explain", "a.txt")):
        proc = project.cli(*args, "-C", str(project.root))
        assert proc.returncode == 2, (args, said(proc))
        assert "newer" in proc.stderr and "9999" in proc.stderr and "hint:" in proc.stderr, proc.stderr
        assert_not_a_crash(proc)
    assert db.read_bytes() == before


# ---- the command line ----------------------------------------------------------------------------------

USAGE = {
    "unknown-option": (("build", "--no-such-flag"), "--no-such-flag"),
    "misspelt-option": (("build", "--fulll"), "Did you mean '--full'"),
    "unknown-command": (("biuld",), "Did you mean 'build'"),
    "bad-value": (("build", "-j", "0"), "-j"),
    "option-of-another-command": (("status", "--full"), "--full"),
    "missing-argument": (("explain",), "PATH"),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_bad_usage_is_exit_2_and_touches_nothing(project: Project, case: str) -> None:
    args, words = USAGE[case]
    project.write("a.txt", "a\n")
    proc = project.cli(*args, "-C", str(project.root)) if case != "unknown-command" else project.cli(*args)
    assert proc.returncode == 2, said(proc)
    assert words in proc.stderr, proc.stderr
    assert_not_a_crash(proc)
    assert sorted(p.name for p in project.root.iterdir()) == ["content"]


def test_an_unknown_step_for_explain_is_exit_2_with_a_suggestion(project: Project) -> None:
    project.write("a.txt", "a\n")
    project.write("guide/intro.md", "# Intro\n")
    early = project.cli("explain", "a.txt", "-C", str(project.root))
    assert early.returncode == 2 and "sqldom build" in early.stderr, said(early)
    assert project.build().code == 0
    for asked, hint in (("nope.md", "hint:"), ("guide/intro.mdd", "did you mean 'guide/intro.md'")):
        proc = project.cli("explain", asked, "-C", str(project.root))
        assert proc.returncode == 2, said(proc)
        assert asked in proc.stderr and hint in proc.stderr, proc.stderr
        assert_not_a_crash(proc)


@pytest.mark.parametrize("command", [("build",), ("status",), ("explain", "a.txt"), ("clean",), ("watch",)])
def test_a_missing_or_wrong_C_directory_is_exit_2(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    for root in (missing, a_file):
        proc = cli_in(tmp_path, *command, "-C", str(root), timeout=60)
        assert proc.returncode == 2, (command, root, said(proc))
        assert str(root) in proc.stderr, proc.stderr
        assert_not_a_crash(proc)
    assert not missing.exists() and not (tmp_path / "no").exists()
    assert a_file.read_text() == "not a folder\n"


@pytest.mark.parametrize("folder", ["content", "build", "var"])
def test_a_project_folder_that_is_a_file_is_exit_2_and_the_file_is_kept(tmp_path: Path, folder: str) -> None:
    root = tmp_path / "proj"
    (root / "content").mkdir(parents=True)
    (root / "content" / "a.txt").write_text("a\n")
    if folder == "content":
        shutil.rmtree(root / "content")
    (root / folder).write_text("my notes\n")
    proc = cli_in(root, "build")
    assert proc.returncode == 2, said(proc)
    assert f"{folder}: {folder} is a file, not a folder" in proc.stderr and "hint:" in proc.stderr, proc.stderr
    assert_not_a_crash(proc)
    assert (root / folder).read_text() == "my notes\n"


def test_clean_in_a_folder_that_is_not_a_sqldom_project_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "build").mkdir(parents=True)
    (home / "var" / "mail").mkdir(parents=True)
    (home / "build" / "main.o").write_bytes(b"\x7fELF object\n")
    (home / "var" / "mail" / "inbox").write_text("an important letter\n")
    before = tree(home)
    proc = cli_in(tmp_path, "clean", "-C", str(home))
    assert_not_a_crash(proc)
    assert tree(home) == before, f"sqldom clean deleted files it did not create: {said(proc)}"


# ---- a full disk -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (root only); the test is skipped, with the reason, when it cannot be."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root; the RLIMIT_FSIZE test covers the full disk instead")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the RLIMIT_FSIZE test covers it")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def grow(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=256m", str(where)], check=True, capture_output=True)


FULL = re.compile(r"no space|disk is full|disk full|space left|too large|file size limit", re.I)


def assert_fails_clearly(proc: Any) -> None:
    assert proc.returncode in (1, 2), said(proc)
    assert FULL.search(proc.stderr), f"the message does not say the disk is full: {proc.stderr}"
    assert_not_a_crash(proc)


def no_partial_files(project: Project) -> None:
    left = [p for p in tree(project.root / "build") if Path(p).name.startswith(".sqldom-tmp-")]
    assert left == [], f"partial files left in build/: {left}"


def incompressible(project: Project, count: int, size: int) -> None:
    rng = random.Random(count)
    for i in range(count):
        project.write(f"f{i:02}.bin", rng.randbytes(size))
    project.write("page.md", "# Page\n")


def test_a_full_disk_under_var_fails_clearly_and_the_database_stays_consistent(project: Project,
                                                                               tmp_path: Path) -> None:
    incompressible(project, 30, 64 * 1024)
    before = tree(project.root / "content")
    with tmpfs(project.root / "var", "1m") as var:
        proc = human_build(project)
        assert_fails_clearly(proc)
        assert tree(project.root / "content") == before
        if (var / "build.db").exists():
            assert integrity(project) == "ok"
        grow(var)
        res = project.build()
        assert res.code == 0, said(res)
        assert files(project.root / "build") == clean_build(project, tmp_path / "clean")
        assert project.build().steps == {}


def test_a_full_disk_under_build_fails_clearly_and_leaves_no_partial_file(project: Project,
                                                                          tmp_path: Path) -> None:
    incompressible(project, 20, 100_000)
    with tmpfs(project.root / "build", "1m") as build:
        proc = human_build(project)
        assert_fails_clearly(proc)
        no_partial_files(project)
        assert integrity(project) == "ok"
        grow(build)
        res = project.build()
        assert res.code == 0, said(res)
        no_partial_files(project)
        assert files(build) == clean_build(project, tmp_path / "clean")
        assert project.build().steps == {}


def limited(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_file_size_limit_fails_clearly_and_the_next_build_equals_a_clean_one(project: Project,
                                                                              tmp_path: Path) -> None:
    incompressible(project, 10, 1000)
    project.write("big.bin", random.Random(1).randbytes(3 * MiB))
    before = tree(project.root / "content")
    proc = subprocess.run([sys.executable, "-m", "sqldom", "build", "-C", str(project.root)],
                          capture_output=True, text=True, timeout=120, env=env(), preexec_fn=lambda: limited(MiB))
    assert_fails_clearly(proc)
    assert tree(project.root / "content") == before
    no_partial_files(project)
    assert integrity(project) == "ok"
    res = project.build()
    assert res.code == 0, said(res)
    assert files(project.root / "build") == clean_build(project, tmp_path / "clean")
    assert project.build().steps == {}


# ---- a bug in sqldom --------------------------------------------------------------------------------------


def test_an_internal_error_is_reported_as_a_bug_with_the_traceback_saved_under_var(project: Project,
                                                                                  tmp_path: Path) -> None:
    project.write("a.txt", "a\n")
    project.write("doc.md", "# Doc\n")
    # build.py is user code: replacing an engine function is the one way to make sqldom fail from outside
    write_build_py(project, '''\
        import sqldom.mirror


        def _explode(*args, **kwargs):
            raise RuntimeError("injected fault in the mirror")


        sqldom.mirror.mirror = _explode
        ''')
    proc = human_build(project)
    assert proc.returncode != 0, said(proc)
    assert_no_traceback(proc)
    assert "internal error" in proc.stderr and "bug" in proc.stderr, proc.stderr
    assert "RuntimeError: injected fault in the mirror" in proc.stderr
    crashes = sorted((project.root / "var").glob("crash-*.txt"))
    assert len(crashes) == 1, crashes
    saved = crashes[0].read_text()
    assert saved.startswith("Traceback") and "RuntimeError: injected fault in the mirror" in saved
    assert str(crashes[0]) in proc.stderr or crashes[0].name in proc.stderr, "the message says where it is"
    assert integrity(project) == "ok"

    (project.root / "build.py").unlink()
    res = project.build()
    assert res.code == 0, said(res)
    assert files(project.root / "build") == clean_build(project, tmp_path / "clean")


def test_when_var_cannot_take_the_crash_report_the_message_still_leads_to_the_traceback(project: Project) -> None:
    project.write("a.txt", "a\n")
    assert project.build().code == 0
    write_build_py(project, '''\
        import sqldom.mirror


        def _explode(*args, **kwargs):
            raise RuntimeError("injected fault in the mirror")


        sqldom.mirror.mirror = _explode
        ''')
    var = project.root / "var"
    for name in ("build.db-wal", "build.db-shm"):      # the database stays writable; var/ takes no new file
        (var / name).touch()
    var.chmod(0o555)
    try:
        proc = sqldom_as_user(project, "build")
    finally:
        var.chmod(0o755)
    assert proc.returncode != 0, said(proc)
    assert "internal error" in proc.stderr and "RuntimeError: injected fault in the mirror" in proc.stderr
    assert_no_traceback(proc)
    named = [Path(w) for w in re.findall(r"(/\S+crash-\S+\.txt)", proc.stderr)]
    assert named, f"the message does not say where the traceback is: {proc.stderr}"
    assert named[0].is_file(), f"the message points at {named[0]}, which does not exist: the traceback is lost"
    assert "injected fault in the mirror" in named[0].read_text()
