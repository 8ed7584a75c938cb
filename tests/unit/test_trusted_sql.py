"""The probe's SQL versions of the racily-clean rule (scan.TRUSTED_SOURCE_SQL, TRUSTED_OUTPUT_SQL) say exactly
what the scan's and the mirror's Python says, on every row: a drift would hide a racy edit from the probe."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import hypothesis.strategies as st
from hypothesis import given, settings

from sqldom.db.store import OutputRow
from sqldom.mirror import _trusted
from sqldom.scan import TRUSTED_OUTPUT_SQL, TRUSTED_SOURCE_SQL, Recorded, Stat, trusted

SECOND = 1_000_000_000
# timestamps around one moment, whole seconds included (the coarse-filesystem margin), ns apart
times = st.one_of(st.integers(1_700_000_000 * SECOND - 5 * SECOND, 1_700_000_000 * SECOND + 5 * SECOND),
                  st.integers(1_699_999_995, 1_700_000_005).map(lambda s: s * SECOND))


# distances around both margins (50 ms; 2 s for whole-second timestamps), so the boundaries are hit
gaps = st.sampled_from([0, 1, 49_999_999, 50_000_000, 50_000_001, 2 * SECOND - 1, 2 * SECOND, 2 * SECOND + 1,
                        -1, 3 * SECOND])


@settings(max_examples=300, deadline=None)
@given(mtime=times, ctime_gap=gaps, scanned_gap=gaps)
def test_the_sources_rule_in_sql_is_the_scans(mtime: int, ctime_gap: int, scanned_gap: int) -> None:
    ctime, scanned = mtime + ctime_gap // 2, mtime + scanned_gap
    rec = Recorded("h", 10, mtime, ctime, 7, scanned)
    con = sqlite3.connect(":memory:")
    con.execute("create table sources (mtime_ns int, ctime_ns int, scanned_ns int)")
    con.execute("insert into sources values (?, ?, ?)", (mtime, ctime, scanned))
    in_sql = bool(con.execute(f"select {TRUSTED_SOURCE_SQL} from sources").fetchone()[0])
    assert in_sql == trusted(rec, Stat(10, mtime, ctime, 7))


@settings(max_examples=300, deadline=None)
@given(mtime=st.one_of(st.none(), times), gap=st.one_of(st.none(), gaps))
def test_the_outputs_rule_in_sql_is_the_mirrors(mtime: int | None, gap: int | None) -> None:
    mirrored = None if gap is None or mtime is None else mtime + gap
    row = OutputRow("a.html", "h", "a.md", 10, mtime, 5, 7, mirrored)
    con = sqlite3.connect(":memory:")
    con.execute("create table build (mtime_ns int, mirrored_ns int)")
    con.execute("insert into build values (?, ?)", (mtime, mirrored))
    in_sql = bool(con.execute(f"select coalesce({TRUSTED_OUTPUT_SQL}, 0) from build").fetchone()[0])
    on_disk = SimpleNamespace(st_size=10, st_mtime_ns=mtime or 0, st_ctime_ns=5, st_ino=7)   # the recorded stat
    assert in_sql == _trusted(row, on_disk)  # type: ignore[arg-type]
