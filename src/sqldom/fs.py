"""The filesystem port: walking, atomic writes, path confinement, the project lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from sqldom.errors import LockError

TMP_PREFIX = ".sqldom-tmp-"

_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)

IGNORED_NAMES = {".git", ".hg", ".svn", "__pycache__", ".DS_Store", "Thumbs.db"}
IGNORABLE_FIRST = frozenset(".#" + "".join(n[0] for n in IGNORED_NAMES))


def ignored(name: str) -> bool:
    """Dotfiles, editor backups and swap files are not sources."""
    return (name.startswith(".") or name.endswith("~") or (name.startswith("#") and name.endswith("#"))
            or name in IGNORED_NAMES)


def walk_files(top: Path, skip_ignored: bool = True,
               report_links: bool = False) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative posix path, stat) of every regular file under ``top``.

    For content/ (``report_links=False``): symlinks to files inside ``top`` are
    followed; symlinked folders are not entered (no loops), and links pointing
    outside are skipped.

    For build/ (``report_links=True``): no symlink is ever followed. Every entry
    that is not a real folder is yielded with its ``lstat``: regular files, but
    also every symlink (to a file or a folder, inside or outside) and special
    files, so the mirror can remove the entry itself instead of writing or
    reading through it.
    """
    root = str(top)
    real_root = os.path.realpath(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        # (listdir and fstatat on the folder's descriptor: a third cheaper than scandir's DirEntry.stat,
        # and a walk is most of a no-op build)
        try:
            fd = os.open(os.path.join(root, rel) if rel else root, _FOLDER)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        try:
            names = os.listdir(fd)
            for name in names:
                # (the first test is a cheap filter: every ignored name passes it)
                if skip_ignored and (name[0] in IGNORABLE_FIRST or name[-1] == "~") and ignored(name):
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue   # vanished during the scan
                path = f"{rel}/{name}" if rel else name
                kind = st.st_mode & 0o170000
                if kind == stat.S_IFREG:   # most entries: a regular file
                    yield path, st
                elif kind == stat.S_IFDIR:
                    stack.append(path)
                elif report_links:
                    yield path, st
                elif kind == stat.S_IFLNK:
                    full = os.path.join(root, path)
                    target = os.path.realpath(full)
                    if not (target + os.sep).startswith(real_root + os.sep) or not os.path.isfile(target):
                        continue
                    try:
                        yield path, os.stat(full)
                    except FileNotFoundError:
                        continue
        finally:
            os.close(fd)


class Staged(NamedTuple):
    """Where a build's worker left an output's bytes: ``length`` bytes at ``offset`` of its pack file."""

    pack: str
    offset: int
    length: int

    def read(self) -> bytes:
        fd = os.open(self.pack, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            return _read_at(fd, self)
        finally:
            os.close(fd)


def _read_at(fd: int, at: Staged) -> bytes:
    parts = []
    offset, left = at.offset, at.length
    while left:
        part = os.pread(fd, left, offset)
        if not part:
            raise OSError(errno.EIO, "staged output cut short", at.pack)
        parts.append(part)
        offset += len(part)
        left -= len(part)
    return b"".join(parts)


class PackReader:
    """The workers' packs, each opened once: the parent reads back thousands of outputs from them."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}

    def read(self, at: Staged) -> bytes:
        fd = self.fds.get(at.pack)
        if fd is None:
            fd = self.fds[at.pack] = os.open(at.pack, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return _read_at(fd, at)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def prefetch(paths: list[str]) -> Callable[[], None]:
    """Have the kernel start reading ``paths`` into its page cache, from a forked child; returns ``stop``.

    A scan reads the files it hashes one after another, so from a cold page
    cache (after a reboot, or on a VM whose host reclaims idle cache within
    seconds) each read waits for the disk in turn: ~60 µs a file, 0.6 s for
    10,000. The child asks for all of them (POSIX_FADV_WILLNEED) and the disk
    serves them together while the scan reads. A child rather than a thread: a
    thread's three system calls a file trade the GIL with the scan, which made
    a warm scan twice as slow. ``stop`` ends the child; it is harmless at any
    time (the child only gives advice, and it exits on its own once done).
    """
    if not hasattr(os, "fork") or not hasattr(os, "posix_fadvise"):
        return lambda: None
    try:
        pid = os.fork()
    except OSError:
        return lambda: None
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for fd in HELD_LOCKS:   # (the project lock is the parent's)
                os.close(fd)
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # (a FIFO put there meanwhile: no wait)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                except OSError:
                    pass
                finally:
                    os.close(fd)
        except BaseException:
            code = 1
        finally:
            os._exit(code)

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return stop


def real_folders(root: Path, folder: Path) -> list[Path]:
    """Make ``folder`` (``root`` itself or a folder under it) a chain of real folders.

    No symlink under ``root`` is followed: a component that is a symlink (to a
    folder outside the project, say) is removed, the link itself and never what
    it points to, and replaced by an empty folder. A component that is a file
    raises ``NotADirectoryError`` naming it; the caller decides whether it may go.
    ``root`` itself is taken as it is. Returns the links replaced.
    """
    root.mkdir(parents=True, exist_ok=True)
    replaced: list[Path] = []
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(current)
            st = os.lstat(current)
        if stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode):
            os.unlink(current)
            os.mkdir(current)
            replaced.append(current)
            continue
        raise NotADirectoryError(errno.ENOTDIR, "a file is where a folder is needed", str(current))
    return replaced


Chunks = bytes | bytearray | memoryview | Iterable[bytes]


def atomic_write(path: Path, data: Chunks, staging: Path | None = None,
                 root: Path | None = None, parents_checked: bool = False) -> os.stat_result:
    """Write via a temp file and rename, so readers never see a partial file.

    ``data`` is bytes or an iterable of chunks (streamed: a large file never sits
    whole in memory). The temp file goes in ``staging`` (var/tmp/, same
    filesystem) when given, so a build killed mid-write leaves nothing in build/;
    else beside ``path``. If the write fails (a full disk, a file-size limit) the
    temp file is removed and the error names ``path``.

    With ``root`` (build/), the folders between ``root`` and ``path`` are made
    real folders first (see ``real_folders``): nothing is written through a
    symlinked parent. A symlink at ``path`` itself is replaced, not followed
    (rename replaces the link). ``parents_checked``: the caller just did that.
    """
    if parents_checked:
        pass
    elif root is not None:
        real_folders(root, path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    folder = staging if staging is not None else path.parent
    tmp = folder / f"{TMP_PREFIX}{path.name[:100]}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)                   # a leftover (even a symlink) is never written through
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        with open(fd, "wb") as f:
            if isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            else:
                for chunk in data:
                    f.write(chunk)
        try:
            os.replace(tmp, path)
        except OSError as e:             # name the output, not the temp file (build/ read-only, say)
            raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)       # f.write's errors name no file; the user needs one
        raise
    return os.stat(path, follow_symlinks=False)


def staging_folder(var: Path, target: Path) -> Path | None:
    """var/tmp/, emptied of a killed build's leftovers, if it is on the same filesystem as ``target``."""
    staging = var / "tmp"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        target.mkdir(parents=True, exist_ok=True)
        if os.stat(staging).st_dev != os.stat(target).st_dev:
            return None
        for leftover in staging.iterdir():
            if leftover.name.startswith(TMP_PREFIX):
                leftover.unlink(missing_ok=True)
        # a bind mount shares st_dev but refuses renames across it: try one
        probe = staging / f"{TMP_PREFIX}probe.{os.getpid()}"
        probe.write_bytes(b"")
        moved = target / probe.name
        try:
            os.rename(probe, moved)
        except OSError:
            probe.unlink(missing_ok=True)
            return None
        moved.unlink(missing_ok=True)
    except OSError:
        return None
    return staging


def remove_file(path: Path, stop: Path) -> None:
    """Remove a file and the folders it leaves empty, up to ``stop``."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    parent = path.parent
    while parent != stop and stop in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


HELD_LOCKS: set[int] = set()   # descriptors of the locks this process holds (a forked worker closes them)


class ProjectLock:
    """One writer per project: an flock on var/lock, released by the kernel when the process dies."""

    def __init__(self, var: Path, wait_seconds: float = 5.0) -> None:
        self.path = var / "lock"
        self.wait_seconds = wait_seconds
        self._fd: int | None = None

    def __enter__(self) -> ProjectLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                    os.close(fd)
                    raise LockError(f"the project is locked by {holder}", path="var/lock",
                                    hint="wait for that sqldom process to finish, or stop it") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"sqldom pid {os.getpid()}\n".encode(), 0)
        self._fd = fd
        HELD_LOCKS.add(fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            HELD_LOCKS.discard(self._fd)
            self._fd = None
