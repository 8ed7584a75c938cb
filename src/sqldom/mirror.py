"""Make build/ equal to the ``build`` table.

Outputs written by this build are written; every other file is checked by its
stat fingerprint (and by hash when the stat moved), so a tampered, missing or
stray file is put back in line and reported. Writes are atomic (temp file +
rename): build/ never holds a partial file, and leftover temp files of a
killed build are swept away.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import pickle
import shutil
import stat
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Set
from pathlib import Path
from typing import Any

from sqldom import stop
from sqldom.db.store import OutputRow, OutputStat, Store
from sqldom.errors import OutputClashError
from sqldom.events import RepairedEvent, Sink
from sqldom.fs import TMP_PREFIX, Staged, atomic_write, real_folders, remove_file, staging_folder, walk_files
from sqldom.hashing import hash_file
from sqldom.place import STAT
from sqldom.scan import racy_margin_ns


def _stat_row(path: str, st: os.stat_result, now: int) -> OutputStat:
    return OutputStat(st.st_mtime_ns, st.st_ctime_ns, st.st_ino, now, path)


def _trusted(row: OutputRow, st: os.stat_result) -> bool:
    """(``scan.TRUSTED_OUTPUT_SQL`` says the same in SQL: change both together.)"""
    if row.mtime_ns is None or row.mirrored_ns is None:
        return False
    if (row.size, row.mtime_ns, row.ctime_ns, row.inode) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                                            st.st_ino):
        return False
    return row.mtime_ns < row.mirrored_ns - racy_margin_ns(row.mtime_ns)


STREAM_ABOVE = 1 << 20   # outputs larger than this are streamed from the database in chunks


def _inside(build_dir: Path, path: str) -> bool:
    """Every folder between build/ and ``path`` is a real folder (no symlink to follow)."""
    current = build_dir
    for part in path.split("/")[:-1]:
        current = current / part
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                return False
        except OSError:
            return False
    return True


def _clash_below(rows: Mapping[str, OutputRow], folder: str) -> str | None:
    prefix = folder + "/"
    return next((p for p in sorted(rows) if p.startswith(prefix)), None)


def _make_room(build_dir: Path, path: str, rows: Mapping[str, OutputRow], sink: Sink,
               checked: set[Path] | None = None) -> int:
    """Make build/<path> writable as a file without following any symlink.

    Symlinked folders on the way are replaced by real folders; a stray file
    where a folder is needed is removed; a symlink or special file at ``path``
    is unlinked (the link itself); a folder at ``path`` is removed unless other
    outputs live in it. A file or folder that another output needs raises
    ``OutputClashError`` naming both. Returns how many strays it removed.
    ``checked``: folders already made real during this mirror (not looked at again).
    """
    removed = _make_parents(build_dir, path, rows, sink, checked)
    _clear_target(build_dir, path, rows)
    return removed


def _make_parents(build_dir: Path, path: str, rows: Mapping[str, OutputRow], sink: Sink,
                  checked: set[Path] | None = None) -> int:
    target = build_dir / path
    removed = 0
    while checked is None or target.parent not in checked:
        try:
            for link in real_folders(build_dir, target.parent):
                sink.emit(RepairedEvent(path=link.relative_to(build_dir).as_posix(), what="stray"))
                removed += 1
            break
        except NotADirectoryError as e:
            blocker = Path(str(e.filename))
            rel = blocker.relative_to(build_dir).as_posix()
            if rel in rows:
                raise OutputClashError(f"build/{rel} is a file but build/{path} needs it to be a folder",
                                       hint=f"outputs {rel} (step {rows[rel].step}) and {path} (step "
                                            f"{rows[path].step}) clash: give one of them another name") from None
            os.unlink(blocker)              # a stray file (never an output) in the way
            sink.emit(RepairedEvent(path=rel, what="stray"))
            removed += 1
    if checked is not None:
        checked.add(target.parent)
    return removed


def _clear_target(build_dir: Path, path: str, rows: Mapping[str, OutputRow]) -> None:
    target = build_dir / path
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        inner = _clash_below(rows, path)
        if inner is not None:
            raise OutputClashError(f"build/{path} is a folder (build/{inner} is in it) but build/{path} "
                                   f"needs it to be a file",
                                   hint=f"outputs {path} (step {rows[path].step}) and {inner} (step "
                                        f"{rows[inner].step}) clash: give one of them another name")
        shutil.rmtree(target)              # a real folder holding no output; rmtree follows no link
    elif not stat.S_ISREG(st.st_mode):
        os.unlink(target)                   # a symlink (never followed) or a special file


def _write(build_dir: Path, store: Store, path: str, row: OutputRow, staging: Path | None,
           staged: Mapping[str, Staged] | None = None) -> os.stat_result:
    """Write one output; ``_make_room`` has just made its folders real.

    ``staged``: output hash -> where this build's workers left its bytes
    (``engine.Build._stage``); they are read from there rather than from the
    database.
    """
    where = staged.get(row.hash) if staged is not None else None
    if where is not None:
        try:
            data = where.read()
        except OSError:
            pass   # (gone: the database has them)
        else:
            return atomic_write(build_dir / path, data, staging, root=build_dir, parents_checked=True)
    size = row.size if row.size is not None else store.blob_size(row.hash)
    if size is not None and size <= STREAM_ABOVE:
        return atomic_write(build_dir / path, store.blob(row.hash), staging, root=build_dir, parents_checked=True)
    chunks = store.blob_chunks(row.hash)
    try:
        return atomic_write(build_dir / path, chunks, staging, root=build_dir, parents_checked=True)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


PLACE_PART = 4096   # moves pickled together for the placer


class PlacedFiles:
    """The outputs a ``Placer`` wrote, and each one's stat as ``place.py`` reported it (packed).

    ``paths`` are in ascending order (``Placer.start`` sorts them), as the
    mirror visits its rows: ``in_order`` looks them up by merging, with no
    index. At 100,000 outputs a dict of stat tuples was 21 MiB of the build's peak.
    """

    def __init__(self, paths: list[str], stats: bytes) -> None:
        self.paths = paths
        self.stats = stats

    def _stat(self, i: int) -> tuple[int, int, int] | None:
        st: tuple[int, int, int] = STAT.unpack_from(self.stats, i * STAT.size)
        return st if st[2] else None   # (no file has inode 0: place.py's mark of one it did not place)

    def __iter__(self) -> Iterator[str]:
        """The paths it placed."""
        return (path for i, path in enumerate(self.paths) if self._stat(i) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def rows(self, now: int, keep: Container[str]) -> Iterator[OutputStat]:
        """The ``build`` rows' stat update for each placed output in ``keep``, mirrored at ``now``."""
        for i, path in enumerate(self.paths):
            st = self._stat(i)
            if st is not None and path in keep:
                yield OutputStat(*st, now, path)

    def in_order(self) -> Callable[[str], tuple[int, int, int] | None]:
        """``lookup(path) -> stat or None``, for paths asked in ascending order."""
        at = 0

        def lookup(path: str) -> tuple[int, int, int] | None:
            nonlocal at
            while at < len(self.paths) and self.paths[at] < path:
                at += 1
            return self._stat(at) if at < len(self.paths) and self.paths[at] == path else None

        return lookup


class Placer:
    """Writes the outputs the workers staged into an empty build/, in a process of its own, while the record runs.

    A cold build's record keeps one core busy and leaves the other idle, and
    creating ten thousand files is mostly the kernel's work: done meanwhile, it
    is off the build's critical path (the workers only append each output to
    their pack, ``engine.Build._stage``). Not a thread: it and the record
    handed the GIL back and forth at every row and system call, and the record
    took a third longer. Not a fork either (see ``sqldom/place.py``). build/
    may hold outputs a moment before the database does: ``undo`` takes them
    back out if the record fails, and a build killed meanwhile leaves only whole
    files (the placer finishes them: see ``sqldom/place.py``), which the next
    build puts in line (SPEC: build/ free of partial files, the next build
    finishes the job).
    """

    def __init__(self, build_dir: Path, moves: Iterable[tuple[str, str, int, int]], tmp: Path) -> None:
        import subprocess
        import sys
        import tempfile
        self.placed: PlacedFiles | None = None
        self.paths: list[str] = []
        self.given = tempfile.TemporaryFile(dir=tmp)
        self.got = tempfile.TemporaryFile(dir=tmp)
        try:
            self._give(str(build_dir), moves)
            script = str(Path(__file__).with_name("place.py"))
            fds = (self.given.fileno(), self.got.fileno())
            self.process = subprocess.Popen([sys.executable, "-I", script, *map(str, fds)], pass_fds=fds,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            self.given.close()
            self.got.close()
            raise

    def _give(self, build_dir: str, moves: Iterable[tuple[str, str, int, int]]) -> None:
        """What ``place.py`` reads: build/, then the moves a part at a time, then None.

        In parts, so that neither the moves nor the pickler's memo of them are
        ever held whole: at 100,000 outputs that was the build's peak (+30 MiB).
        """
        pickle.dump(build_dir, self.given, protocol=pickle.HIGHEST_PROTOCOL)
        it = iter(moves)
        while part := list(itertools.islice(it, PLACE_PART)):
            self.paths.extend(move[0] for move in part)
            pickle.dump(part, self.given, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(None, self.given)
        self.given.flush()

    @staticmethod
    def start(build_dir: Path, rows: Iterable[tuple[Any, ...]], staged: Mapping[str, Staged], tmp: Path) -> Placer | None:
        """A placer for ``rows`` ((output path, hash, ...), as ``build`` rows) whose bytes are staged;
        None unless build/ is empty."""
        by_path = sorted(rows, key=operator.itemgetter(0))   # (each folder's files together)
        if not any(r[1] in staged for r in by_path) or not _empty(build_dir):
            return None
        try:
            return Placer(build_dir, ((r[0], *staged[r[1]]) for r in by_path if r[1] in staged), tmp)
        except OSError:   # (no process now: the mirror writes them)
            return None

    def join(self) -> PlacedFiles:
        """What was placed in build/, with its stat (nothing if the process failed: the mirror then
        writes every output, replacing any file it had placed)."""
        if self.placed is None:
            self.process.wait()
            self.placed = PlacedFiles([], b"")
            try:
                self.got.seek(0)
                got = self.got.read()
                if self.process.returncode == 0 and len(got) == STAT.size * len(self.paths):
                    self.placed = PlacedFiles(self.paths, got)
            except OSError:
                pass
            finally:
                self.given.close()
                self.got.close()
        return self.placed

    def undo(self, build_dir: Path) -> None:
        """The record failed: take the placed outputs out of build/ again (it was empty)."""
        for path in self.join():
            with contextlib.suppress(OSError):
                os.unlink(build_dir / path)


def mirror(build_dir: Path, store: Store, rows: Mapping[str, OutputRow], written: Set[str], deleted: set[str],
           sink: Sink, full: bool = True, staged: Mapping[str, Staged] | None = None,
           placed: PlacedFiles | None = None) -> int:
    """Sync build/ with ``rows`` (the ``build`` table as just recorded).

    ``full=False`` (a watch batch) touches only this build's writes and deletions
    instead of checking every file. Returns how many files were repaired (not
    counting this build's own writes).

    No symlink under build/ is ever followed: a link (to a file or a folder,
    inside the project or not) is removed as a stray, or replaced by the output
    that belongs at its path, so nothing is written or removed outside build/.
    Two outputs that need one path as a file and as a folder are skipped, the
    rest is mirrored, then ``OutputClashError`` names them.

    ``placed``: outputs a ``Placer`` already moved into build/, which was empty
    before; they are all it holds.
    """
    build_dir.mkdir(parents=True, exist_ok=True)   # an empty project still gets its (empty) build/
    # (then everything in it is ours: see _write_fresh)
    fresh = full and (placed is not None or _empty(build_dir))
    staging = staging_folder(build_dir.parent / "var", build_dir) if (written or full) else None
    all_rows = rows
    if full:
        # (placed: the outputs just moved into an empty build/ are all it holds)
        on_disk = {} if placed is not None else dict(walk_files(build_dir, skip_ignored=False, report_links=True))
    else:
        on_disk = {}
        for path in written | deleted:
            if not _inside(build_dir, path):
                continue                     # under a symlinked folder: not in build/ at all
            try:
                on_disk[path] = os.lstat(build_dir / path)
            except OSError:
                pass
        rows = {p: rows[p] for p in written if p in rows}
    now = time.time_ns()
    stats: list[OutputStat] = []
    repaired = 0
    clashes: list[OutputClashError] = []

    for path in sorted(set(on_disk) - set(rows)):
        remove_file(build_dir / path, build_dir)
        name = path.rsplit("/", 1)[-1]
        if path not in deleted and not name.startswith(TMP_PREFIX):
            sink.emit(RepairedEvent(path=path, what="stray"))
            repaired += 1

    total = len(rows)
    todo: list[tuple[str, OutputRow, str | None]] = []
    placed_stat = placed.in_order() if placed is not None else None
    for i, path in enumerate(sorted(rows)):
        if i % 256 == 0:
            sink.progress(i, total, "checking")
            stop.check()
        row = rows[path]
        st = on_disk.get(path)
        what = None
        if placed_stat is not None and placed_stat(path) is not None:
            continue
        if path in written:
            pass
        elif st is None:
            what = "missing"
        elif not stat.S_ISREG(st.st_mode):
            what = "modified"                # a symlink or special file where an output goes: never read
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
        todo.append((path, row, what))

    checked: set[Path] = set()
    results = _write_all(build_dir, store, todo, all_rows, staging, sink, checked, staged, set() if fresh else None)
    for i, ((path, _row, what), (new_st, removed, clash)) in enumerate(zip(todo, results, strict=True)):
        if i % 256 == 0:
            sink.progress(i, len(todo), "mirroring")
            stop.check()
        repaired += removed
        if clash is not None:
            clashes.append(clash)
            continue
        assert new_st is not None
        stats.append(_stat_row(path, new_st, now))
        if what is not None:
            sink.emit(RepairedEvent(path=path, what=what))
            repaired += 1
    # (the files this build's workers wrote: their rows are made as they are stored)
    store.update_output_stats(itertools.chain(placed.rows(now, rows) if placed is not None else (), stats))
    if clashes:
        first = clashes[0]
        more = len(clashes) - 1
        also = f" (and {more} more clash{'es' if more > 1 else ''})" if more else ""
        raise OutputClashError(first.message + also, hint=first.hint)
    return repaired


def _empty(folder: Path) -> bool:
    """Nothing in it at all (a cold build's build/, or one the user removed)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def _write_fresh(build_dir: Path, store: Store, path: str, row: OutputRow, staging: Path | None,
                 staged: Mapping[str, Staged] | None, made: set[str]) -> os.stat_result | None:
    """Write one output into a build/ that was empty when this mirror began: None if anything is in the way.

    This mirror made every folder in it, so there is no symlink to avoid and no
    stray to remove: a folder is made once, without looking at each of its
    parents (a cold build or a restore writes thousands of files; the checks
    were half the mirror's time). Whatever does not simply work (two outputs
    that need one path as a file and as a folder, a file that appeared
    meanwhile) goes through the careful path, which explains it.
    """
    folder = f"{build_dir}/{path}".rpartition("/")[0]
    try:
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        return _write(build_dir, store, path, row, staging, staged)
    except OSError:
        return None


WriteResult = tuple[os.stat_result | None, int, OutputClashError | None]   # (stat, strays removed, clash)


def _write_all(build_dir: Path, store: Store, todo: list[tuple[str, OutputRow, str | None]],
               rows: Mapping[str, OutputRow], staging: Path | None, sink: Sink,
               checked: set[Path], staged: Mapping[str, Staged] | None = None,
               made: set[str] | None = None) -> Iterator[WriteResult]:
    """Write every output of ``todo``, results in order (lazily: events stay in step with the writes).

    Forked workers do not help here: file creation is the kernel's work, and
    it serialises on the folders (measured: -j 2 no faster than -j 1).
    ``made``: build/ was empty when this mirror began; the folders made in it so far.
    """
    return (_write_one(build_dir, store, path, row, rows, staging, sink, checked, staged, made)
            for path, row, _ in todo)


def _write_one(build_dir: Path, store: Store, path: str, row: OutputRow, rows: Mapping[str, OutputRow],
               staging: Path | None, sink: Sink, checked: set[Path], staged: Mapping[str, Staged] | None = None,
               made: set[str] | None = None) -> WriteResult:
    if made is not None:
        st = _write_fresh(build_dir, store, path, row, staging, staged, made)
        if st is not None:
            return st, 0, None
    try:
        removed = _make_room(build_dir, path, rows, sink, checked)
    except OutputClashError as e:
        return None, 0, e
    return _write(build_dir, store, path, row, staging, staged), removed, None
