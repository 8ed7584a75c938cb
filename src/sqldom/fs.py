"""The filesystem port: walking, atomic writes, path confinement, the project lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from sqldom.errors import LockError

TMP_PREFIX = ".sqldom-tmp-"

IGNORED_NAMES = {".git", ".hg", ".svn", "__pycache__", ".DS_Store", "Thumbs.db"}


def ignored(name: str) -> bool:
    """Dotfiles, editor backups and swap files are not sources."""
    return (name.startswith(".") or name.endswith("~") or (name.startswith("#") and name.endswith("#"))
            or name in IGNORED_NAMES)


def walk_files(top: Path, skip_ignored: bool = True) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative posix path, stat) of every regular file under ``top``.

    Symlinks to files inside ``top`` are followed; symlinked folders are not
    entered (no loops), and links pointing outside are skipped.
    """
    root = str(top)
    real_root = os.path.realpath(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel) if rel else root)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for entry in it:
                name = entry.name
                if skip_ignored and ignored(name):
                    continue
                path = f"{rel}/{name}" if rel else name
                try:
                    if entry.is_symlink():
                        target = os.path.realpath(entry.path)
                        if not (target + os.sep).startswith(real_root + os.sep) or not os.path.isfile(target):
                            continue
                        yield path, os.stat(entry.path)
                    elif entry.is_dir(follow_symlinks=False):
                        stack.append(path)
                    elif entry.is_file(follow_symlinks=False):
                        yield path, entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue   # vanished during the scan


def atomic_write(path: Path, data: bytes, staging: Path | None = None) -> os.stat_result:
    """Write via a temp file and rename, so readers never see a partial file.

    The temp file goes in ``staging`` (var/tmp/, same filesystem) when given, so a
    build killed mid-write leaves nothing in build/; else beside ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = staging if staging is not None else path.parent
    tmp = folder / f"{TMP_PREFIX}{path.name}.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return os.stat(path)


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
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
