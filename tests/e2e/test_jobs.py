"""``-j N`` (forked workers for parses and writes) gives exactly what ``-j 1`` gives (issue 7).

Real files, the real CLI in subprocesses: two copies of one project, one built
with ``-j 1`` and one with ``-j 3``, must end with the same build/ bytes, the
same database contents (every table, except timings and run timestamps) and
the same events, after a cold build and after an incremental batch large
enough to use the workers again.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sqldom.engine import PARALLEL_MIN
from tests.support.project import Project, Result

DOCS = PARALLEL_MIN * 2 + 7

BUILD_PY = '''
import sqldom


@sqldom.parser("notes/*.md")
def parse_note(source):
    text = source.text
    if "RAISE" in text:
        raise ValueError("a note that says RAISE")
    return {"title": text.splitlines()[0].lstrip("# ").strip(), "words": len(text.split())}


@sqldom.writer("notes/*.md", output="{dir}{stem}.html")
def write_note(doc, site):
    first = site.fact("s0/page-004.md", "title")
    tags = site.fact("s0/page-004.md", "tags")   # (another document's fact that is not its title)
    return f"<h1>{doc.facts['title']}</h1><p>{doc.facts['words']} words; see {first} {tags}</p>"
'''


def make(root: Path, seed: int = 3, raising: bool = True, notes: bool = True) -> Project:
    """Markdown with front matter, empty links (titles filled in), broken links, inline and block HTML.

    Text files too; ``notes``: also notes parsed and written by build.py.
    """
    p = Project(root)
    rng = random.Random(seed)
    for i in range(DOCS):
        links = " ".join(f"[](../s{j % 4}/page-{j:03d}.md)" for j in rng.sample(range(DOCS), 3))
        extra = ""
        if i % 17 == 0:
            extra += "\nA [broken](../nowhere/missing.md) link.\n"
        if i % 11 == 0:
            extra += f'\n<div>\n<a href="../s{(i + 1) % 4}/page-{(i + 1) % DOCS:03d}.md"></a>\n</div>\n'
        if i % 13 == 0:
            extra += f'\nInline <a href="../s{(i + 2) % 4}/page-{(i + 2) % DOCS:03d}.md"></a> html.\n'
        title = f"title: Page {i}\n" if i % 5 else ""
        p.write(f"s{i % 4}/page-{i:03d}.md",
                f"---\n{title}tags: [t{i % 3}]\n---\n\n# Heading {i}\n\nSee {links}.\n{extra}")
    for i in range(20):
        if notes:
            p.write(f"notes/n{i:02d}.md", f"# Note {i}\n\n" + ("RAISE\n" if i == 7 and raising else "") + "word " * (i + 1))
        p.write(f"txt/t{i:02d}.txt", f"Text {i}\nbody\n")
    if notes:
        p.write("../build.py", BUILD_PY)
    return p


TABLES = {
    "sources": "select path, hash, size from sources",
    "steps": "select id, kind, status, parser, writer, output, last_run, reason from steps",
    "deps": "select step, phase, kind, target, key, hash from deps",
    "facts": "select path, name, value, hash from facts",
    "build": "select path, hash, step, size from build",
    "problems": "select run, step, phase, path, line, severity, message from problems",
    "traces": "select step, phase, reads, results, outputs, run from traces",
    "executions": "select run, step, outcome, reason from executions",
    "blobs": "select hash, size from blobs",
    "runs": "select id, command, built, restored, unchanged, deleted, failed, errors from runs",
}


def state(p: Project, result: Result) -> dict[str, Any]:
    events = [{k: v for k, v in e.items() if k != "seconds"} for e in result.events]
    db = {name: sorted(p.query(sql), key=repr) for name, sql in TABLES.items()}
    return {"code": result.code, "events": events, "files": p.outputs(), "db": db}


def edit_batch(p: Project, seed: int, delete: bool = True) -> None:
    """More than PARALLEL_MIN bodies, a few titles, one deletion: an incremental build that forks again."""
    rng = random.Random(seed)
    docs = sorted((p.root / "content").rglob("page-*.md"))
    for path in rng.sample(docs, PARALLEL_MIN + 5):
        text = path.read_text()
        if rng.random() < 0.1:
            text = text.replace("title: ", "title: Retitled ", 1)
        path.write_text(text + f"\nEdited {seed}.\n")
    if delete:
        docs[-1].unlink()


def test_j3_equals_j1_cold_and_incremental(tmp_path: Path) -> None:
    one, many = make(tmp_path / "j1"), make(tmp_path / "j3")
    a, b = one.build("-j", "1"), many.build("-j", "3")
    assert a.code == 1 and "Traceback" not in a.stderr + b.stderr   # the broken links and the raising note
    assert a.summary["built"] + a.summary["failed"] == DOCS + 40 and a.summary["failed"] == 1
    assert b"see Page 4 ['t1']" in many.outputs()["notes/n00.html"]   # (another document's title and tags)
    assert state(one, a) == state(many, b)

    for p in (one, many):
        edit_batch(p, seed=11)
    a, b = one.build("-j", "1"), many.build("-j", "3")
    assert a.summary["built"] >= PARALLEL_MIN
    assert state(one, a) == state(many, b)

    a, b = one.build("-j", "1"), many.build("-j", "3")
    assert a.summary["built"] == b.summary["built"] == 0


def test_builtin_writers_only_j3_equals_j1(tmp_path: Path) -> None:
    """No build.py: every write is a built-in writer's (Markdown pages, text files)."""
    one, many = make(tmp_path / "j1", notes=False), make(tmp_path / "j3", notes=False)
    a, b = one.build("-j", "1"), many.build("-j", "3")
    assert a.summary["built"] == DOCS + 20 and "Traceback" not in a.stderr + b.stderr
    assert state(one, a) == state(many, b)
    assert sum(b">Page " in page for page in one.outputs().values()) > DOCS // 2   # (titles filled in)

    for p in (one, many):
        edit_batch(p, seed=5)   # (some titles change: their linkers are written again)
    a, b = one.build("-j", "1"), many.build("-j", "3")
    assert a.summary["built"] >= PARALLEL_MIN
    assert state(one, a) == state(many, b)


def test_full_rebuild_with_workers_equals_the_clean_build(tmp_path: Path) -> None:
    p = make(tmp_path / "p")
    first = p.build("-j", "2")
    files = p.outputs()
    again = p.build("-j", "2", "--full")
    assert again.summary["built"] == first.summary["built"]
    assert p.outputs() == files


def test_a_narrow_batch_edit_with_workers_equals_j1_and_the_full_path(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No source comes or goes and none failed: the probe hands the edit to a narrow plan (rows read on
    demand) that forks workers; -j 3, -j 1 and the full path without the probe must agree."""
    one, many, ref = (make(tmp_path / name, raising=False) for name in ("j1", "j3", "ref"))

    def build_all() -> list[tuple[Project, Result]]:
        got = [(one, one.build("-j", "1")), (many, many.build("-j", "3"))]
        monkeypatch.setenv("SQLDOM_NO_PROBE", "1")
        got.append((ref, ref.build("-j", "1")))
        monkeypatch.delenv("SQLDOM_NO_PROBE")
        return got

    for _ in range(3):   # cold, then no-ops until every stat is past the racy window
        time.sleep(0.06)
        build_all()
    for p in (one, many, ref):
        edit_batch(p, seed=5, delete=False)
    results = build_all()
    assert results[0][1].summary["built"] >= PARALLEL_MIN
    states = [state(p, r) for p, r in results]
    assert states[0] == states[1] == states[2]


def build_in_process(p: Project, jobs: int) -> Result:
    from sqldom.engine import BuildOptions, build
    from sqldom.events import ListSink, as_dict
    from tests.support.project import _result
    sink = ListSink()
    code = build(BuildOptions(root=p.root, jobs=jobs), sink)
    return _result(code, [as_dict(e) for e in sink.events])


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_batch_spilled_to_a_file_records_what_one_held_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   jobs: int) -> None:
    """Step rows moved to the spill file every step (SPILL_TRACES = 1) end as the same database and build/.

    (The spilled build also keeps only two packed facts decoded at a time, UNPACKED_KEPT = 2.)
    """
    import sqldom.engine
    held, spilled = make(tmp_path / "held"), make(tmp_path / "spilled")
    spills: list[int] = []
    spill = sqldom.engine.Batch.spill

    def counting(self: Any, folder: Path) -> None:
        spills.append(len(self.traces))
        spill(self, folder)

    for seed in (None, 11, 12):
        if seed is not None:
            for p in (held, spilled):
                edit_batch(p, seed=seed, delete=seed == 11)
        a = build_in_process(held, jobs)
        monkeypatch.setattr(sqldom.engine, "SPILL_TRACES", 1)
        monkeypatch.setattr(sqldom.engine, "HOLD_TRACES", 0)
        monkeypatch.setattr(sqldom.engine, "UNPACKED_KEPT", 2)
        monkeypatch.setattr(sqldom.engine.Batch, "spill", counting)
        b = build_in_process(spilled, jobs)
        monkeypatch.undo()
        assert a.summary["built"] >= PARALLEL_MIN
        assert state(held, a) == state(spilled, b)
    assert len(spills) > 3 * PARALLEL_MIN   # (it did spill, part after part)
    assert not list((spilled.root / "var" / "tmp").glob("*"))   # and left no file behind


def test_a_parallel_build_moves_the_outputs_its_workers_wrote_into_build_without_reading_them_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers leave each finished page in their pack under var/tmp/staged/; build/ gets it from there.

    An output the mirror had to write again would be read back from the blobs
    table in this process: none may be, and build/ must hold every page.
    """
    from sqldom.db.store import Store
    from sqldom.engine import BuildOptions, build
    from sqldom.events import ListSink
    from tests.support.project import hash_bytes

    p = make(tmp_path / "p", raising=False)
    read: list[str] = []
    blob, chunks = Store.blob, Store.blob_chunks
    monkeypatch.setattr(Store, "blob", lambda self, h: (read.append(h), blob(self, h))[1])
    monkeypatch.setattr(Store, "blob_chunks", lambda self, h: (read.append(h), chunks(self, h))[1])
    build(BuildOptions(root=p.root, jobs=2), ListSink())   # (exit 1: the project has broken links on purpose)
    pages = sorted((p.root / "build").rglob("*.html"))
    assert len(pages) == DOCS + 20
    assert not {hash_bytes(f.read_bytes()) for f in pages} & set(read)
    assert not (p.root / "var" / "tmp" / "staged").exists()

    # build/ is not empty now: the mirror writes the new pages itself, from the workers' packs
    for path in sorted((p.root / "content").rglob("page-*.md")):
        path.write_text(path.read_text() + "\nOne more line.\n")
    before = {f: f.read_bytes() for f in pages}
    again = ListSink()
    build(BuildOptions(root=p.root, jobs=2), again)
    changed = [f for f in pages if f.read_bytes() != before[f]]
    assert len(changed) == DOCS
    assert all(b"One more line." in f.read_bytes() for f in changed)
    assert not {hash_bytes(f.read_bytes()) for f in changed} & set(read)
    assert p.query("select count(*) from build where hash not in (select hash from blobs)") == [(0,)]
    assert not (p.root / "var" / "tmp" / "staged").exists()


def test_a_worker_that_cannot_append_to_its_pack_leaves_its_outputs_to_the_mirror(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while a worker stages (its pack): the build still ends whole, the mirror writes the
    pages from the database, and staged/ is gone."""
    import errno
    import os

    from tests.support.project import hash_bytes

    p = make(tmp_path / "p", raising=False)
    write = os.write

    def full_for_packs(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".pack"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(fd, data)

    monkeypatch.setattr(os, "write", full_for_packs)   # (the workers inherit it when they fork)
    first = build_in_process(p, 2)
    monkeypatch.undo()
    assert first.summary["built"] >= DOCS
    rows = dict(p.query("select path, hash from build"))
    assert {path: hash_bytes(data) for path, data in p.outputs().items()} == rows
    assert len(rows) >= DOCS + 20
    assert not (p.root / "var" / "tmp" / "staged").exists()
    assert build_in_process(p, 2).summary["built"] == 0


@pytest.mark.parametrize("phase", ["_parse_in_worker", "_write_in_worker"])
def test_a_worker_that_dies_costs_only_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str) -> None:
    """A worker killed mid-build: this process does the rest of its documents (staging nothing for
    them), and the database, build/ and the events are those of a -j 1 build."""
    import os

    from sqldom.engine import Build

    dying_build, serial = make(tmp_path / "a", raising=False), make(tmp_path / "b", raising=False)
    parent = os.getpid()
    real = getattr(Build, phase)

    def dying(self: Any, s: str) -> Any:
        if os.getpid() != parent and s == "s1/page-009.md":
            os._exit(9)   # (a crash, the OOM killer)
        return real(self, s)

    monkeypatch.setattr(Build, phase, dying)
    got = build_in_process(dying_build, 2)
    monkeypatch.undo()
    assert state(dying_build, got) == state(serial, build_in_process(serial, 1))
    assert build_in_process(dying_build, 2).summary["built"] == 0


def test_staged_outputs_are_found_by_hash_in_their_workers_pack() -> None:
    from sqldom.engine import StagedFiles
    from sqldom.fs import Staged
    staged = StagedFiles()
    big = 5 << 40   # (an offset past any 32-bit field)
    given = {"ab12": Staged("/p/var/tmp/staged/101.pack", 0, 300),
             "cd34": Staged("/p/var/tmp/staged/101.pack", 300, 0),
             "ef56": Staged("/p/var/tmp/staged/202.pack", big, (1 << 40) - 1)}
    for h, at in given.items():
        staged.add(h, at)
    staged.add("0000", Staged("/p/var/tmp/staged/202.pack", 7, 1 << 40))   # too long to say: left to the mirror
    assert dict(staged) == given
    assert staged.get("0000") is None
    assert staged["ab12"].pack is staged["cd34"].pack   # one str per worker, not one per output


def test_a_cold_parallel_build_moves_its_outputs_into_build_while_it_records_and_the_next_build_trusts_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build/ was empty: the staged pages are written in by another process during the record (``mirror.Placer``).

    Every page must be there with the bytes the table names, and the stat the
    table keeps must be the file's, so that the next build trusts every page
    without reading it (nothing repaired, nothing hashed: no page was written
    within the racy margin before the mirror).
    """
    import os

    import sqldom.mirror
    from sqldom.scan import racy_margin_ns
    from tests.support.project import hash_bytes

    p = make(tmp_path / "p", raising=False)
    placers: list[Any] = []
    start, join = sqldom.mirror.Placer.start, sqldom.mirror.Placer.join

    def keeping(*args: Any) -> Any:
        placers.append(start(*args))
        return placers[-1]

    def settling(self: Any) -> Any:
        # the pages of a project this small are all placed within the racy margin of the mirror:
        # past it, the next build must trust every one of them without reading it
        placed = join(self)
        time.sleep(0.15)
        return placed

    monkeypatch.setattr(sqldom.mirror.Placer, "start", staticmethod(keeping))
    monkeypatch.setattr(sqldom.mirror.Placer, "join", settling)
    build_in_process(p, 2)
    assert len(placers) == 1 and len(placers[0].placed) >= DOCS   # (the pages the workers wrote: it placed them)
    files = p.outputs()
    rows = p.query("select path, hash, mtime_ns, ctime_ns, inode from build")
    assert {path: hash_bytes(data) for path, data in files.items()} == {r[0]: r[1] for r in rows}
    for path, _, mtime_ns, ctime_ns, inode in rows:
        st = os.stat(p.root / "build" / path)
        assert (mtime_ns, ctime_ns, inode) == (st.st_mtime_ns, st.st_ctime_ns, st.st_ino), path

    racy = {str(p.root / "build" / path) for path, mtime_ns, mirrored_ns in
            p.query("select path, mtime_ns, mirrored_ns from build")
            if not mtime_ns < mirrored_ns - racy_margin_ns(mtime_ns)}
    hashed: list[str] = []
    real_hash_file = sqldom.mirror.hash_file
    monkeypatch.setattr(sqldom.mirror, "hash_file", lambda path: (hashed.append(path), real_hash_file(path))[1])
    again = build_in_process(p, 2)
    assert not [e for e in again.events if e.get("type") == "repaired"]
    assert set(hashed) == racy == set()


def test_a_record_that_fails_takes_the_outputs_it_moved_back_out_of_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs moved into build/ before the record commits leave again when it fails; the next build is whole."""
    import sqlite3

    from sqldom.db.store import Store

    p = make(tmp_path / "p", raising=False)
    record = Store.record

    def failing(self: Any, *args: Any, **kwargs: Any) -> None:
        deadline = time.monotonic() + 60
        while len(list((p.root / "build").rglob("*.html"))) < DOCS + 20:   # (the placer is writing them)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "record", failing)
    with pytest.raises(sqlite3.OperationalError):   # (the CLI turns it into a message and exit code)
        build_in_process(p, 2)
    assert p.outputs() == {}
    assert p.query("select count(*) from build") == [(0,)]
    monkeypatch.setattr(Store, "record", record)
    whole = build_in_process(p, 2)
    assert whole.summary["built"] >= DOCS
    assert len(p.outputs()) == len(p.query("select path from build")) >= DOCS


def test_a_worker_parses_the_bytes_the_scan_hashed_even_when_the_file_changed_since(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker reads a source from content/ again only if its hash is still the scan's; else from the blobs table."""
    from sqldom.engine import Build

    p = make(tmp_path / "p", raising=False)
    edited = p.root / "content" / "s1" / "page-001.md"
    scanned = edited.read_text()
    start = Build._worker_start

    def editing(self: Any) -> None:
        edited.write_text(scanned.replace("# Heading 1", "# Changed after the scan"))   # (each worker: same bytes)
        start(self)

    monkeypatch.setattr(Build, "_worker_start", editing)
    build_in_process(p, 2)
    page = (p.root / "build" / "s1" / "page-001.html").read_text()
    assert "Heading 1" in page and "Changed after the scan" not in page
    (source_hash,) = p.query("select hash from sources where path = 's1/page-001.md'")[0]
    from tests.support.project import hash_bytes
    assert source_hash == hash_bytes(scanned.encode())
    monkeypatch.undo()
    again = build_in_process(p, 2)
    assert "Changed after the scan" in (p.root / "build" / "s1" / "page-001.html").read_text()
    assert again.summary["built"] >= 1


def _open_temp_files(folder: Path) -> list[str]:
    """This process's descriptors on files under ``folder`` (nameless temp files show as '(deleted)')."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc")
def test_a_watch_sessions_parallel_build_leaves_no_facts_file_open(tmp_path: Path) -> None:
    """The facts of a parallel build live in a nameless file under var/tmp/ (facts_file.py): a session that
    keeps its snapshot (``sqldom watch``) closes it with the build, and its next build reads facts again."""
    from sqldom.engine import BuildOptions, Session
    from sqldom.engine import Project as EngineProject
    from sqldom.events import ListSink

    p = make(tmp_path / "p", raising=False)
    session = Session(EngineProject.at(p.root), BuildOptions(root=p.root, jobs=2))
    try:
        first = session.build(ListSink())
        assert _open_temp_files(p.root / "var" / "tmp") == []
        serial = make(tmp_path / "serial", raising=False)
        assert build_in_process(serial, 1).code == first
        assert p.outputs() == serial.outputs()
        # a title edit after it: the dependents' links take the new title, as a one-shot build's would
        doc = sorted((p.root / "content").rglob("*.md"))[0]
        for q in (p, serial):
            target = q.root / "content" / doc.relative_to(p.root / "content")
            target.write_text(target.read_text().replace("title: ", "title: Renamed ", 1))
        again = session.build(ListSink(), changed={doc.relative_to(p.root / "content").as_posix()})
        assert build_in_process(serial, 1).code == again
        assert p.outputs() == serial.outputs()
    finally:
        session.close()


def test_sqldom_timings_prints_each_phase_of_the_main_process_and_of_every_worker(tmp_path: Path) -> None:
    """``SQLDOM_TIMINGS=1``: one stderr line per phase and process (for performance work); the build is unchanged."""
    timed, plain = make(tmp_path / "timed", notes=False), make(tmp_path / "plain", notes=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    proc = subprocess.run([sys.executable, "-m", "sqldom", "build", "--json", "-j", "2", "-C", str(timed.root)],
                          capture_output=True, text=True, timeout=120, env={**env, "SQLDOM_TIMINGS": "1"})
    b = plain.build("-j", "2")
    assert proc.returncode == b.code == 1 and "Traceback" not in proc.stderr   # (the broken links)
    lines = [line.split() for line in proc.stderr.splitlines() if line.startswith("sqldom-timing ")]
    labels = {(int(w[6]), " ".join(w[7:])) for w in lines}   # time, cpu N s, pid N, label
    main = {label for pid, label in labels if pid == main_pid(labels)}
    assert {"walked", "scanned", "planned", "parsed", "written", "executed", "recorded", "mirrored"} <= main
    workers = {pid for pid, label in labels if label == "worker phase 1 done"}
    assert len(workers) == 2 and all((pid, "worker phase 0 starts") in labels for pid in workers)
    stamps = [float(w[1]) for w in lines]   # (the wall clock, so that processes line up)
    assert abs(min(stamps) - time.time()) < 600 and max(stamps) - min(stamps) < 120
    assert "sqldom-timing" not in b.stderr
    assert timed.outputs() == plain.outputs()


def main_pid(labels: set[tuple[int, str]]) -> int:
    """The main process: the one that marks the walk."""
    return next(pid for pid, label in labels if label == "walked")


def test_outputs_come_back_from_the_workers_packs_and_an_unreadable_pack_is_written_again_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker sends a staged page's hash, not its bytes; this process reads them from the pack for the blobs table.

    Every page's blob must hold the page's bytes. Where a pack cannot be read
    back, this process writes that document itself: the same database and build/.
    """
    from sqldom.fs import PackReader
    one, many, broken = (make(tmp_path / name, raising=False) for name in ("j1", "j2", "broken"))
    a, b = build_in_process(one, 1), build_in_process(many, 2)
    assert state(one, a) == state(many, b)
    con = many.db()
    try:
        blobs = dict(con.execute("select build.path, blobs.data from build join blobs on blobs.hash = build.hash"))
    finally:
        con.close()
    assert blobs == many.outputs() and len(blobs) == DOCS + 40   # (documents, notes, text files)

    calls: list[int] = []
    read = PackReader.read

    def failing(self: PackReader, at: Any) -> bytes:
        calls.append(1)
        if len(calls) % 3 == 0:
            raise OSError(5, "Input/output error", at.pack)
        return read(self, at)
    monkeypatch.setattr(PackReader, "read", failing)
    c = build_in_process(broken, 2)
    assert len(calls) > DOCS // 2
    assert state(broken, c) == state(one, a)
