"""``sqldom watch`` end to end (issue 3): a real ``python -m sqldom watch --json`` subprocess driven through
plain edits, editor-style atomic saves, ``sed -i``, deletions, renames, new folders, a broken and then
fixed ``build.py`` / ``sqldom.yaml`` / transform, a bulk change of 500 files, the project lock, signals,
and changes under build/ and var/ that it must ignore.

Each test runs its own project in ``tmp_path`` and its own watch process (see tests/support/watch.py).
After each change the test waits for a summary after which the outputs on disk are right (a change may
be split over several batches), then asserts the outputs and which steps ran.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.project import Project, tables
from tests.support.watch import Batch, WatchProcess

TRAILING = 0.4   # seconds to collect trailing batches of a change after its outputs are right


# ---- helpers ---------------------------------------------------------------------------------------------

def make(tmp_path: Path, files: dict[str, str], build_py: str | None = None,
         yaml: str | None = None) -> Project:
    project = Project(tmp_path / "proj")
    for rel, text in files.items():
        project.write(rel, text)
    if build_py is not None:
        project.write_root("build.py", build_py)
    if yaml is not None:
        project.write_root("sqldom.yaml", yaml)
    return project


def html_has(project: Project, out: str, text: str) -> bool:
    html = project.text(out)
    return html is not None and text in html


def absent(project: Project, out: str) -> bool:
    return not (project.root / "build" / out).exists()


def build_files(project: Project) -> set[str]:
    return set(project.outputs())


def settled(w: WatchProcess, batch: Batch) -> Batch:
    """``batch`` plus whatever trailing batches arrive shortly after it."""
    batch.extend(w.quiet(TRAILING))
    return batch


def assert_no_failures(batch: Batch) -> None:
    for s in batch.summaries:
        assert s["failed"] == 0 and s["errors"] == 0, list(batch)


def replace_atomically(path: Path, text: str, tmp_name: str) -> None:
    """Write ``tmp_name`` in the same folder, then rename it onto ``path`` (most editors' safe save)."""
    tmp = path.parent / tmp_name
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def integrity(project: Project) -> str:
    return project.query("pragma integrity_check")[0][0]


def md(title: str, body: str) -> str:
    return f"# {title}\n\n{body}\n"


# ---- 1. plain edits --------------------------------------------------------------------------------------

def test_plain_edit_rebuilds_only_that_document(tmp_path: Path) -> None:
    project = make(tmp_path, {"a.md": md("A", "first text"), "b.md": md("B", "see [A](a.md)"),
                              "notes/c.txt": "C\nplain\n"})
    with WatchProcess(project.root) as w:
        first = w.start()
        assert first.steps == {"a.md": "built", "b.md": "built", "notes/c.txt": "built"}
        assert build_files(project) == {"a.html", "b.html", "notes/c.txt"}
        b_before = project.output("b.html")

        project.write("a.md", md("A", "second text"))           # open, truncate, write: a plain save
        batch = settled(w, w.until(lambda: html_has(project, "a.html", "second text")))
        assert batch.executed == {"a.md"}, list(batch)
        assert batch.step_counts() == {"a.md": 1}
        assert_no_failures(batch)
        assert "first text" not in (project.text("a.html") or "")
        assert project.output("b.html") == b_before           # only a's body changed: b did not run
        assert build_files(project) == {"a.html", "b.html", "notes/c.txt"}

        # ten saves in quick succession: the last one wins, none is lost
        for i in range(10):
            project.write("a.md", md("A", f"rapid save {i}"))
            time.sleep(0.02)
        batch = settled(w, w.until(lambda: html_has(project, "a.html", "rapid save 9")))
        assert batch.executed == {"a.md"}, list(batch)
        assert_no_failures(batch)

        # another document: only its step runs
        project.write("notes/c.txt", "C2\nplain\n")
        batch = settled(w, w.until(lambda: project.output("notes/c.txt") == b"C2\nplain\n"))
        assert batch.executed == {"notes/c.txt"}, list(batch)
        assert tables(project).sources()["notes/c.txt"] is not None
        assert w.alive()
        assert w.stop(signal.SIGINT) == 0


# ---- 2 and 3. editor-style saves, sed -i, same size with the old mtime ------------------------------------

def test_atomic_saves_sed_and_restored_mtime_are_all_seen(tmp_path: Path) -> None:
    project = make(tmp_path, {"a.md": md("A", "version 0"), "b.md": md("B", "other")})
    source = project.root / "content" / "a.md"
    expected = {"a.html", "b.html"}
    with WatchProcess(project.root) as w:
        w.start()
        b_before = project.output("b.html")

        def saved(version: str, how: str) -> None:
            batch = settled(w, w.until(lambda: html_has(project, "a.html", version), what=f"{how}: {version}"))
            assert batch.step_counts() == {"a.md": 1}, f"{how}: a.md must run exactly once: {list(batch)}"
            assert batch.steps == {"a.md": "built"}, how
            assert batch.deleted == set(), f"{how}: a.html must never be withdrawn: {list(batch)}"
            assert_no_failures(batch)
            assert build_files(project) == expected, f"{how}: temp names became outputs"
            assert project.output("b.html") == b_before
            assert tables(project).steps() == {"a.md", "b.md"}, f"{how}: temp names became steps"

        # generic safe save: a dot-named temp file in the same folder, renamed over the source
        replace_atomically(source, md("A", "version 1"), ".a.md.tmp1234")
        saved("version 1", "dot temp + rename")

        # vim (backupcopy=no, writebackup): probe file 4913, swap file, original renamed to a.md~,
        # the new a.md written, the backup removed
        probe = source.parent / "4913"
        probe.write_bytes(b"")
        probe.unlink()
        swap = source.parent / ".a.md.swp"
        swap.write_bytes(b"b0VIM 9.0" + b"\0" * 200)
        os.rename(source, source.parent / "a.md~")
        source.write_text(md("A", "version 2"), encoding="utf-8")
        (source.parent / "a.md~").unlink()
        saved("version 2", "vim")
        swap.unlink()
        settled(w, Batch())   # a removed swap file is no change either
        assert build_files(project) == expected

        # emacs: lock symlink .#a.md, auto-save #a.md#, backup a.md~ kept after the save
        lock = source.parent / ".#a.md"
        os.symlink("user@host.1234:1700000000", lock)
        (source.parent / "#a.md#").write_text(md("A", "autosave"), encoding="utf-8")
        shutil.copy2(source, source.parent / "a.md~")
        replace_atomically(source, md("A", "version 3"), ".a.md.emacs-tmp")
        (source.parent / "#a.md#").unlink()
        lock.unlink()
        saved("version 3", "emacs")
        assert (source.parent / "a.md~").exists()          # the backup stays, and stays ignored

        # JetBrains "safe write": a.md___jb_tmp___ written, a.md -> a.md___jb_old___, tmp -> a.md, old removed
        tmp = source.parent / "a.md___jb_tmp___"
        tmp.write_text(md("A", "version 4"), encoding="utf-8")
        os.rename(source, source.parent / "a.md___jb_old___")
        os.rename(tmp, source)
        (source.parent / "a.md___jb_old___").unlink()
        saved("version 4", "jetbrains safe write")

        # real GNU sed -i (a temp file sedXXXXXX in the same folder, renamed over a.md)
        if shutil.which("sed"):
            subprocess.run(["sed", "-i", "s/version 4/version 5/", str(source)], check=True, timeout=10)
            saved("version 5", "sed -i")
        else:  # pragma: no cover - Debian always has sed; emulate it
            replace_atomically(source, md("A", "version 5"), "sedAb12Cd")
            saved("version 5", "sed -i (emulated)")

        # the same size, and the old mtime put back (cp -p, touch -r, rsync -t)
        before = os.stat(source)
        text = source.read_text(encoding="utf-8")
        new = text.replace("version 5", "version 6")
        assert len(new) == len(text)
        source.write_text(new, encoding="utf-8")
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(source)
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        saved("version 6", "same size, mtime restored")

        # and the same again through a temp file renamed over it (new inode, old mtime)
        before = os.stat(source)
        tmp = source.parent / ".a.md.rsync"
        tmp.write_text(new.replace("version 6", "version 7"), encoding="utf-8")
        os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(tmp, source)
        saved("version 7", "rsync -t style rename with the old mtime")

        assert w.stop(signal.SIGTERM) == 0


# ---- 4. deletion and restore -----------------------------------------------------------------------------

def test_deletion_withdraws_output_and_reports_the_broken_link_until_restored(tmp_path: Path) -> None:
    a_text = md("A", "the target")
    project = make(tmp_path, {"a.md": a_text, "b.md": "# B\n\nsee [the target](a.md)\n",
                              "old/x.md": md("X", "x"), "old/y.txt": "Y\n", "keep.md": md("K", "k")})
    with WatchProcess(project.root) as w:
        first = w.start()
        assert first.problems == []
        assert 'href="a.html"' in (project.text("b.html") or "")

        project.delete("a.md")
        batch = settled(w, w.until(lambda: absent(project, "a.html")))
        assert {"event": "deleted", "path": "a.html", "step": "a.md"} in batch, list(batch)
        assert batch.executed == {"b.md"}, list(batch)      # b reads a: it runs again and links nowhere
        problems = [p for p in batch.problems if p["step"] == "b.md"]
        assert problems, list(batch)
        assert problems[-1]["path"] == "b.md" and problems[-1]["line"] == 3 and problems[-1]["severity"] == "error"
        assert "a.md" in problems[-1]["message"]
        assert batch.summaries[-1]["errors"] == 1
        assert build_files(project) == {"b.html", "keep.html", "old/x.html", "old/y.txt"}
        assert "a.md" not in tables(project).steps()

        project.write("a.md", a_text)
        batch = settled(w, w.until(lambda: html_has(project, "a.html", "the target")
                                   and 'href="a.html"' in (project.text("b.html") or "")))
        assert batch.problems == [], list(batch)
        assert batch.summaries[-1]["errors"] == 0, list(batch)
        assert set(batch.steps) == {"a.md", "b.md"}
        assert tables(project).problems() == []
        assert build_files(project) == {"a.html", "b.html", "keep.html", "old/x.html", "old/y.txt"}

        # a whole folder removed at once
        shutil.rmtree(project.root / "content" / "old")
        batch = settled(w, w.until(lambda: absent(project, "old/x.html") and absent(project, "old/y.txt")))
        assert batch.deleted == {"old/x.html", "old/y.txt"}, list(batch)
        assert batch.executed == set(), list(batch)
        assert_no_failures(batch)
        assert not (project.root / "build" / "old").exists()
        assert build_files(project) == {"a.html", "b.html", "keep.html"}
        assert w.stop(signal.SIGINT) == 0


# ---- 5. renames --------------------------------------------------------------------------------------------

def test_file_and_folder_renames(tmp_path: Path) -> None:
    project = make(tmp_path, {"a.md": md("A", "alpha body"), "c.md": md("C", "unrelated"),
                              "x/p.md": md("P", "p body"), "x/q.txt": "Q\n", "x/sub/r.md": md("R", "r body")})
    content = project.root / "content"
    with WatchProcess(project.root) as w:
        w.start()
        c_before = project.output("c.html")

        os.rename(content / "a.md", content / "b.md")
        batch = settled(w, w.until(lambda: absent(project, "a.html") and html_has(project, "b.html", "alpha body")))
        assert batch.deleted == {"a.html"}, list(batch)
        assert set(batch.steps) == {"b.md"}, list(batch)
        assert batch.steps["b.md"] in ("built", "restored")
        assert_no_failures(batch)
        assert project.output("c.html") == c_before
        assert tables(project).steps() >= {"b.md"} and "a.md" not in tables(project).steps()

        os.rename(content / "x", content / "y")
        batch = settled(w, w.until(lambda: absent(project, "x/p.html") and html_has(project, "y/sub/r.html", "r body")
                                   and project.output("y/q.txt") == b"Q\n" and html_has(project, "y/p.html", "p body")))
        assert batch.deleted == {"x/p.html", "x/q.txt", "x/sub/r.html"}, list(batch)
        assert set(batch.steps) == {"y/p.md", "y/q.txt", "y/sub/r.md"}, list(batch)
        assert_no_failures(batch)
        assert not (project.root / "build" / "x").exists()
        assert build_files(project) == {"b.html", "c.html", "y/p.html", "y/q.txt", "y/sub/r.html"}
        assert w.stop(signal.SIGINT) == 0


# ---- 6. new folders ----------------------------------------------------------------------------------------

def test_new_folders_with_files_created_at_once(tmp_path: Path) -> None:
    project = make(tmp_path, {"index.md": md("Index", "home")})
    content = project.root / "content"
    with WatchProcess(project.root) as w:
        w.start()

        # mkdir -p and the files right after, from this process
        deep = content / "new" / "deep" / "er"
        deep.mkdir(parents=True)
        wanted = {"new/a.md": "in new", "new/deep/b.md": "in deep", "new/deep/er/c.md": "in deeper",
                  "new/deep/er/d.md": "also deeper"}
        for rel, body in wanted.items():
            (content / rel).write_text(md(rel, body), encoding="utf-8")
        outs = {rel[:-3] + ".html": body for rel, body in wanted.items()}
        batch = settled(w, w.until(lambda: all(html_has(project, o, b) for o, b in outs.items())))
        assert set(batch.steps) == set(wanted), list(batch)
        assert_no_failures(batch)
        assert build_files(project) == {"index.html", *outs}

        # the same from a shell, as a user would
        subprocess.run(["sh", "-c", "mkdir -p more/one/two && printf '# M1\\n' > more/m1.md && "
                        "printf '# M2\\n' > more/one/m2.md && printf 'T\\n' > more/one/two/t.txt"],
                       cwd=content, check=True, timeout=10)
        batch = settled(w, w.until(lambda: html_has(project, "more/m1.html", "M1")
                                   and html_has(project, "more/one/m2.html", "M2")
                                   and project.output("more/one/two/t.txt") == b"T\n"))
        assert set(batch.steps) == {"more/m1.md", "more/one/m2.md", "more/one/two/t.txt"}, list(batch)
        assert_no_failures(batch)
        assert build_files(project) == {"index.html", *outs, "more/m1.html", "more/one/m2.html", "more/one/two/t.txt"}
        assert w.stop(signal.SIGINT) == 0


# ---- 7. bad build.py, bad sqldom.yaml, a transform that raises -------------------------------------------

BUILD_PY = """\
import sqldom


@sqldom.writer("**/*.txt", output="{dir}{stem}.out")
def shout(doc, site):
    return VERSION + " " + doc.path.upper()


VERSION = "%s"
"""

BROKEN_PY = """\
import sqldom


def shout(doc, site:
    return 1
"""

RAISING_PY = """\
import sqldom


@sqldom.writer("**/*.txt", output="{dir}{stem}.out")
def shout(doc, site):
    raise ValueError("cannot shout " + doc.path)
"""


def test_broken_build_py_is_reported_and_the_watch_goes_on(tmp_path: Path) -> None:
    project = make(tmp_path, {"a.md": md("A", "one"), "n.txt": "note\n"}, build_py=BUILD_PY % "v1")
    with WatchProcess(project.root) as w:
        w.start()
        assert project.output("n.out") == b"v1 N.TXT"

        project.write_root("build.py", BROKEN_PY)
        err = w.wait_stderr("build.py:4")
        assert "syntax error" in err
        assert "Traceback" not in err
        assert w.alive()
        assert project.output("n.out") == b"v1 N.TXT"        # nothing withdrawn by a failed build

        # an edit saved while build.py is broken is not lost
        project.write("a.md", md("A", "edited while broken"))
        time.sleep(0.3)
        assert w.alive()

        fixed_at = time.monotonic()
        project.write_root("build.py", BUILD_PY % "v2")
        batch = settled(w, w.until(lambda: project.output("n.out") == b"v2 N.TXT"
                                   and html_has(project, "a.html", "edited while broken"), timeout=20))
        took = time.monotonic() - fixed_at
        assert batch.steps.get("n.txt") == "built", list(batch)
        assert batch.executed == {"n.txt", "a.md"}, list(batch)
        assert_no_failures(batch)
        assert took < 2.0, (f"the edit of a.md saved while build.py was broken appeared only {took:.1f}s after "
                            f"the fix (the idle backstop rescan), not in the batch of the fix: {list(batch)}")
        assert build_files(project) == {"a.html", "n.out"}
        assert w.alive()
        assert w.stop(signal.SIGINT) == 0


def test_invalid_sqldom_yaml_is_reported_and_the_watch_goes_on(tmp_path: Path) -> None:
    project = make(tmp_path, {"a.md": md("A", "one")}, yaml="executor: local\n")
    with WatchProcess(project.root) as w:
        w.start()
        project.write_root("sqldom.yaml", "executor: local\nbuild_py: build.py\nfoo:\n\t- x\n")
        err = w.wait_stderr("sqldom.yaml:4")
        assert "YAML" in err or "yaml" in err
        assert "Traceback" not in err
        assert w.alive()
        assert html_has(project, "a.html", "one")

        project.write("a.md", md("A", "edited while the yaml is broken"))
        time.sleep(0.3)
        assert w.alive()

        fixed_at = time.monotonic()
        project.write_root("sqldom.yaml", "executor: local\n")
        batch = settled(w, w.until(lambda: html_has(project, "a.html", "edited while the yaml is broken"),
                                   timeout=20))
        took = time.monotonic() - fixed_at
        assert batch.executed == {"a.md"}, list(batch)
        assert_no_failures(batch)
        assert took < 2.0, (f"the edit of a.md saved while sqldom.yaml was invalid appeared only {took:.1f}s "
                            f"after the fix (the idle backstop rescan), not in the batch of the fix: {list(batch)}")

        # and ordinary edits go on as before
        project.write("a.md", md("A", "after the fix"))
        batch = settled(w, w.until(lambda: html_has(project, "a.html", "after the fix")))
        assert batch.executed == {"a.md"}
        assert w.stop(signal.SIGINT) == 0


def test_a_transform_that_raises_fails_its_step_only(tmp_path: Path) -> None:
    project = make(tmp_path, {"a.md": md("A", "one"), "n.txt": "note\n"}, build_py=BUILD_PY % "v1")
    with WatchProcess(project.root) as w:
        w.start()
        project.write_root("build.py", RAISING_PY)
        batch = w.until(lambda: True)
        batch = settled(w, batch)
        assert batch.steps.get("n.txt") == "failed", list(batch)
        assert "a.md" not in batch.executed, list(batch)
        problems = [p for p in batch.problems if p["step"] == "n.txt"]
        assert problems, list(batch)
        msg = problems[-1]["message"]
        assert "ValueError" in msg and "cannot shout n.txt" in msg, msg
        assert "line 6" in msg and "shout" in msg, f"the problem carries the traceback: {msg}"
        assert problems[-1]["severity"] == "error"
        assert w.alive()
        assert html_has(project, "a.html", "one")

        # the rest of the project still builds
        project.write("a.md", md("A", "two"))
        batch = settled(w, w.until(lambda: html_has(project, "a.html", "two")))
        assert "a.md" in batch.executed
        assert w.alive()

        project.write_root("build.py", BUILD_PY % "v3")
        batch = settled(w, w.until(lambda: project.output("n.out") == b"v3 N.TXT"))
        assert batch.steps.get("n.txt") == "built", list(batch)
        assert "a.md" not in batch.executed, list(batch)
        assert batch.summaries[-1]["failed"] == 0 and batch.summaries[-1]["errors"] == 0, list(batch)
        assert batch.problems == [], list(batch)
        assert tables(project).problems() == []
        assert build_files(project) == {"a.html", "n.out"}
        assert w.stop(signal.SIGINT) == 0


# ---- 8. a bulk change of 500 files -------------------------------------------------------------------------

N_BULK = 500


def bulk_name(i: int) -> str:
    return f"bulk/d{i // 100}/p{i:03d}.md"


def bulk_text(i: int, version: str) -> str:
    return f"# Page {i}\n\n{version} of page {i}, padded {'x' * (i % 37)}\n"


def test_bulk_change_of_500_files_misses_nothing(tmp_path: Path) -> None:
    t0 = time.monotonic()
    project = make(tmp_path, {bulk_name(i): bulk_text(i, "version one") for i in range(N_BULK)})
    staging = tmp_path / "staging"
    for i in range(N_BULK):
        p = staging / bulk_name(i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(bulk_text(i, "version two"), encoding="utf-8")

    def all_at(version: str) -> bool:
        for i in range(N_BULK):
            html = project.text(bulk_name(i)[:-3] + ".html")
            if html is None or f"{version} of page {i}," not in html:
                return False
        return True

    def missing(version: str) -> list[str]:
        return [bulk_name(i) for i in range(N_BULK)
                if f"{version} of page {i}," not in (project.text(bulk_name(i)[:-3] + ".html") or "")]

    with WatchProcess(project.root) as w:
        first = w.start(timeout=60)
        assert len(first.executed) == N_BULK
        assert all_at("version one")

        # a reader with any SQLite client while the watch writes
        errors: list[str] = []
        counts: dict[str, list[int]] = {"cp": [], "git": []}
        phase = ["cp"]
        stop_reading = threading.Event()

        def read() -> None:
            while not stop_reading.is_set():
                try:
                    con = sqlite3.connect(project.root / "var" / "build.db", timeout=5)
                    try:
                        counts[phase[0]].append(con.execute("select count(*) from build").fetchone()[0])
                    finally:
                        con.close()
                except sqlite3.Error as e:
                    errors.append(repr(e))
                time.sleep(0.02)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            # `git checkout`-like: cp -r of a prepared tree rewrites all 500 files at once
            subprocess.run(["cp", "-r", str(staging / "bulk"), str(project.root / "content")], check=True,
                           timeout=30)
            budget = max(60 - (time.monotonic() - t0), 10)
            try:
                batch = w.until(lambda: all_at("version two"), timeout=budget * 0.6, what="500 outputs at v2")
            except AssertionError as e:
                raise AssertionError(f"missed: {missing('version two')[:20]}...\n{e}") from None
            assert {bulk_name(i) for i in range(N_BULK)} <= batch.executed
            assert_no_failures(batch)

            # git's own way: unlink and create anew, in a tight loop from this process (a batch may see
            # a file in between, withdraw its output and build it again in the next batch)
            phase[0] = "git"
            for i in range(N_BULK):
                p = project.root / "content" / bulk_name(i)
                p.unlink()
                p.write_text(bulk_text(i, "version three"), encoding="utf-8")
            budget = max(60 - (time.monotonic() - t0), 10)
            try:
                batch = w.until(lambda: all_at("version three"), timeout=budget, what="500 outputs at v3")
            except AssertionError as e:
                raise AssertionError(f"missed: {missing('version three')[:20]}...\n{e}") from None
            assert_no_failures(batch)
        finally:
            stop_reading.set()
            reader.join(timeout=10)
        assert errors == [], f"a reader of var/build.db failed while the watch ran: {errors[:5]}"
        # rewriting files in place never withdraws an output: a reader always sees all 500 rows
        assert counts["cp"] and all(c == N_BULK for c in counts["cp"]), sorted(set(counts["cp"]))
        assert all(0 < c <= N_BULK for c in counts["git"]), sorted(set(counts["git"]))
        assert project.query("select count(*) from build") == [(N_BULK,)]
        assert len(build_files(project)) == N_BULK
        assert w.stop(signal.SIGINT) == 0
    assert integrity(project) == "ok"


# ---- 9. one writer: the project lock -------------------------------------------------------------------------

def test_build_during_watch_names_the_lock_holder_and_touches_nothing(tmp_path: Path) -> None:
    project = make(tmp_path, {"a.md": md("A", "one"), "b.md": md("B", "two")})
    db = project.root / "var" / "build.db"
    with WatchProcess(project.root) as w:
        w.start()

        def snapshot() -> tuple[object, ...]:
            return (project.query("select count(*), max(id) from runs"),
                    sorted(project.query("select path, hash, step from build")),
                    sorted(project.query("select path, hash from sources")),
                    project.query("select count(*) from executions"),
                    project.outputs(),
                    [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(db.parent.glob("build.db*"))
                     if not f.name.endswith("-shm")])
        before = snapshot()

        # any SQLite client reads while the watch runs
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            assert con.execute("select count(*) from build").fetchone()[0] == 2
        finally:
            con.close()
        if shutil.which("sqlite3"):
            out = subprocess.run(["sqlite3", str(db), "select count(*) from build"], capture_output=True,
                                 text=True, timeout=10)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "2"

        env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
        started = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "sqldom", "build", "-C", str(project.root)], capture_output=True,
                             text=True, timeout=30, env=env)
        took = time.monotonic() - started
        assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
        assert took < 10, f"the second sqldom took {took:.1f}s to give up"
        assert f"sqldom pid {w.pid}" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
        assert w.alive()
        assert snapshot() == before, "the refused build changed the watch's database or build/"

        # the watch goes on as before
        project.write("b.md", md("B", "three"))
        batch = settled(w, w.until(lambda: html_has(project, "b.html", "three")))
        assert batch.executed == {"b.md"}
        assert w.stop(signal.SIGTERM) == 0

    # once the watch is gone, build takes the lock at once
    res = project.build()
    assert res.code == 0 and res.executed == set(), res.stderr


# ---- 10. signals leave a consistent database -------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_the_watch_with_0_and_a_consistent_database(tmp_path: Path, sig: int) -> None:
    project = make(tmp_path, {"a.md": md("A", "one"), "b.md": "# B\n\n[](a.md)\n", "c.txt": "C\n"})
    with WatchProcess(project.root) as w:
        w.start()
        project.write("a.md", md("A2", "two"))
        batch = settled(w, w.until(lambda: html_has(project, "a.html", "two") and html_has(project, "b.html", "A2")))
        assert batch.executed == {"a.md", "b.md"}
        assert w.stop(sig) == 0, w.transcript()
        assert "Traceback" not in w.stderr
    assert integrity(project) == "ok"
    res = project.build()
    assert res.code == 0, res.stderr
    assert [e for e in res.events if e["event"] == "step"] == [], res.events
    assert res.summary["built"] == 0 and res.summary["deleted"] == 0 and res.summary.get("repaired", 0) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_batch_ends_with_0_and_the_next_build_finishes_the_job(tmp_path: Path, sig: int) -> None:
    n = 300
    project = make(tmp_path, {f"p{i:03d}.md": md(f"P{i}", "one") for i in range(n)})
    with WatchProcess(project.root) as w:
        w.start(timeout=60)
        for i in range(n):
            project.write(f"p{i:03d}.md", md(f"P{i}", "two"))
        time.sleep(0.05)                 # mid-batch, or while the watcher still gathers the changes
        code = w.stop(sig)
        assert code == 0, f"{signal.Signals(sig).name} during a batch must end the watch with 0\n{w.transcript()}"
    assert integrity(project) == "ok"
    assert not [p for p in (project.root / "build").rglob("*") if p.name.startswith(".sqldom-tmp-")]
    res = project.build()
    assert res.code == 0, res.stderr
    assert all(html_has(project, f"p{i:03d}.html", "two") for i in range(n))
    again = project.build()
    assert again.code == 0 and again.executed == set() and again.summary["built"] == 0, again.events


# ---- 11. build/ and var/ are not watched ---------------------------------------------------------------------

def test_changes_under_build_and_var_trigger_nothing(tmp_path: Path) -> None:
    project = make(tmp_path, {"a.md": md("A", "one"), "b.md": md("B", "two")})
    with WatchProcess(project.root) as w:
        w.start()
        # the watch's own writes to build/ and var/ must not feed back into new batches
        project.write("a.md", md("A", "edited"))
        settled(w, w.until(lambda: html_has(project, "a.html", "edited")))
        assert w.quiet(1.0) == [], "the watch rebuilt after its own writes to build/ or var/"

        outputs = project.outputs()
        runs = project.query("select count(*) from runs")
        a_html = project.root / "build" / "a.html"
        os.utime(a_html)                                           # touch build/a.html
        (project.root / "build" / "x.html").write_text("<p>stray</p>")   # touch build/x.html (new)
        (project.root / "var" / "notes.txt").write_text("mine")          # write into var/
        (project.root / "var" / "cache").mkdir(exist_ok=True)
        (project.root / "var" / "cache" / "y.bin").write_bytes(b"\0" * 10)
        (project.root / "README.txt").write_text("not a source")         # the project root is not content/
        after = w.quiet(1.5)
        assert [e for e in after if e["event"] != "summary"] == [], list(after)
        assert after.summaries == [], f"a change under build/ or var/ started a batch: {list(after)}"
        assert project.query("select count(*) from runs") == runs
        assert {k: v for k, v in project.outputs().items() if k != "x.html"} == outputs
        assert (project.root / "var" / "notes.txt").read_text() == "mine"

        # and the watch still sees real edits
        project.write("b.md", md("B", "three"))
        batch = settled(w, w.until(lambda: html_has(project, "b.html", "three")))
        assert batch.executed == {"b.md"}, list(batch)
        assert w.stop(signal.SIGINT) == 0
