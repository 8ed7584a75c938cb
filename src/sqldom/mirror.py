"""Make build/ equal to the ``build`` table.

Outputs written by this build are written; every other file is checked by its
stat fingerprint (and by hash when the stat moved), so a tampered, missing or
stray file is put back in line and reported. Writes are atomic (temp file +
rename): build/ never holds a partial file, and leftover temp files of a
killed build are swept away.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqldom.db.store import OutputRow, Store
from sqldom.events import RepairedEvent, Sink
from sqldom.fs import TMP_PREFIX, atomic_write, remove_file, staging_folder, walk_files
from sqldom.hashing import hash_file
from sqldom.scan import racy_margin_ns


def _stat_row(path: str, st: os.stat_result, now: int) -> dict[str, Any]:
    return {"b_path": path, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino,
            "mirrored_ns": now}


def _trusted(row: OutputRow, st: os.stat_result) -> bool:
    if row.mtime_ns is None or row.mirrored_ns is None:
        return False
    if (row.size, row.mtime_ns, row.ctime_ns, row.inode) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                                            st.st_ino):
        return False
    return row.mtime_ns < row.mirrored_ns - racy_margin_ns(row.mtime_ns)


def mirror(build_dir: Path, store: Store, rows: dict[str, OutputRow], written: set[str], deleted: set[str],
           sink: Sink, full: bool = True) -> int:
    """Sync build/ with ``rows`` (the ``build`` table as just recorded).

    ``full=False`` (a watch batch) touches only this build's writes and deletions
    instead of checking every file. Returns how many files were repaired (not
    counting this build's own writes).
    """
    build_dir.mkdir(parents=True, exist_ok=True)   # an empty project still gets its (empty) build/
    staging = staging_folder(build_dir.parent / "var", build_dir) if (written or full) else None
    if full:
        on_disk = dict(walk_files(build_dir, skip_ignored=False))
    else:
        on_disk = {}
        for path in written | deleted:
            try:
                on_disk[path] = os.stat(build_dir / path)
            except OSError:
                pass
        rows = {p: rows[p] for p in written if p in rows}
    now = time.time_ns()
    stats: list[dict[str, Any]] = []
    repaired = 0

    for path in sorted(set(on_disk) - set(rows)):
        remove_file(build_dir / path, build_dir)
        name = path.rsplit("/", 1)[-1]
        if path not in deleted and not name.startswith(TMP_PREFIX):
            sink.emit(RepairedEvent(path=path, what="stray"))
            repaired += 1

    total = len(rows)
    for i, (path, row) in enumerate(sorted(rows.items())):
        if i % 256 == 0:
            sink.progress(i, total, "mirroring")
        st = on_disk.get(path)
        what = None
        if path in written:
            pass
        elif st is None:
            what = "missing"
        elif _trusted(row, st):
            continue
        else:
            try:
                h, _ = hash_file(str(build_dir / path))
            except OSError:
                h = None
            if h == row.hash:
                stats.append(_stat_row(path, st, now))
                continue
            what = "modified"
        target = build_dir / path
        if target.is_dir():
            import shutil
            shutil.rmtree(target)
        new_st = atomic_write(target, store.blob(row.hash), staging)
        stats.append(_stat_row(path, new_st, now))
        if what is not None:
            sink.emit(RepairedEvent(path=path, what=what))
            repaired += 1
    store.update_output_stats(stats)
    return repaired
