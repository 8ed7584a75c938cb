"""Store.record with a batch whose step rows were partly spilled to a file (Batch.spill)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqldom.db.store import Batch, Store
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
