"""bench/run.py still runs end to end (20 documents, one run, sqldom only). No timing is asserted:
the benchmark itself is a standalone script, never run by CI (bench/README.md)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO.parent / "shared" / "tools" / "gen_corpus.py"


@pytest.mark.skipif(not GENERATOR.is_file(), reason=f"corpus generator not found at {GENERATOR}")
def test_bench_runs_on_a_tiny_corpus_and_writes_a_results_file_with_a_sqldom_column(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--docs", "20", "--runs", "1", "--no-refs",
         "--out", str(out), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| scenario"))
    assert header.split("|")[2].strip() == "sqldom"
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}
    for scenario in ("cold build", "no-op", "one body edit", "restore after rm -rf build/"):
        assert rows[scenario][0].endswith(" s"), (scenario, rows[scenario])     # a time in the sqldom column
    assert rows["stale after title edit?"][0] == "no"
    assert "no step executed" in text                                           # restore of build/ ran nothing
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "work" / "trash").exists()                         # what the runs set aside is gone


def test_the_bench_sets_trees_aside_between_timed_builds_and_frees_them_only_when_nothing_is_timed(
        tmp_path: Path) -> None:
    """Freed inodes slow the next file creations on ext4 without a journal: see bench.tools.Trash."""
    sys.path.insert(0, str(REPO))
    from bench.tools import Trash
    tree = tmp_path / "build"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "page.html").write_text("x")
    inode = (tree / "a" / "page.html").stat().st_ino
    trash = Trash(tmp_path / "trash")
    trash.discard(tree)
    trash.discard(tmp_path / "never-existed")
    assert not tree.exists()
    kept = list((tmp_path / "trash").rglob("page.html"))
    assert [p.stat().st_ino for p in kept] == [inode]                            # moved, not freed
    trash.settle()                                                               # nothing freed: no wait
    trash.empty()
    assert not (tmp_path / "trash").exists()
    assert trash.emptied_at > float("-inf")


def test_the_bench_judges_a_busy_machine_by_the_cpu_others_used_while_it_waited(tmp_path: Path) -> None:
    """Not by the load average at the end, which counts the bench's own builds."""
    sys.path.insert(0, str(REPO))
    from bench import tools
    from bench.run import busy_elsewhere
    trash = tools.Trash(tmp_path / "trash")
    trash.QUIET = 0.3
    trash.empty()
    trash.emptied_at = time.monotonic()                  # (as if a tree was just freed)
    before = len(tools.IDLE_WAITS)
    trash.settle()                                       # waits, and measures the machine meanwhile
    assert len(tools.IDLE_WAITS) == before + 1 and 0.0 <= tools.IDLE_WAITS[-1] <= 1.0
    saved = list(tools.IDLE_WAITS)
    try:
        tools.IDLE_WAITS[:] = [0.05, 0.1]
        assert busy_elsewhere(3.9, 2) == ""              # quiet waits outweigh a high load at the start
        tools.IDLE_WAITS[:] = [0.05, 0.6]
        assert "60%" in busy_elsewhere(0.0, 2)
        tools.IDLE_WAITS[:] = []
        assert "load average 1.5" in busy_elsewhere(1.5, 2) and busy_elsewhere(0.2, 2) == ""
    finally:
        tools.IDLE_WAITS[:] = saved
