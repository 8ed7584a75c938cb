"""Scanning: what is under content/ now, and what changed since the database last looked.

A file is re-hashed unless its stat fingerprint (size, mtime_ns, ctime_ns,
inode) equals the recorded one *and* the recorded mtime was clearly older than
the scan that recorded it (git's "racily clean" rule): an edit landing within
the filesystem's timestamp granularity of that scan is never missed.
"""

from __future__ import annotations

import os
import stat as stat_mode
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, NamedTuple

from sqldom.fs import ignored, walk_files
from sqldom.hashing import hash_bytes, hash_file

if TYPE_CHECKING:
    from pathlib import Path

# Files larger than this are hashed in a stream and not kept in memory.
KEEP_BYTES_LIMIT = 8 << 20
# Bytes read by one scan kept in memory at most; beyond, they are handed to ``spill`` (stored as blobs).
KEEP_TOTAL_LIMIT = 32 << 20
# A scan that reads at least this many files asks ``prefetch`` to have the kernel start reading them.
PREFETCH_MIN = 256


class Recorded(NamedTuple):
    """A ``sources`` row (a tuple: tens of thousands are made per scan)."""

    hash: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    scanned_ns: int


class Stat(NamedTuple):
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @staticmethod
    def of(st: os.stat_result) -> Stat:
        return Stat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def racy_margin_ns(mtime_ns: int) -> int:
    """Timestamps that are whole seconds suggest a coarse filesystem: allow two seconds."""
    return 2_000_000_000 if mtime_ns % 1_000_000_000 == 0 else 50_000_000


def racy_margin_sql(mtime: str) -> str:
    """``racy_margin_ns`` as a SQL expression over the column ``mtime`` (the probe's set-based checks)."""
    return f"(case when {mtime} % 1000000000 = 0 then 2000000000 else 50000000 end)"


# ``trusted`` for a ``sources`` row, as SQL: its stat fingerprint alone may vouch for its hash
TRUSTED_SOURCE_SQL = (f"(mtime_ns < scanned_ns - {racy_margin_sql('mtime_ns')} "
                      f"and ctime_ns < scanned_ns - {racy_margin_sql('mtime_ns')})")


# ``mirror._trusted`` for a ``build`` row, as SQL
TRUSTED_OUTPUT_SQL = (f"(mtime_ns is not null and mirrored_ns is not null "
                      f"and mtime_ns < mirrored_ns - {racy_margin_sql('mtime_ns')})")


def trusted(rec: Recorded, st: Stat) -> bool:
    """True when the recorded hash can be reused without reading the file.

    (``TRUSTED_SOURCE_SQL`` says the same in SQL: change both together.)
    """
    if rec[1:5] != st:
        return False
    margin = racy_margin_ns(rec.mtime_ns)
    return rec.mtime_ns < rec.scanned_ns - margin and rec.ctime_ns < rec.scanned_ns - margin


_STAT = struct.Struct("<QqqQ")   # size, mtime_ns, ctime_ns, inode (inodes use all 64 bits on some filesystems)


class Stats(MutableMapping[str, Stat]):
    """path -> ``Stat``: the stat of each file the scan read held as 32 packed bytes, a trusted file's as is.

    A cold scan of 100,000 files keeps every stat until the record writes the
    ``sources`` rows; as tuples they were 21 MiB of the build's peak, packed 7.
    """

    def __init__(self) -> None:
        self.packed: dict[str, bytes | Stat] = {}

    def __getitem__(self, path: str) -> Stat:
        got = self.packed[path]
        return got if isinstance(got, Stat) else Stat._make(_STAT.unpack(got))

    def hold(self, path: str, st: Stat) -> None:
        """A trusted file's stat, kept as the walk made it. Its row is not rewritten, and packing costs
        0.5 µs a file: a scan that trusts most files (a watch backstop, ``status``) should not pay it."""
        self.packed[path] = st

    def __setitem__(self, path: str, st: Stat) -> None:
        self.packed[path] = _STAT.pack(*st)

    def __delitem__(self, path: str) -> None:
        del self.packed[path]

    def __contains__(self, path: object) -> bool:
        return path in self.packed

    def __iter__(self) -> Iterator[str]:
        return iter(self.packed)

    def __len__(self) -> int:
        return len(self.packed)


class ScanResult:
    """What a scan found. (A plain class: ``sqldom.db.store`` imports this module, and the no-op
    probe imports that one without paying for ``dataclasses``.)"""

    def __init__(self, started_ns: int) -> None:
        self.started_ns = started_ns
        self.hashes: dict[str, str] = {}          # every current path -> hash
        self.stats = Stats()
        self.added: list[str] = []
        self.changed: list[str] = []
        self.deleted: list[str] = []
        self.rehashed: list[str] = []             # rows to rewrite in `sources`
        self.data: dict[str, bytes] = {}          # bytes read by this scan
        self.big: dict[str, str] = {}             # hashed but too large to keep
        self.unreadable: dict[str, str] = {}      # path -> why it could not be read
        self.kept = 0                             # bytes held in ``data``

    @property
    def touched(self) -> set[str]:
        return set(self.added) | set(self.changed) | set(self.deleted)


def scan(files: dict[str, tuple[str, Stat | None]], recorded: dict[str, Recorded],
         store_big: Callable[[str], str] | None = None,
         spill: Callable[[dict[str, bytes]], None] | None = None,
         prefetch: Callable[[list[str]], Callable[[], None]] | None = None) -> ScanResult:
    """Compare the files on disk (path -> (absolute path, stat if known)) with the recorded rows.

    ``store_big(abspath) -> hash`` streams a file too large to keep in memory
    into the database as it hashes it, so its recorded hash is exactly that of
    the stored bytes even if the file changes meanwhile. ``spill(hash -> bytes)``
    stores what was read so far whenever more than KEEP_TOTAL_LIMIT bytes are
    held, so a cold scan of a large project does not keep every file in memory
    (``data`` then holds only the files read since the last spill).
    ``prefetch(abspaths) -> stop`` is told which files this scan is about to
    read when there are PREFETCH_MIN or more (``fs.prefetch``).
    """
    result = ScanResult(started_ns=time.time_ns())
    looked: list[tuple[str, str, Stat, Recorded | None, bool]] = []   # (rel, abspath, stat, row, trusted)
    for rel, (abspath, known) in files.items():
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(rel).decode("utf-8", "backslashreplace")   # printable, names the bytes
            result.unreadable[shown] = "the file name is not valid UTF-8; rename it"
            continue
        try:
            st = known or Stat.of(os.stat(abspath))
        except FileNotFoundError:
            continue   # vanished since the walk: treated as absent
        except OSError as e:
            _unreadable(result, rel, e, recorded.get(rel))
            continue
        rec = recorded.get(rel)
        looked.append((rel, abspath, st, rec, rec is not None and trusted(rec, st)))
    to_read = [a for _, a, st, _, ok in looked if not ok and st.size <= KEEP_BYTES_LIMIT]
    stop = prefetch(to_read) if prefetch is not None and len(to_read) >= PREFETCH_MIN else None
    try:
        for rel, abspath, st, rec, ok in looked:
            _take(result, rel, abspath, st, rec, ok, store_big, spill)
    finally:
        if stop is not None:
            stop()
    result.deleted = sorted(set(recorded) - set(result.hashes))
    result.added.sort()
    result.changed.sort()
    return result


def _take(result: ScanResult, rel: str, abspath: str, st: Stat, rec: Recorded | None, ok: bool,
          store_big: Callable[[str], str] | None, spill: Callable[[dict[str, bytes]], None] | None) -> None:
    """One file of ``scan``: its recorded hash if its stat vouches for it, else its bytes' hash."""
    if ok:
        assert rec is not None
        result.hashes[rel] = rec.hash
        result.stats.hold(rel, st)
        return
    try:
        h = _hash(rel, abspath, st, result, store_big)
    except FileNotFoundError:
        return
    except OSError as e:
        _unreadable(result, rel, e, rec)
        return
    result.hashes[rel] = h
    result.stats[rel] = st
    result.rehashed.append(rel)
    if spill is not None and result.kept > KEEP_TOTAL_LIMIT:
        spill({result.hashes[p]: d for p, d in result.data.items()})
        result.data.clear()
        result.kept = 0
    if rec is None:
        result.added.append(rel)
    elif rec.hash != h:
        result.changed.append(rel)


def _unreadable(result: ScanResult, rel: str, e: OSError, rec: Recorded | None) -> None:
    """A file that exists but cannot be read keeps its last recorded state (nothing is deleted)."""
    result.unreadable[rel] = f"cannot read: {e.strerror or e}"
    if rec is not None:
        result.hashes[rel] = rec.hash
        result.stats[rel] = Stat(*rec[1:5])


def _hash(rel: str, abspath: str, st: Stat, result: ScanResult,
          store_big: Callable[[str], str] | None) -> str:
    if st.size > KEEP_BYTES_LIMIT:
        h = store_big(abspath) if store_big is not None else hash_file(abspath)[0]
        result.big[rel] = abspath
        return h
    with open(abspath, "rb") as f:
        data = f.read()
    result.data[rel] = data
    result.kept += len(data)
    return hash_bytes(data)


def content_files(content: Path) -> dict[str, tuple[str, Stat | None]]:
    top = str(content)
    return {rel: (f"{top}/{rel}", Stat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
            for rel, st in walk_files(content)}


def scan_paths(content: Path, paths: Iterable[str], recorded: dict[str, Recorded],
               extra: dict[str, tuple[str, Stat | None]], config_recorded: Iterable[str] = (),
               store_big: Callable[[str], str] | None = None,
               known: Mapping[str, str] | None = None) -> ScanResult | None:
    """Scan only ``paths`` (content-relative, as a watcher reported them); take the rest from the record.

    ``config_recorded`` names the recorded ``../`` entries (build.py, sqldom.yaml).
    ``known`` (path -> hash of every recorded source) lets ``recorded`` hold only
    the rows of ``paths`` and of ``extra``; without it, ``recorded`` is every row.
    Returns None when a full walk is needed instead: a folder appeared or
    vanished, or a symlink is involved (the walk knows the confinement rules).
    """
    if known is None:
        known = {p: r.hash for p, r in recorded.items()}
    files = dict(extra)
    gone: list[str] = []
    for rel in paths:
        if not rel or any(ignored(part) for part in rel.split("/")):
            continue
        abspath = f"{content}/{rel}"
        try:
            st = os.lstat(abspath)
        except FileNotFoundError:
            if rel in known:
                gone.append(rel)
            elif any(r.startswith(rel + "/") for r in known):
                return None
            continue
        except OSError:
            return None
        if not stat_mode.S_ISREG(st.st_mode):
            if stat_mode.S_ISDIR(st.st_mode) or stat_mode.S_ISLNK(st.st_mode):
                return None
            continue
        files[rel] = (abspath, Stat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    partial = scan(files, {p: recorded[p] for p in files if p in recorded}, store_big)
    config_gone = [p for p in config_recorded if p in known and p not in files]
    hashes = dict(known)
    for p in gone + config_gone:
        hashes.pop(p, None)
    hashes.update(partial.hashes)
    partial.hashes = hashes
    partial.deleted = sorted(set(partial.deleted) | set(gone) | set(config_gone))
    return partial
