"""sqldom.scan: what changed under content/, never missing an edit (SPEC section 8)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sqldom.fs import prefetch
from sqldom.hashing import hash_bytes
from sqldom.scan import (
    KEEP_BYTES_LIMIT,
    PREFETCH_MIN,
    Recorded,
    ScanResult,
    Stat,
    content_files,
    racy_margin_ns,
    scan,
    trusted,
)

SECOND = 1_000_000_000
FAR = 3600 * SECOND      # "the recording scan happened long after the file's last change"


def _record(result: ScanResult, scanned_ns: int | None = None) -> dict[str, Recorded]:
    """What the engine would store in ``sources`` after ``result``."""
    at = result.started_ns if scanned_ns is None else scanned_ns
    return {p: Recorded(h, result.stats[p].size, result.stats[p].mtime_ns, result.stats[p].ctime_ns,
                        result.stats[p].inode, at)
            for p, h in result.hashes.items()}


def _settled(result: ScanResult) -> dict[str, Recorded]:
    """Recorded as if the scan ran well after every file was written (no racy rows)."""
    return _record(result, scanned_ns=time.time_ns() + FAR)


def _write(root: Path, rel: str, data: bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.fixture
def content(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    _write(root, "a.md", b"# A\n")
    _write(root, "docs/b.txt", b"B text\n")
    _write(root, "img/c.bin", bytes(range(256)))
    return root


def test_first_scan_adds_everything(content: Path) -> None:
    r = scan(content_files(content), {})
    assert r.added == ["a.md", "docs/b.txt", "img/c.bin"]
    assert r.changed == [] and r.deleted == []
    assert sorted(r.rehashed) == r.added
    assert r.hashes["a.md"] == hash_bytes(b"# A\n")
    assert r.data["docs/b.txt"] == b"B text\n"
    assert r.touched == {"a.md", "docs/b.txt", "img/c.bin"}


def test_unchanged_files_are_trusted_without_reading(content: Path) -> None:
    first = scan(content_files(content), {})
    r = scan(content_files(content), _settled(first))
    assert (r.added, r.changed, r.deleted, r.rehashed) == ([], [], [], [])
    assert r.hashes == first.hashes
    assert r.data == {}
    assert r.touched == set()


def test_added_changed_deleted(content: Path) -> None:
    rec = _settled(scan(content_files(content), {}))
    _write(content, "a.md", b"# A edited, longer\n")
    _write(content, "new/d.md", b"new")
    (content / "docs/b.txt").unlink()
    r = scan(content_files(content), rec)
    assert r.added == ["new/d.md"]
    assert r.changed == ["a.md"]
    assert r.deleted == ["docs/b.txt"]
    assert r.hashes["a.md"] == hash_bytes(b"# A edited, longer\n")
    assert "docs/b.txt" not in r.hashes
    assert r.touched == {"new/d.md", "a.md", "docs/b.txt"}


def test_touched_but_identical_is_rehashed_not_changed(content: Path) -> None:
    rec = _settled(scan(content_files(content), {}))
    st = os.stat(content / "a.md")
    os.utime(content / "a.md", ns=(st.st_atime_ns, st.st_mtime_ns + 5 * SECOND))
    r = scan(content_files(content), rec)
    assert r.changed == [] and r.added == [] and r.deleted == []
    assert r.rehashed == ["a.md"]
    assert r.hashes["a.md"] == rec["a.md"].hash


def test_same_size_edit_with_restored_mtime_is_seen_via_ctime(content: Path) -> None:
    rec = _settled(scan(content_files(content), {}))
    p = content / "a.md"
    st = os.stat(p)
    time.sleep(0.02)   # let the ctime clock tick
    p.write_bytes(b"# Z\n")                                          # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))                # `touch -r`, `cp -p`, `rsync -t`
    assert os.stat(p).st_size == st.st_size and os.stat(p).st_mtime_ns == st.st_mtime_ns
    r = scan(content_files(content), rec)
    assert r.changed == ["a.md"]
    assert r.hashes["a.md"] == hash_bytes(b"# Z\n")


def test_same_size_replacement_with_restored_mtime_is_seen_via_inode(content: Path) -> None:
    rec = _settled(scan(content_files(content), {}))
    p = content / "a.md"
    st = os.stat(p)
    tmp = content / "a.md.tmp"
    tmp.write_bytes(b"# Y\n")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, p)                                               # new inode, same size and mtime
    assert os.stat(p).st_ino != st.st_ino
    r = scan(content_files(content), rec)
    assert r.changed == ["a.md"]


def test_a_racy_row_is_rehashed_even_when_the_stat_matches(content: Path) -> None:
    """Simulate an edit that no stat field can see: only the racily-clean rule catches it."""
    p = content / "a.md"
    st = Stat.of(os.stat(p))
    stale = "0" * 32    # the recorded hash of what the file held when the row was written
    last_change = max(st.mtime_ns, st.ctime_ns)
    for scanned_ns in (last_change, last_change + 10_000_000, st.mtime_ns - SECOND):
        rec = {"a.md": Recorded(stale, st.size, st.mtime_ns, st.ctime_ns, st.inode, scanned_ns)}
        r = scan({"a.md": (p, st)}, rec)
        assert r.rehashed == ["a.md"], scanned_ns
        assert r.changed == ["a.md"]
        assert r.hashes["a.md"] == hash_bytes(b"# A\n")
    # the same row recorded well after the last change is trusted: the shortcut is real
    rec = {"a.md": Recorded(stale, st.size, st.mtime_ns, st.ctime_ns, st.inode, last_change + 10 * SECOND)}
    r = scan({"a.md": (p, st)}, rec)
    assert r.rehashed == [] and r.hashes["a.md"] == stale


def test_rows_recorded_by_a_real_scan_right_after_writing_are_racy(content: Path) -> None:
    first = scan(content_files(content), {})
    rec = _record(first)                       # scanned_ns = the scan's own start time
    p = content / "a.md"
    st = os.stat(p)
    p.write_bytes(b"# Q\n")                     # same size, quickly, with the mtime put back
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = scan(content_files(content), rec)
    assert "a.md" in r.changed


def test_file_vanishing_after_the_walk_is_deleted(content: Path) -> None:
    rec = _settled(scan(content_files(content), {}))
    files = content_files(content)
    (content / "a.md").unlink()
    files["a.md"] = (content / "a.md", None)    # stat unknown: scan stats it and finds nothing
    r = scan(files, rec)
    assert r.deleted == ["a.md"]
    assert "a.md" not in r.hashes


def test_known_stat_is_used_and_unknown_stat_is_taken(content: Path) -> None:
    files = {rel: (path, None) for rel, (path, _) in content_files(content).items()}
    r = scan(files, {})
    assert r.added == ["a.md", "docs/b.txt", "img/c.bin"]
    assert r.stats["a.md"] == Stat.of(os.stat(content / "a.md"))


def test_big_files_are_hashed_in_a_stream_and_not_kept(tmp_path: Path) -> None:
    root = tmp_path / "content"
    data = b"z" * (KEEP_BYTES_LIMIT + 1)
    _write(root, "big.bin", data)
    r = scan(content_files(root), {})
    assert r.hashes["big.bin"] == hash_bytes(data)
    assert "big.bin" not in r.data
    assert r.big["big.bin"] == str(root / "big.bin")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    r = scan(content_files(tmp_path / "c"), {"gone.md": Recorded("h", 1, 1, 1, 1, 10)})
    assert r.deleted == ["gone.md"] and r.added == [] and r.hashes == {}


def _children() -> set[str]:
    """This process's live and unreaped children (Linux)."""
    found: set[str] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update((task / "children").read_text().split())
    return found


class _Prefetches:
    """``fs.prefetch`` as the scan calls it, remembering what it was asked and whether it was stopped."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.stopped = 0

    def __call__(self, paths: list[str]) -> Callable[[], None]:
        self.asked.append(list(paths))
        stop = prefetch(paths)

        def counted() -> None:
            stop()
            self.stopped += 1
        return counted


def test_a_scan_of_many_files_prefetches_those_it_reads_and_finds_the_same(tmp_path: Path) -> None:
    root = tmp_path / "content"
    n = 3 * PREFETCH_MIN + 30
    for i in range(n):
        _write(root, f"d{i % 7}/f{i:04}.md", f"# {i}\n".encode() * (i % 5 + 1))
    _write(root, "big.bin", b"z" * (KEEP_BYTES_LIMIT + 1))
    settled = _settled(scan(content_files(root), {}))
    for i in range(0, n, 3):   # a third changed: the rest are trusted, never read
        _write(root, f"d{i % 7}/f{i:04}.md", b"changed\n")
    old = {p: r for p, r in settled.items() if p != "big.bin"}
    files = content_files(root)
    plain = scan(files, old)
    seen = _Prefetches()
    before = _children()
    got = scan(files, old, prefetch=seen)
    assert (got.hashes, got.added, got.changed, got.rehashed, got.data) == (
        plain.hashes, plain.added, plain.changed, plain.rehashed, plain.data)
    assert list(got.hashes) == list(plain.hashes)   # (same order too)
    read = [files[p][0] for p in plain.rehashed if p != "big.bin"]
    assert len(read) >= PREFETCH_MIN and seen.asked == [read]   # not the trusted files, not the big one
    assert seen.stopped == 1 and _children() == before   # the child is gone and reaped


def test_a_scan_of_few_files_does_not_prefetch(content: Path) -> None:
    seen = _Prefetches()
    r = scan(content_files(content), {}, prefetch=seen)
    assert r.added == ["a.md", "docs/b.txt", "img/c.bin"] and seen.asked == []


def test_prefetch_takes_missing_and_unreadable_paths_and_stops_cleanly(tmp_path: Path) -> None:
    ok = _write(tmp_path, "ok.md", b"ok\n")
    before = _children()
    stop = prefetch([str(tmp_path / "missing.md"), str(tmp_path), str(ok)] * 200)
    stop()
    stop()   # (twice is harmless)
    assert _children() == before


# --- trusted() -------------------------------------------------------------------------------------

T = 1_700_000_000_123_456_789      # a fine-grained (nanosecond) mtime


def _rec(mtime: int = T, ctime: int = T, scanned: int = T + 10 * SECOND, size: int = 5, inode: int = 42) -> Recorded:
    return Recorded("h", size, mtime, ctime, inode, scanned)


def _st(mtime: int = T, ctime: int = T, size: int = 5, inode: int = 42) -> Stat:
    return Stat(size, mtime, ctime, inode)


def test_trusted_when_everything_matches_and_the_row_is_old() -> None:
    assert trusted(_rec(), _st())


@pytest.mark.parametrize("st", [_st(size=6), _st(mtime=T + 1), _st(mtime=T - 1), _st(ctime=T + 1), _st(inode=43)])
def test_not_trusted_when_any_stat_field_differs(st: Stat) -> None:
    assert not trusted(_rec(), st)


@pytest.mark.parametrize("scanned", [T - SECOND, T, T + 1, T + 49_000_000])
def test_not_trusted_when_the_row_is_racy(scanned: int) -> None:
    assert not trusted(_rec(scanned=scanned), _st())


def test_not_trusted_when_the_ctime_is_racy() -> None:
    ctime = T + 10 * SECOND
    assert not trusted(_rec(ctime=ctime, scanned=ctime + 1), _st(ctime=ctime))


def test_whole_second_timestamps_get_a_two_second_margin() -> None:
    whole = 1_700_000_000 * SECOND
    assert racy_margin_ns(whole) == 2 * SECOND
    assert racy_margin_ns(T) < SECOND
    assert not trusted(_rec(mtime=whole, ctime=whole, scanned=whole + 1_500_000_000), _st(mtime=whole, ctime=whole))
    assert trusted(_rec(mtime=whole, ctime=whole, scanned=whole + 3 * SECOND), _st(mtime=whole, ctime=whole))
    assert trusted(_rec(scanned=T + 100_000_000), _st())


def test_stats_are_held_packed_and_read_back_whole() -> None:
    """``ScanResult.stats`` keeps 32 bytes per file; what comes back is the Stat that went in,
    at the edges of each field too (inodes use all 64 bits on some filesystems, mtimes can precede 1970)."""
    from sqldom.scan import Stats

    stats = Stats()
    edge = Stat(2**64 - 1, -(2**63), 2**63 - 1, 2**64 - 1)
    stats["a.md"] = Stat(10, 1_700_000_000_123_456_789, 1_700_000_000_123_456_790, 42)
    stats["b/c.md"] = edge
    assert stats["b/c.md"] == edge and isinstance(stats["b/c.md"], Stat)
    assert stats["a.md"].mtime_ns == 1_700_000_000_123_456_789 and stats["a.md"].inode == 42
    assert list(stats) == ["a.md", "b/c.md"] and len(stats) == 2 and "a.md" in stats and "x.md" not in stats
    del stats["a.md"]
    assert dict(stats) == {"b/c.md": edge}
    with pytest.raises(KeyError):
        stats["a.md"]
