"""Every query of var/build.db. Nothing SQLAlchemy-shaped leaves this module.

Reads and writes go through one plain ``sqlite3`` connection (cheap,
set-based, no ORM round trips); each build phase's writes are one transaction
(``record``). SQLAlchemy defines the schema (db/tables.py, migrations) and is
imported only to create or upgrade the database, so a build never pays for it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import xxhash

from sqldom.db.migrate import ensure_schema
from sqldom.errors import DatabaseError
from sqldom.model import Problem, Read
from sqldom.scan import Recorded

if TYPE_CHECKING:
    from pathlib import Path

    from sqldom.db.batch import Batch

CHUNK = 900  # stay under SQLite's bound-parameter limit


def chunks(items: list[Any], n: int = CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i: i + n]


class StepRow(NamedTuple):
    id: str
    kind: str
    status: str
    parser: str | None
    writer: str | None
    output: str | None
    last_run: int | None
    reason: str | None
    image_tag: str | None = None
    image_digest: str | None = None


class ContainerRow(NamedTuple):
    """A workshop step as last recorded (``steps`` rows of kind ``container``)."""

    id: str
    status: str
    last_run: int | None
    reason: str | None
    image_tag: str | None
    image_digest: str | None
    image_id: str | None
    image_pushed: str | None
    position: int | None
    title: str | None
    doc: str | None
    text: str | None


CONTAINER_COLUMNS = ContainerRow._fields


class OutputRow(NamedTuple):
    path: str
    hash: str
    step: str
    size: int
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    inode: int | None = None
    mirrored_ns: int | None = None


V = TypeVar("V")


class Lazy(Mapping[str, V]):
    """Rows by key, read on demand: a narrow build looks at a few of a table's 100,000 rows.

    Iterating, or asking the length, reads them all once: still correct, just not narrow.
    """

    def __init__(self, one: Callable[[str], V | None], everything: Callable[[], dict[str, V]]) -> None:
        self._one = one
        self._everything = everything
        self._cache: dict[str, V | None] = {}
        self._all: dict[str, V] | None = None

    def __getitem__(self, key: str) -> V:
        if self._all is not None:
            return self._all[key]
        if key not in self._cache:
            self._cache[key] = self._one(key)
        value = self._cache[key]
        if value is None:
            raise KeyError(key)
        return value

    def _full(self) -> dict[str, V]:
        if self._all is None:
            self._all = self._everything()
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())


class Overlay(Mapping[str, V]):
    """``base`` with some keys replaced (``put``) and some removed (``gone``), without copying it."""

    def __init__(self, base: Mapping[str, V], put: dict[str, V], gone: set[str]) -> None:
        self.base, self.put, self.gone = base, put, gone

    def __getitem__(self, key: str) -> V:
        if key in self.put:
            return self.put[key]
        if key in self.gone:
            raise KeyError(key)
        return self.base[key]

    def _keys(self) -> set[str]:
        return (set(self.base) - self.gone) | set(self.put)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


class Trace(NamedTuple):
    """A ``traces`` row, decoded: a (reads -> results) record a step can be restored from."""

    id: int
    reads: list[Read]
    results: dict[str, Any]
    reads_json: str   # (as stored: what a restore records again as the step's deps)


# traces rows: step, phase, reads JSON, results JSON, outputs JSON, run (sqldom/packing.py)
TraceRow = tuple[str, str, str, str, str, int]


# What the steps of a batch read and found: deps, facts rows, problems, traces rows. The bulk of a big
# build's batch, so it is what ``Batch.spill`` moves out of memory.
StepRows = tuple[dict[tuple[str, str], str], dict[str, str], dict[tuple[str, str], list[Problem]], list[TraceRow]]


# Rows a big build makes one of per step: tuples named as the table's columns (a dict per row
# costs three times the memory). ``Store._insert`` takes them, or dicts, by column name;
# a ``steps`` row is a ``StepRow``, what the session keeps of it too.
class SourceUpsert(NamedTuple):
    path: str
    hash: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    scanned_ns: int


# A ``build`` row as this build writes it (stat unknown until mirrored): an ``OutputRow`` itself, so
# that the rows just recorded serve as the mirror's rows without a copy (100,000s in a cold build).
BuildUpsert = OutputRow


class OutputStat(NamedTuple):
    """The stat of an output file as just mirrored (the update's parameters, in order)."""

    mtime_ns: int
    ctime_ns: int
    inode: int
    mirrored_ns: int
    path: str


class Execution(NamedTuple):
    run: int
    step: str
    outcome: str
    reason: str | None
    duration_ms: float


# (builtin code hash, config files): what the no-op probe compares (table ``probe``, sqldom/probe.py)
ProbeRow = tuple[str, list[str]]

TRACES_KEPT = 8
# A record that writes this many read lists, and at least one per row of `steps` (a cold or
# full build), drops the deps index and creates it again after its inserts: one sort
# instead of a random insert per row into an index bigger than SQLite's page cache.
BULK_READS = 1000


class Store:
    def __init__(self, db: Path, shown: str = "var/build.db") -> None:
        self.path = db
        self.shown = shown
        ensure_schema(db, shown)
        try:
            self.raw = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
            self.raw.execute("PRAGMA busy_timeout=10000")
            self.raw.execute("PRAGMA foreign_keys=ON")
            self.raw.execute("PRAGMA synchronous=NORMAL")
            # Statement journals in memory: every statement of a big insert would otherwise copy
            # the pages it touches to a temp file first (a million writes for a cold 10k build).
            self.raw.execute("PRAGMA temp_store=MEMORY")
        except sqlite3.DatabaseError as e:
            raise DatabaseError(f"cannot open the database: {e}", path=shown) from e

    def reopen(self) -> None:
        """In a forked worker: a connection of its own, since a SQLite connection must not cross a fork.

        The inherited connections are kept (referenced, never used, never
        closed), so nothing in the worker can disturb the parent's.
        """
        self._inherited = self.raw
        self.raw = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.raw.execute("PRAGMA busy_timeout=10000")

    def close(self) -> None:
        self.raw.close()

    # ---- reads -------------------------------------------------------------

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self.raw.execute(sql, tuple(params)).fetchall()

    def _q_in(self, sql: str, items: Iterable[Any], extra: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` with ``{in}`` replaced by a placeholder list, in chunks."""
        out: list[tuple[Any, ...]] = []
        for part in chunks(list(items)):
            marks = ",".join("?" * len(part))
            out.extend(self.raw.execute(sql.replace("{in}", marks), (*part, *extra)).fetchall())
        return out

    def sources(self) -> dict[str, Recorded]:
        rows = self._q("select path, hash, size, mtime_ns, ctime_ns, inode, scanned_ns from sources")
        return {r[0]: Recorded._make(r[1:]) for r in rows}

    def source_hashes(self) -> dict[str, str]:
        """path -> hash of every ``sources`` row (built by sqlite3 itself: no row objects)."""
        return dict(self.raw.execute("select path, hash from sources"))

    def sources_of(self, paths: Iterable[str]) -> dict[str, Recorded]:
        rows = self._q_in("select path, hash, size, mtime_ns, ctime_ns, inode, scanned_ns from sources "
                          "where path in ({in})", paths)
        return {r[0]: Recorded._make(r[1:]) for r in rows}

    def lazy_steps(self) -> Lazy[StepRow]:
        return Lazy(self.step, self.steps)

    def lazy_outputs(self) -> Lazy[OutputRow]:
        return Lazy(self.output, self.outputs)

    def narrow_allowed(self) -> bool:
        """No step failed, none is a container step, every content source has its step (index lookups)."""
        if self.raw.execute("select 1 from steps where status = 'failed' or kind = 'container' limit 1"
                            ).fetchone() is not None:
            return False
        return self.every_source_has_a_step()

    def steps(self) -> dict[str, StepRow]:
        rows = self._q("select id, kind, status, parser, writer, output, last_run, reason, image_tag, "
                       "image_digest from steps")
        return {r[0]: StepRow._make(r) for r in rows}

    def containers(self) -> dict[str, ContainerRow]:
        """Workshop steps, by id."""
        rows = self._q(f"select {', '.join(CONTAINER_COLUMNS)} from steps where kind = 'container'")
        return {r[0]: ContainerRow._make(r) for r in rows}

    def workshops(self) -> list[str]:
        return [r[0] for r in self._q("select name from workshop")]

    def outputs(self) -> dict[str, OutputRow]:
        rows = self._q("select path, hash, step, size, mtime_ns, ctime_ns, inode, mirrored_ns from build")
        return {r[0]: OutputRow._make(r) for r in rows}

    def deps_of(self, steps: Iterable[str]) -> dict[tuple[str, str], list[Read]]:
        out: dict[tuple[str, str], list[Read]] = {}
        for step, phase, kind, target, key, h in self._q_in(
                "select step, phase, kind, target, key, hash from deps where step in ({in})", steps):
            out.setdefault((step, phase), []).append(Read(kind, target, key, h))
        return out

    def steps_reading(self, targets: Iterable[str], kinds: tuple[str, ...]) -> set[str]:
        marks = ",".join("?" * len(kinds))
        rows = self._q_in(f"select distinct step from deps where target in ({{in}}) and kind in ({marks})",
                          targets, kinds)
        return {r[0] for r in rows}

    def steps_reading_facts(self, changed: Iterable[tuple[str, str]]) -> set[str]:
        """Steps that read one of the (path, name) facts; name '*' stands for every fact of that path."""
        by_path: dict[str, set[str]] = {}
        for path, name in changed:
            by_path.setdefault(path, set()).add(name)
        found: set[str] = set()
        for step, target, key in self._q_in(
                "select step, target, key from deps where kind = 'fact' and target in ({in})", by_path):
            names = by_path[target]
            if key == "*" or "*" in names or key in names:
                found.add(step)
        return found

    def glob_patterns(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._q("select distinct target, hash from deps where kind = 'glob'")]

    def steps_with_glob(self, patterns: Iterable[str]) -> set[str]:
        return {r[0] for r in self._q_in("select distinct step from deps where kind = 'glob' and target in ({in})",
                                         patterns)}

    def image_reads(self) -> list[tuple[str, str, str]]:
        """(image, executor, identity) that command steps recorded; few rows, found through the index."""
        return [(r[0], r[1], r[2]) for r in self._q(
            "select distinct target, key, hash from deps where kind = 'image'")]

    def steps_with_image(self, images: list[tuple[str, str]]) -> set[str]:
        found: set[str] = set()
        for image, executor in images:
            found |= {r[0] for r in self._q("select distinct step from deps where target = ? and kind = 'image' "
                                            "and key = ?", (image, executor))}
        return found

    def code_changed(self, current: dict[str, str]) -> list[str]:
        """Names among ``current`` that some step read with another hash (index lookups, no scan)."""
        changed = []
        for name, h in current.items():
            row = self.raw.execute("select 1 from deps where target = ? and kind = 'code' and hash <> ? limit 1",
                                   (name, h)).fetchone()
            if row is not None:
                changed.append(name)
        return changed

    def steps_with_code(self, names: Iterable[str]) -> set[str]:
        return {r[0] for r in self._q_in("select distinct step from deps where kind = 'code' and target in ({in})",
                                         names)}

    def facts_of(self, paths: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for path, name, value in self._q_in("select path, name, value from facts where path in ({in})", paths):
            out.setdefault(path, {})[name] = json.loads(value)
        return out

    def traces_of(self, steps: Iterable[str], phase: str) -> dict[str, list[Trace]]:
        out: dict[str, list[Trace]] = {}
        for tid, step, reads, results in self._q_in(
                "select id, step, reads, results from traces where step in ({in}) and phase = ? "
                "order by id desc", steps, (phase,)):
            out.setdefault(step, []).append(
                Trace(tid, [Read(*r) for r in json.loads(reads)], json.loads(results), reads))
        return out

    def blob(self, h: str) -> bytes:
        row = self.raw.execute("select data from blobs where hash = ?", (h,)).fetchone()
        if row is None:
            raise DatabaseError(f"blob {h} is missing from the database", path=self.shown,
                                hint="run 'sqldom build --full' to rebuild it")
        return bytes(row[0])

    def blob_size(self, h: str) -> int | None:
        row = self.raw.execute("select size from blobs where hash = ?", (h,)).fetchone()
        return None if row is None else int(row[0])

    def blob_chunks(self, h: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of a blob in chunks, so a large output never sits whole in memory."""
        row = self.raw.execute("select rowid, size from blobs where hash = ?", (h,)).fetchone()
        if row is None:
            raise DatabaseError(f"blob {h} is missing from the database", path=self.shown,
                                hint="run 'sqldom build --full' to rebuild it")
        rowid, size = row
        with self.raw.blobopen("blobs", "data", rowid, readonly=True) as b:
            for offset in range(0, size, chunk):
                yield b.read(min(chunk, size - offset))

    def store_file_blob(self, path: str) -> str:
        """Stream a (large) file into ``blobs`` while hashing it; return the hash of what was stored.

        Goes through sqlite3's incremental blob I/O (SQLAlchemy has none), so
        memory does not grow with the file. A file that changes size while being
        read is read again.
        """
        from sqldom.hashing import CHUNK
        for _attempt in range(3):
            size = os.stat(path).st_size
            h = xxhash.xxh3_128()
            placeholder = f"partial-{os.getpid()}-{time.time_ns()}"
            self.raw.execute("BEGIN IMMEDIATE")
            try:
                rowid = int(self.raw.execute("insert into blobs (hash, size, data) values (?, ?, zeroblob(?))",
                                             (placeholder, size, size)).lastrowid or 0)
                copied = 0
                with open(path, "rb") as f, self.raw.blobopen("blobs", "data", rowid) as b:
                    while copied < size and (chunk := f.read(min(CHUNK, size - copied))):
                        b.write(chunk)
                        h.update(chunk)
                        copied += len(chunk)
                    grew = f.read(1) != b""
                if copied != size or grew:
                    self.raw.execute("ROLLBACK")
                    continue
                digest = h.hexdigest()
                if self.raw.execute("select 1 from blobs where hash = ?", (digest,)).fetchone():
                    self.raw.execute("delete from blobs where rowid = ?", (rowid,))
                else:
                    self.raw.execute("update blobs set hash = ? where rowid = ?", (digest, rowid))
                self.raw.execute("COMMIT")
                return digest
            except BaseException:
                self.raw.execute("ROLLBACK")
                raise
        raise OSError(f"{path} kept changing while it was read")

    def has_blobs(self, hashes: Iterable[str]) -> set[str]:
        return {r[0] for r in self._q_in("select hash from blobs where hash in ({in})", hashes)}

    def problems(self) -> list[Problem]:
        rows = self._q("select step, phase, path, line, severity, message from problems "
                       "order by path, line, step, id")
        return [Problem(step=r[0], phase=r[1], path=r[2], line=r[3], severity=r[4], message=r[5]) for r in rows]

    def steps_match_sources(self, n_sources: int) -> bool:
        """Every content source has a step, no other step exists, and none failed (index lookups, no rows loaded)."""
        if self.raw.execute("select 1 from steps where status = 'failed' limit 1").fetchone() is not None:
            return False
        if self.count_steps() != n_sources:
            return False
        return self.every_source_has_a_step()

    def every_source_has_a_step(self) -> bool:
        return self.raw.execute("select 1 from sources s where s.path not like '../%' and not exists "
                                "(select 1 from steps t where t.id = s.path) limit 1").fetchone() is None

    def count_steps(self) -> int:
        return int(self.raw.execute("select count(*) from steps").fetchone()[0])

    def last_run_finished(self) -> bool:
        row = self.raw.execute("select finished_at from runs order by id desc limit 1").fetchone()
        return row is None or row[0] is not None

    def step(self, step_id: str) -> StepRow | None:
        row = self.raw.execute("select id, kind, status, parser, writer, output, last_run, reason, image_tag, "
                               "image_digest from steps where id = ?", (step_id,)).fetchone()
        return StepRow(*row) if row else None

    def output(self, path: str) -> OutputRow | None:
        row = self.raw.execute("select path, hash, step, size, mtime_ns, ctime_ns, inode, mirrored_ns from build "
                               "where path = ?", (path,)).fetchone()
        return OutputRow._make(row) if row else None

    def output_owner(self, path: str) -> str | None:
        row = self.raw.execute("select step from build where path = ?", (path,)).fetchone()
        return row[0] if row else None

    def outputs_of(self, step_id: str) -> list[tuple[str, str, int]]:
        return [(r[0], r[1], r[2]) for r in self._q("select path, hash, size from build where step = ?",
                                                    (step_id,))]

    def run_started(self, run: int) -> float | None:
        row = self.raw.execute("select started_at from runs where id = ?", (run,)).fetchone()
        return row[0] if row else None

    def executions_of(self, step: str, limit: int = 5) -> list[tuple[Any, ...]]:
        return self._q("select e.run, e.outcome, e.reason, e.duration_ms, r.started_at from executions e "
                       "join runs r on r.id = e.run where e.step = ? order by e.run desc, e.id desc limit ?",
                       (step, limit))

    # ---- writes ------------------------------------------------------------------
    #
    # The schema is SQLAlchemy's (db/tables.py, created and upgraded by Alembic), but
    # the writes are plain SQL on the sqlite3 connection: importing SQLAlchemy costs
    # about 200 ms, more than an incremental build, and its executemany builds a
    # dict per row where these bind tuples. Column names come from the rows' keys
    # (our own code), so a column added by a migration needs no change here;
    # tests/db check every statement against the tables.

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the writer lock is taken up front)."""
        c = self.raw
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def next_run_id(self) -> int:
        """The id the running build will have; safe because only the lock holder writes runs."""
        return int(self.raw.execute("select coalesce(max(id), 0) + 1 from runs").fetchone()[0])

    def record_quiet_run(self, run: int, command: str, started_at: float, counts: dict[str, int],
                         probe: ProbeRow | None = None) -> None:
        """The history row of a build that recorded nothing else (a no-op), and the probe's row."""
        cols = ["id", "command", "started_at", "finished_at", *counts]
        marks = ",".join("?" * len(cols))
        with self.transaction() as c:
            c.execute(f"insert into runs ({','.join(cols)}) values ({marks})",
                      (run, command, started_at, time.time(), *counts.values()))
            self._set_probe(c, probe)

    def finish_run(self, run: int, counts: dict[str, int], probe: ProbeRow | None = None) -> None:
        """The run is done: its counts, and whether the next one-shot build may be answered by the probe."""
        sets = ", ".join(f"{c} = ?" for c in counts)
        with self.transaction() as c:
            c.execute(f"update runs set finished_at = ?, {sets} where id = ?", (time.time(), *counts.values(), run))
            self._set_probe(c, probe)

    @staticmethod
    def _set_probe(c: sqlite3.Connection, probe: ProbeRow | None) -> None:
        if probe is None:
            c.execute("delete from probe")
        else:
            c.execute("insert into probe (id, builtin, config_files) values (1, ?, ?) on conflict (id) do update "
                      "set builtin = excluded.builtin, config_files = excluded.config_files",
                      (probe[0], json.dumps(probe[1])))

    def insert_blobs(self, blobs: dict[str, bytes]) -> None:
        if not blobs:
            return
        with self.transaction() as c:
            self._insert_blobs(c, blobs)

    def _insert_blobs(self, c: sqlite3.Connection, blobs: dict[str, bytes]) -> None:
        missing = set(blobs) - self.has_blobs(blobs)
        if missing:
            c.executemany("insert or ignore into blobs (hash, size, data) values (?, ?, ?)",
                          ((h, len(blobs[h]), blobs[h]) for h in sorted(missing)))

    @staticmethod
    def _insert(c: sqlite3.Connection, table: str, rows: Iterable[Any], verb: str = "insert",
                upsert_key: str | None = None) -> None:
        """Insert rows, all dicts with the same keys or all of one NamedTuple; ``upsert_key``: update the row that has that key."""
        it = iter(rows)
        first = next(it, None)
        if first is None:
            return
        named = isinstance(first, tuple)
        cols = list(first._fields) if named else list(first)
        sql = f"{verb} into {table} ({', '.join(cols)}) values ({', '.join('?' * len(cols))})"
        if upsert_key is not None:
            sets = ", ".join(f"{col} = excluded.{col}" for col in cols if col != upsert_key)
            sql += f" on conflict ({upsert_key}) do update set {sets}"
        every = itertools.chain((first,), it)
        c.executemany(sql, every if named else (tuple(r[col] for col in cols) for r in every))

    @staticmethod
    def _delete_in(c: sqlite3.Connection, table: str, column: str, keys: list[str]) -> None:
        for part in chunks(keys):
            c.execute(f"delete from {table} where {column} in ({','.join('?' * len(part))})", part)

    def record(self, b: Batch, command: str = "build", started_at: float | None = None) -> None:
        """Write a build's results and its run row atomically: either all of it is in the database, or none.

        The run row stays unfinished (``finished_at`` NULL) until ``finish_run``:
        a build that dies after this point makes the next one verify every step.

        The first record of a database (no step yet, none to delete) runs without
        foreign-key checks: every row it writes refers to a step or run it writes
        itself, there is nothing to cascade, and the checks were a third of its
        time (a lookup in ``steps`` for each of ~130,000 reads at 10,000 documents).
        """
        first = not b.steps_delete and not self.raw.execute("select exists (select 1 from steps)").fetchone()[0]
        if first:
            self.raw.execute("PRAGMA foreign_keys=OFF")   # (only outside a transaction does it take effect)
        try:
            self._record(b, command, started_at, first)
        finally:
            if first:
                self.raw.execute("PRAGMA foreign_keys=ON")

    def _record(self, b: Batch, command: str, started_at: float | None, first: bool) -> None:
        with self.transaction() as c:
            c.execute("insert into runs (id, command, started_at, built, restored, unchanged, deleted, failed, errors) "
                      "values (?, ?, ?, 0, 0, 0, 0, 0, 0)", (b.run, command, started_at or time.time()))
            if b.blobs:
                self._insert_blobs(c, b.blobs)
            self._delete_in(c, "sources", "path", b.sources_delete)
            self._insert(c, "sources", b.sources_upsert, upsert_key="path")
            self._delete_in(c, "steps", "id", b.steps_delete)
            self._insert(c, "steps", b.steps_upsert, upsert_key="id")
            self._insert(c, "steps", b.containers_upsert, upsert_key="id")
            self._delete_in(c, "workshop", "name", b.workshop_delete)
            self._insert(c, "workshop", b.workshop_upsert, upsert_key="name")
            index = self._drop_reverse_index(c) if self._bulk(c, b) else None
            for rows in b.step_rows():
                self._record_step_rows(c, b.run, rows, trim=not first)
            if index is not None:
                self._create_sorting_on_disk(c, index)
            self._delete_in(c, "build", "path", b.build_delete)
            self._insert(c, "build", b.build_upsert, upsert_key="path")
            self._insert(c, "executions", b.executions)
            self._insert(c, "executions", b.step_executions)

    @staticmethod
    def _bulk(c: sqlite3.Connection, b: Batch) -> bool:
        n = b.deps_count()
        return n >= BULK_READS and n >= int(c.execute("select count(*) from steps").fetchone()[0])

    @staticmethod
    def _drop_reverse_index(c: sqlite3.Connection) -> str | None:
        """Drop ix_deps_target inside the record's transaction; its CREATE statement, as the schema has it."""
        row = c.execute("select sql from sqlite_master where type = 'index' and name = 'ix_deps_target'").fetchone()
        if row is None or not row[0]:
            return None
        c.execute("drop index ix_deps_target")
        return str(row[0])

    @staticmethod
    def _create_sorting_on_disk(c: sqlite3.Connection, create: str) -> None:
        """Run CREATE INDEX with its sort in a temp file: in memory it grew this process by the index's size.

        SQLite's temp file goes to $SQLITE_TMPDIR, $TMPDIR, /var/tmp, /tmp or the
        working folder; where none can take it, the sort runs in memory instead.
        """
        c.execute("PRAGMA temp_store=FILE")
        try:
            c.execute(create)
        except sqlite3.OperationalError:
            c.execute("PRAGMA temp_store=MEMORY")
            c.execute(create)
        finally:
            c.execute("PRAGMA temp_store=MEMORY")

    def _record_step_rows(self, c: sqlite3.Connection, run: int, rows: StepRows, trim: bool = True) -> None:
        """One part of a batch's step rows; each (step, phase) first loses the rows it had.

        ``trim``: keep only the last TRACES_KEPT traces of each (step, phase); the
        first record has nothing to trim (and the query cost it 0.1 s at 10k).
        """
        deps, facts, problems, traces = rows
        if deps:
            c.executemany("delete from deps where step = ? and phase = ?", list(deps))
            c.executemany("insert or replace into deps (step, phase, kind, target, key, hash) "
                          "values (?, ?, ?, ?, ?, ?)",
                          ((s, p, *r) for (s, p), reads in deps.items() for r in json.loads(reads)))
        if facts:
            self._delete_in(c, "facts", "path", list(facts))
            c.executemany("insert into facts (path, name, value, hash) values (?, ?, ?, ?)",
                          ((path, *row) for path, packed in facts.items() for row in json.loads(packed)))
        if problems:
            c.executemany("delete from problems where step = ? and phase = ?", list(problems))
            self._insert(c, "problems", [{"run": run, **p.as_dict()} for plist in problems.values()
                                         for p in plist])
        if traces:
            c.executemany("insert into traces (step, phase, reads, results, outputs, run) "
                          "values (?, ?, ?, ?, ?, ?)", traces)
            if trim:
                self._trim_traces(c, sorted({tr[0] for tr in traces}))

    @staticmethod
    def _trim_traces(c: sqlite3.Connection, steps: list[str]) -> None:
        for part in chunks(steps):
            c.execute(
                "delete from traces where id in (select id from (select id, row_number() over "
                "(partition by step, phase order by id desc) as n from traces where step in "
                f"({','.join('?' * len(part))})) where n > {TRACES_KEPT})", tuple(part))

    def update_output_stats(self, rows: Iterable[OutputStat]) -> None:
        """After mirroring: remember each output file's stat so the next check needs no read."""
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            return
        rows = itertools.chain((first,), rows)
        with self.transaction() as c:
            c.executemany("update build set mtime_ns = ?, ctime_ns = ?, inode = ?, mirrored_ns = ? where path = ?",
                          rows)

    def collect_garbage(self) -> int:
        """Drop blobs nothing refers to any more (sources, outputs, remembered traces)."""
        with self.transaction() as c:
            res = c.execute(
                "delete from blobs where hash not in (select hash from sources union select hash from build "
                "union select j.value from traces, json_each(traces.outputs) as j)")
            return int(res.rowcount or 0)
