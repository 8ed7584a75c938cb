"""Store.record with a batch whose step rows were partly spilled to a file (Batch.spill)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sqldom.db.batch import Batch
from sqldom.db.store import Store
from sqldom.model import Problem, Read
from sqldom.packing import fact_rows, reads_json


def step_row(sid: str, run: int) -> dict[str, object]:
    return {"id": sid, "kind": "document", "status": "built", "last_run": run, "reason": "new step",
            "parser": None, "writer": "copy", "output": sid, "image_tag": None, "image_digest": None}


def test_rows_set_again_after_a_spill_replace_the_spilled_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "build.db")
    b = Batch(run=1)
    b.steps_upsert = [step_row("a.md", 1), step_row("b.md", 1)]
    b.deps[("a.md", "write")] = reads_json([Read("source", "a.md", "", "old")])
    b.deps[("b.md", "write")] = reads_json([Read("source", "b.md", "", "b1")])
    b.facts["a.md"] = fact_rows({"title": "Old", "gone": 1})
    b.problems[("a.md", "write")] = [Problem(step="a.md", message="old problem")]
    b.traces.append(("a.md", "write", "[]", "{}", "[]", 1))
    b.spill(tmp_path / "tmp")
    assert (b.deps, b.facts, b.problems, b.traces) == ({}, {}, {}, [])   # out of memory
    b.deps[("a.md", "write")] = reads_json([Read("source", "a.md", "", "new"), Read("fact", "b.md", "title", "t")])
    b.facts["a.md"] = fact_rows({"title": "New"})
    b.problems[("a.md", "write")] = []
    b.traces.append(("a.md", "write", "[]", '{"again":true}', "[]", 1))
    b.spill(tmp_path / "tmp")
    b.traces.append(("b.md", "write", "[]", "{}", "[]", 1))   # (and a part still in memory)
    store.record(b)
    b.close()
    store.close()

    con = sqlite3.connect(tmp_path / "build.db")
    assert sorted(con.execute("select step, kind, target, key, hash from deps")) == [
        ("a.md", "fact", "b.md", "title", "t"), ("a.md", "source", "a.md", "", "new"),
        ("b.md", "source", "b.md", "", "b1")]
    assert list(con.execute("select path, name, value from facts")) == [("a.md", "title", '"New"')]
    assert list(con.execute("select count(*) from problems")) == [(0,)]
    assert list(con.execute("select step, results from traces order by id")) == [
        ("a.md", "{}"), ("a.md", '{"again":true}'), ("b.md", "{}")]
    assert not list((tmp_path / "tmp").iterdir())   # the spill file had no name


def test_rows_stay_in_memory_when_the_spill_file_cannot_be_made(tmp_path: Path) -> None:
    store = Store(tmp_path / "build.db")
    (tmp_path / "not-a-folder").write_text("a file where var/tmp/ should be")
    b = Batch(run=1)
    b.steps_upsert = [step_row("a.md", 1)]
    b.deps[("a.md", "write")] = reads_json([Read("source", "a.md", "", "h")])
    b.spill(tmp_path / "not-a-folder")
    assert b.spill_failed and b.spilled == 0 and b.deps   # kept, not lost
    b.spill(tmp_path / "not-a-folder")                    # (and not tried again)
    store.record(b)
    store.close()
    con = sqlite3.connect(tmp_path / "build.db")
    assert list(con.execute("select step, target, hash from deps")) == [("a.md", "a.md", "h")]


def _reads_batch(tmp_path: Path, n: int) -> Batch:
    """n documents, each reading itself and the next one's title; half the read lists spilled."""
    b = Batch(run=1)
    names = [f"d{i:03}.md" for i in range(n)]
    b.steps_upsert = [step_row(s, 1) for s in names]
    for i, s in enumerate(names):
        b.deps[(s, "write")] = reads_json([Read("source", s, "", f"h{i}"),
                                           Read("fact", names[(i + 1) % n], "title", f"t{i}")])
        if i == n // 2:
            b.spill(tmp_path / "tmp")
    return b


def _record_traced(tmp_path: Path, name: str, n: int) -> tuple[list[str], list[str]]:
    """Record a batch into a fresh database: (the statements it ran, the database dumped)."""
    store = Store(tmp_path / name)
    ran: list[str] = []
    store.raw.set_trace_callback(ran.append)
    b = _reads_batch(tmp_path, n)
    store.record(b)
    b.close()
    store.close()
    con = sqlite3.connect(tmp_path / name)
    dump = [line for line in con.iterdump() if "alembic_version" not in line and "INTO \"runs\"" not in line]
    con.close()
    return ran, dump


def test_a_record_of_every_steps_reads_rebuilds_the_reverse_index_with_the_same_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqldom.db.store as store_module
    monkeypatch.setattr(store_module, "BULK_READS", 5)
    bulk_ran, bulk = _record_traced(tmp_path, "bulk.db", 8)
    assert any(s.lower().startswith("drop index ix_deps_target") for s in bulk_ran)
    monkeypatch.setattr(store_module, "BULK_READS", 10**9)
    row_ran, by_row = _record_traced(tmp_path, "rows.db", 8)
    assert not any("drop index" in s.lower() for s in row_ran)
    assert bulk == by_row   # same schema (the index is back, as the migrations made it) and same rows
    con = sqlite3.connect(tmp_path / "bulk.db")
    plan = " ".join(str(r) for r in con.execute(
        "explain query plan select step from deps where target = 'd003.md' and kind = 'fact'"))
    assert "ix_deps_target" in plan
    assert list(con.execute("select step from deps where target = 'd003.md' and kind = 'fact'")) == [("d002.md",)]


def test_a_few_steps_reads_are_inserted_into_the_index_as_it_stands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "build.db")
    first = _reads_batch(tmp_path, 8)
    store.record(first)   # 8 steps recorded
    first.close()
    ran: list[str] = []
    store.raw.set_trace_callback(ran.append)
    b = Batch(run=2)
    b.steps_upsert = [step_row("d000.md", 2)]
    b.deps[("d000.md", "write")] = reads_json([Read("source", "d000.md", "", "again")])
    import sqldom.db.store as store_module
    monkeypatch.setattr(store_module, "BULK_READS", 1)
    store.record(b)   # one read list against 8 steps: not a bulk record
    store.close()
    assert not any("drop index" in s.lower() for s in ran)


def test_a_bulk_record_that_fails_leaves_the_index_and_the_rows_as_they_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqldom.db.store as store_module
    monkeypatch.setattr(store_module, "BULK_READS", 2)
    store = Store(tmp_path / "build.db")
    first = _reads_batch(tmp_path, 4)
    store.record(first)
    first.close()
    b = _reads_batch(tmp_path, 6)
    b.run = 2
    b.deps[("not-a-step.md", "write")] = reads_json([Read("source", "x", "", "h")])   # no steps row: refused
    with pytest.raises(sqlite3.IntegrityError):
        store.record(b)
    b.close()
    store.close()
    con = sqlite3.connect(tmp_path / "build.db")
    assert list(con.execute("select name from sqlite_master where name = 'ix_deps_target'")) == [("ix_deps_target",)]
    assert list(con.execute("select count(*), count(distinct step) from deps")) == [(8, 4)]


def test_the_index_is_sorted_in_memory_when_no_temp_file_can_be_made(tmp_path: Path) -> None:
    """Where SQLite finds no folder for its temp file, CREATE INDEX fails; the record still creates the index."""
    con = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    con.execute("create table t (a text)")
    con.executemany("insert into t values (?)", [(str(i),) for i in range(100)])

    class NoTempFiles:
        """The real connection, except that a sort spilled to a temp file fails as it does without one."""

        def execute(self, sql: str) -> sqlite3.Cursor:
            store_pragma = con.execute("pragma temp_store").fetchone()[0]
            if sql.startswith("create index") and store_pragma == 1:
                raise sqlite3.OperationalError("unable to open database file")
            return con.execute(sql)

    con.execute("begin")
    Store._create_sorting_on_disk(NoTempFiles(), "create index ix_t on t (a)")  # type: ignore[arg-type]
    con.execute("commit")
    assert list(con.execute("select name from sqlite_master where type = 'index'")) == [("ix_t",)]
    assert con.execute("pragma temp_store").fetchone()[0] == 2   # (MEMORY again, as Store sets it)
    con.close()


def test_the_first_record_writes_consistent_rows_and_leaves_foreign_keys_on(tmp_path: Path) -> None:
    """The first record skips the foreign-key checks (issue 7); what it writes still passes them, and
    the next record on the same connection (a watch session's) cascades deletions again."""
    store = Store(tmp_path / "build.db")
    b = Batch(run=1)
    b.steps_upsert = [step_row("a.md", 1), step_row("b.md", 1)]
    b.deps[("a.md", "write")] = reads_json([Read("source", "a.md", "", "h"), Read("fact", "b.md", "title", "t")])
    b.facts["b.md"] = fact_rows({"title": "B"})
    b.problems[("a.md", "write")] = [Problem(step="a.md", message="a problem")]
    store.record(b)
    assert store.raw.execute("pragma foreign_keys").fetchone()[0] == 1
    assert store.raw.execute("pragma foreign_key_check").fetchall() == []
    gone = Batch(run=2)
    gone.steps_delete = ["a.md"]
    store.record(gone)
    assert store.raw.execute("select count(*) from deps where step = 'a.md'").fetchone()[0] == 0
    assert store.raw.execute("select count(*) from problems").fetchone()[0] == 0
    store.close()

