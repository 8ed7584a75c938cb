"""The mirror, the filesystem port and the CLI's last line of defence against a hostile environment.

Companion to test_bad_input.py (which drives the real CLI end to end): these tests pin the
pieces underneath, so each guarantee has a test of its own.

- nothing under build/ is followed: a symlink (to a file or a folder, inside or outside the
  project) is removed or replaced, never written, read or deleted through, in a full mirror and
  in a watch batch's incremental one;
- two outputs needing one path as a file and as a folder: a clear error naming both, the rest
  mirrored;
- atomic writes stream chunks and leave no temp file when the disk fills;
- a full disk, a file-size limit, a read-only folder, a corrupt database: a message in the user's
  words (never SQL), exit 1 or 2, not "this is a bug";
- a bug's traceback is never lost, even when var/ cannot take it;
- ``sqldom clean`` removes only what sqldom made;
- ``--json``: a ``print()`` in user code cannot reach the event stream.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqldom import exits
from sqldom.db import migrate
from sqldom.db.store import Store
from sqldom.errors import DatabaseError, EnvironmentFailure, OutputClashError, SqldomError
from sqldom.events import ListSink, RepairedEvent
from sqldom.fs import TMP_PREFIX, atomic_write, real_folders, walk_files
from sqldom.mirror import mirror
from tests.support.project import Project, cli_in


def entries(top: Path) -> dict[str, object]:
    """Every entry under ``top``, links not followed: file -> bytes, link -> ('->', target), folder -> '/'."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(top).as_posix()
            if p.is_symlink():
                found[rel] = ("->", os.readlink(p))
            elif p.is_dir():
                found[rel] = "/"
            else:
                found[rel] = p.read_bytes()
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    (d / "dir").mkdir(parents=True)
    (d / "secret.txt").write_text("TOP SECRET\n")
    (d / "dir" / "a.txt").write_text("outside a\n")
    return d


# ---- fs.walk_files ---------------------------------------------------------------------------------------


def test_walk_files_for_build_reports_every_symlink_and_follows_none(tmp_path: Path, outside: Path) -> None:
    top = tmp_path / "build"
    (top / "sub").mkdir(parents=True)
    (top / "real.txt").write_text("r")
    (top / "sub" / "x.txt").write_text("x")
    (top / "out-dir").symlink_to(outside / "dir", target_is_directory=True)
    (top / "out-file").symlink_to(outside / "secret.txt")
    (top / "in-dir").symlink_to("sub", target_is_directory=True)
    (top / "in-file").symlink_to("real.txt")
    (top / "dangling").symlink_to("nowhere")
    found = dict(walk_files(top, skip_ignored=False, report_links=True))
    assert set(found) == {"real.txt", "sub/x.txt", "out-dir", "out-file", "in-dir", "in-file", "dangling"}
    for link in ("out-dir", "out-file", "in-dir", "in-file", "dangling"):
        assert (found[link].st_mode & 0o170000) == 0o120000, f"{link} is reported as the link itself"


def test_walk_files_for_content_keeps_following_inner_file_links_only(tmp_path: Path, outside: Path) -> None:
    top = tmp_path / "content"
    (top / "sub").mkdir(parents=True)
    (top / "a.txt").write_text("a")
    (top / "alias.txt").symlink_to("a.txt")
    (top / "out.txt").symlink_to(outside / "secret.txt")
    (top / "outdir").symlink_to(outside / "dir", target_is_directory=True)
    (top / "loop").symlink_to(".", target_is_directory=True)
    found = dict(walk_files(top))
    assert set(found) == {"a.txt", "alias.txt"}
    assert found["alias.txt"].st_ino == found["a.txt"].st_ino, "a link inside content/ is followed"


# ---- fs.atomic_write and real_folders -------------------------------------------------------------------


def test_real_folders_replaces_a_symlinked_parent_and_never_touches_its_target(tmp_path: Path,
                                                                              outside: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "posts").symlink_to(outside / "dir", target_is_directory=True)
    before = entries(outside)
    replaced = real_folders(build, build / "posts" / "2024")
    assert replaced == [build / "posts"]
    assert (build / "posts" / "2024").is_dir() and not (build / "posts").is_symlink()
    assert entries(outside) == before


def test_real_folders_names_a_file_in_the_way(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "a").write_text("a file")
    with pytest.raises(NotADirectoryError) as caught:
        real_folders(build, build / "a" / "b")
    assert caught.value.filename == str(build / "a")
    assert (build / "a").read_text() == "a file"


def test_atomic_write_streams_chunks_and_never_writes_through_a_symlink(tmp_path: Path, outside: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "posts").symlink_to(outside / "dir", target_is_directory=True)
    (build / "b.txt").symlink_to(outside / "secret.txt")
    before = entries(outside)
    atomic_write(build / "posts" / "a.txt", iter([b"new ", b"a\n"]), root=build)
    atomic_write(build / "b.txt", b"b\n", root=build)
    assert entries(outside) == before
    assert entries(build) == {"posts": "/", "posts/a.txt": b"new a\n", "b.txt": b"b\n"}


@pytest.mark.parametrize("staged", [False, True])
def test_atomic_write_removes_its_temp_file_when_the_disk_fills(tmp_path: Path, staged: bool) -> None:
    build, staging = tmp_path / "build", tmp_path / "var" / "tmp"
    staging.mkdir(parents=True)
    (build / "sub").mkdir(parents=True)
    (build / "sub" / "x.bin").write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"x" * 1000
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as caught:
        atomic_write(build / "sub" / "x.bin", chunks(), staging if staged else None, root=build)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(build / "sub" / "x.bin"), "the error names the output"
    assert (build / "sub" / "x.bin").read_bytes() == b"old", "the old file is intact"
    left = [p for p in (*build.rglob("*"), *staging.rglob("*")) if p.name.startswith(TMP_PREFIX)]
    assert left == []


# ---- the mirror ----------------------------------------------------------------------------------------


def built(project: Project, files: dict[str, str]) -> Store:
    for name, text in files.items():
        project.write(name, text)
    assert project.build_inproc().code == 0
    return Store(project.root / "var" / "build.db")


def test_an_incremental_mirror_replaces_a_symlinked_folder_instead_of_writing_through(
        project: Project, outside: Path) -> None:
    store = built(project, {"posts/a.txt": "a\n", "b.txt": "b\n"})
    try:
        build = project.root / "build"
        (build / "posts" / "a.txt").unlink()
        (build / "posts").rmdir()
        (build / "posts").symlink_to(outside / "dir", target_is_directory=True)
        before = entries(outside)
        sink = ListSink()
        mirror(build, store, store.outputs(), {"posts/a.txt"}, set(), sink, full=False)
        assert entries(outside) == before, "the watch batch wrote outside the project"
        assert entries(build) == {"posts": "/", "posts/a.txt": b"a\n", "b.txt": b"b\n"}
        assert RepairedEvent(path="posts", what="stray") in sink.events
    finally:
        store.close()


def test_an_incremental_mirror_deletes_nothing_through_a_symlinked_folder(project: Project,
                                                                          outside: Path) -> None:
    store = built(project, {"dir/a.txt": "a\n"})
    try:
        build = project.root / "build"
        (build / "dir" / "a.txt").unlink()
        (build / "dir").rmdir()
        (build / "dir").symlink_to(outside / "dir", target_is_directory=True)   # outside/dir/a.txt exists
        before = entries(outside)
        rows = store.outputs()
        rows.pop("dir/a.txt")
        mirror(build, store, rows, set(), {"dir/a.txt"}, ListSink(), full=False)
        assert entries(outside) == before, "the deletion went through the link"
    finally:
        store.close()


def test_a_full_mirror_replaces_links_and_special_files_where_outputs_go(project: Project, outside: Path) -> None:
    store = built(project, {"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"})
    try:
        build = project.root / "build"
        for name in ("a.txt", "b.txt", "c.txt"):
            (build / name).unlink()
        (build / "a.txt").symlink_to(outside / "dir", target_is_directory=True)
        (build / "b.txt").symlink_to(outside / "secret.txt")
        os.mkfifo(build / "c.txt")                      # hashing it would block forever
        (build / "stray").symlink_to(outside / "dir", target_is_directory=True)
        before = entries(outside)
        sink = ListSink()
        repaired = mirror(build, store, store.outputs(), set(), set(), sink, full=True)
        assert entries(outside) == before
        assert entries(build) == {"a.txt": b"a\n", "b.txt": b"b\n", "c.txt": b"c\n"}
        assert {(e.path, e.what) for e in sink.events if isinstance(e, RepairedEvent)} == {
            ("a.txt", "modified"), ("b.txt", "modified"), ("c.txt", "modified"), ("stray", "stray")}
        assert repaired == 4
    finally:
        store.close()


def test_outputs_clashing_as_file_and_folder_name_both_and_the_rest_is_mirrored(project: Project) -> None:
    store = built(project, {"a.txt": "a\n", "x/b.txt": "b\n", "z.txt": "z\n"})
    try:
        build = project.root / "build"
        rows = store.outputs()
        # as if the planner had let both through: build/x must be a file for one and a folder for the other
        rows["x"] = rows["a.txt"]._replace(path="x", step="a.txt")
        (build / "z.txt").unlink()
        with pytest.raises(OutputClashError) as caught:
            mirror(build, store, rows, set(), set(), ListSink(), full=True)
        err = caught.value
        assert err.exit_code == 1
        text = f"{err.headline()} {err.hint}"
        assert "build/x" in text and "x/b.txt" in text and "a.txt" in text, text
        assert (build / "z.txt").read_bytes() == b"z\n", "the rest is mirrored"
        assert (build / "x" / "b.txt").read_bytes() == b"b\n", "what is there is not destroyed"
    finally:
        store.close()


def test_outputs_clashing_in_a_build_folder_that_was_deleted_are_named_and_the_rest_is_mirrored(
        project: Project) -> None:
    """The mirror's quick path (build/ gone, so all of it is new) hands a clash to the careful one."""
    store = built(project, {"a.txt": "a\n", "x/b.txt": "b\n", "z.txt": "z\n"})
    try:
        build = project.root / "build"
        rows = store.outputs()
        rows["x"] = rows["a.txt"]._replace(path="x", step="a.txt")
        shutil.rmtree(build)
        with pytest.raises(OutputClashError) as caught:
            mirror(build, store, rows, set(), set(), ListSink(), full=True)
        text = f"{caught.value.headline()} {caught.value.hint}"
        assert "build/x" in text and "x/b.txt" in text and "a.txt" in text, text
        assert (build / "a.txt").read_bytes() == b"a\n"
        assert (build / "z.txt").read_bytes() == b"z\n", "the rest is mirrored"
        assert (build / "x").read_bytes() == b"a\n", "the first of the two (in path order) is there"
    finally:
        store.close()


def test_a_large_output_is_restored_in_chunks(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 << 20)
    project.write("big.bin", data)
    store = built(project, {})
    try:
        (project.root / "build" / "big.bin").unlink()
        monkeypatch.setattr(Store, "blob", lambda self, h: pytest.fail("a large blob was loaded whole"))
        mirror(project.root / "build", store, store.outputs(), set(), set(), ListSink(), full=True)
        assert (project.root / "build" / "big.bin").read_bytes() == data
        shutil.rmtree(project.root / "build")   # (the quick path of a deleted build/ streams it too)
        mirror(project.root / "build", store, store.outputs(), set(), set(), ListSink(), full=True)
        assert (project.root / "build" / "big.bin").read_bytes() == data
    finally:
        store.close()


# ---- the CLI's last line of defence ------------------------------------------------------------------------


def test_sqlalchemy_full_disk_becomes_an_environment_failure_without_sql(tmp_path: Path) -> None:
    import sqlalchemy.exc
    wrapped = sqlalchemy.exc.OperationalError("INSERT OR IGNORE INTO blobs (hash, size, data) VALUES (?, ?, ?)",
                                              [("h", 3, b"SECRET PARAMETER")],
                                              sqlite3.OperationalError("database or disk is full"))
    err = exits.environment(wrapped, tmp_path)
    assert isinstance(err, EnvironmentFailure) and err.exit_code == 1
    text = f"{err.headline()} {err.hint}"
    assert "var/build.db" in text and "disk is full" in text and "consistent" in text
    assert "INSERT" not in text and "SECRET" not in text


def test_a_malformed_database_is_a_database_error_exit_2() -> None:
    err = exits.environment(sqlite3.DatabaseError("database disk image is malformed"), None)
    assert isinstance(err, DatabaseError) and err.exit_code == 2
    assert "var/build.db is corrupt" in err.headline()
    assert err.hint is not None and "sqldom clean" in err.hint


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "no space"), (errno.EFBIG, "too large"),
                                        (errno.EACCES, "permission denied"), (errno.EROFS, "read-only")])
def test_an_os_error_of_the_environment_names_the_file(tmp_path: Path, code: int, words: str) -> None:
    exc = OSError(code, os.strerror(code), str(tmp_path / "build" / "b.txt"))
    err = exits.environment(exc, tmp_path)
    assert isinstance(err, EnvironmentFailure)
    assert err.path == "build/b.txt" and words in err.headline().lower(), err.headline()


def test_other_errors_stay_bugs() -> None:
    assert exits.environment(RuntimeError("boom"), None) is None
    assert exits.environment(OSError(errno.ENOENT, "No such file or directory", "x"), None) is None


def test_a_bug_report_falls_back_to_the_temp_folder_then_to_the_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")                          # var/ cannot be made under a file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    try:
        raise RuntimeError("boom\nSECOND LINE")
    except RuntimeError as e:
        assert exits.bug(e, not_a_folder) == 1
    err = capsys.readouterr().err
    saved = list((tmp_path / "tmp").glob("crash-*.txt"))
    assert len(saved) == 1 and str(saved[0]) in err and "SECOND LINE" not in err
    assert "RuntimeError: boom" in saved[0].read_text()

    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    try:
        raise RuntimeError("boom again")
    except RuntimeError as e:
        exits.bug(e, not_a_folder)
    err = capsys.readouterr().err
    assert "crash-" not in err, "no file is named when none was written"
    assert "Traceback" in err and "boom again" in err, "the traceback is printed instead"


def test_json_events_use_the_original_stdout_while_prints_go_to_stderr(tmp_path: Path) -> None:
    code = textwrap.dedent('''\
        from sqldom.exits import stdout_to_stderr as _stdout_to_stderr
        from sqldom.events import JsonSink, SummaryEvent
        sink = JsonSink()
        with _stdout_to_stderr(True):
            print("noise from user code")
            sink.emit(SummaryEvent(0, 0, 0, 0, 0, 0, 0.0))
        sink.close()
        print("after")
        ''')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert json.loads(lines[0])["event"] == "summary" and lines[1:] == ["after"]
    assert "noise from user code" in proc.stderr


def test_json_step_events_reach_stdout_in_order_even_when_no_summary_follows(tmp_path: Path) -> None:
    """Step events are written in one burst (not flushed one by one): the summary, or closing the
    sink on an error, still delivers every one of them, in order."""
    code = textwrap.dedent('''\
        import sys
        from sqldom.events import JsonSink, StepEvent, SummaryEvent
        sink = JsonSink()
        for i in range(3):
            sink.emit(StepEvent(id=f"s{i}.md", kind="document", status="built", reason="new step"))
        if sys.argv[1] == "summary":
            sink.emit(SummaryEvent(3, 0, 0, 0, 0, 0, 0.0))
        sink.close()
        ''')
    for ending in ("summary", "error"):
        proc = subprocess.run([sys.executable, "-c", code, ending], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [e.get("id") for e in events[:3]] == ["s0.md", "s1.md", "s2.md"]
        assert [e["event"] for e in events] == ["step"] * 3 + (["summary"] if ending == "summary" else [])


# ---- migrate: read-only is not corrupt ---------------------------------------------------------------------


def test_a_read_only_database_is_not_called_corrupt(project: Project) -> None:
    project.write("a.txt", "a\n")
    assert project.build_inproc().code == 0
    db = project.root / "var" / "build.db"
    err = migrate.access_error(db, "var/build.db", sqlite3.OperationalError("attempt to write a readonly database"))
    assert "corrupt" not in f"{err.headline()} {err.hint}"
    assert migrate.is_access_failure(sqlite3.OperationalError("unable to open database file"))
    assert not migrate.is_access_failure(sqlite3.DatabaseError("database disk image is malformed"))
    assert migrate.is_corruption(sqlite3.DatabaseError("file is not a database"))


# ---- sqldom clean ----------------------------------------------------------------------------------------


def test_clean_removes_only_what_sqldom_made(project: Project) -> None:
    project.write("a.txt", "a\n")
    assert project.build().code == 0
    var = project.root / "var"
    (var / "crash-20240101-000000-1.txt").write_text("old crash\n")
    (var / "notes.txt").write_text("mine\n")
    proc = project.cli("clean", "-C", str(project.root))
    assert proc.returncode == 0, proc.stderr
    assert not (project.root / "build").exists()
    assert sorted(p.name for p in var.iterdir()) == ["notes.txt"]
    assert (project.root / "content" / "a.txt").read_text() == "a\n"


def test_clean_removes_a_corrupt_sqldom_database(project: Project) -> None:
    for i in range(200):
        project.write(f"d{i}.md", f"# Doc {i}\n\n" + "text " * 50)
    assert project.build().code == 0
    db = project.root / "var" / "build.db"
    data = bytearray(db.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = os.urandom(third)
    db.write_bytes(bytes(data))
    proc = project.cli("clean", "-C", str(project.root))
    assert proc.returncode == 0, proc.stderr
    assert not (project.root / "var").exists() and not (project.root / "build").exists()


def write_foreign(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("create table alembic_version (version_num varchar(32))")
    con.execute("create table invoices (id integer primary key)")
    con.commit()
    con.close()


@pytest.mark.parametrize("case", ["foreign-db", "no-db-but-build", "build-is-a-link"])
def test_clean_refuses_where_sqldom_did_not_make_the_files(tmp_path: Path, case: str) -> None:
    home = tmp_path / "home"
    (home / "build").mkdir(parents=True)
    (home / "build" / "main.o").write_bytes(b"object\n")
    if case == "foreign-db":
        write_foreign(home / "var" / "build.db")
    elif case == "build-is-a-link":
        (home / "build" / "main.o").unlink()
        (home / "build").rmdir()
        (home / "elsewhere").mkdir()
        (home / "elsewhere" / "keep").write_text("keep\n")
        (home / "build").symlink_to(home / "elsewhere", target_is_directory=True)
    before = entries(home)
    proc = cli_in(tmp_path, "clean", "-C", str(home))
    assert proc.returncode == 2, proc.stderr
    assert "nothing removed" in proc.stderr and "hint:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert entries(home) == before


def test_clean_of_a_folder_with_neither_database_nor_build_touches_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "var" / "lock").mkdir(parents=True)           # like /var/lock on a Linux system
    (home / "var" / "tmp").mkdir()
    (home / "var" / "tmp" / "x").write_text("x\n")
    (home / "build").mkdir()                               # empty
    before = {k: v for k, v in entries(home).items() if not k.startswith("build")}
    proc = cli_in(tmp_path, "clean", "-C", str(home))
    assert proc.returncode == 0, proc.stderr
    assert entries(home) == before


def test_the_new_error_classes_are_in_the_tree() -> None:
    assert issubclass(EnvironmentFailure, SqldomError) and EnvironmentFailure("m").exit_code == 1
    assert issubclass(OutputClashError, SqldomError) and OutputClashError("m").exit_code == 1
