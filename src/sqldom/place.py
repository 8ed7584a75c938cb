"""Write staged outputs into build/, in a process of its own: ``python -I sqldom/place.py FD_IN FD_OUT``.

Started by ``mirror.Placer`` while a cold build records. A fresh interpreter,
not a fork: a forked child shares the build's pages until either side writes
one, and the record writes most of them, so at 100,000 documents the child came
to hold a copy of the main process (350 MiB). This file imports nothing of
sqldom (``-I`` keeps its folder off ``sys.path``, so no module here can shadow
the standard library's): it reads ``build_dir``, then lists of ``(path, pack, offset,
length)`` until None, pickled one after another from FD_IN, and writes to FD_OUT the
stat of each output once it is in place (``place``): ``(mtime_ns, ctime_ns, inode)``
packed as ``STAT`` (24 bytes), all zeros for one it did not place (no file has inode 0).
Packed, not pickled: at 100,000 outputs their tuples were 17 MiB of the build's peak.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
from collections.abc import Iterable, Iterator
from typing import Any

CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
STAT = struct.Struct("<qqQ")   # what FD_OUT gets per move: (mtime_ns, ctime_ns, inode), zeros if not placed
NOT_PLACED = bytes(STAT.size)


def place(build_dir: str, moves: Iterable[tuple[str, str, int, int]]) -> Iterator[tuple[int, int, int] | None]:
    """Write each output's bytes (``length`` at ``offset`` of the worker's ``pack``) to build/<path>:
    yields its (mtime_ns, ctime_ns, inode), in order; None for what is not simply written, which the
    mirror then writes. Lazily, both ways: neither the moves nor the stats are ever held whole.

    build/ was empty, so each file is created under its own name (O_EXCL: nothing
    in the way is ever written through) and filled by one copy in the kernel; no
    temp file and rename, which cost half as much again. A build killed meanwhile
    does not stop this process (its own session), so every file it starts is
    finished. Only this process's own death mid-copy could leave a short file: it
    reports nothing then, so the mirror writes every output again, and a file
    without a recorded stat is never trusted by a later build either.
    """
    made: set[str] = set()
    packs: dict[str, int] = {}
    try:
        for path, pack, offset, length in moves:
            yield _place_one(build_dir, path, _opened(packs, pack), offset, length, made)
    finally:
        for fd in packs.values():
            os.close(fd)


def _opened(packs: dict[str, int], pack: str) -> int:
    fd = packs.get(pack)
    if fd is None:
        fd = packs[pack] = os.open(pack, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return fd


def _place_one(build_dir: str, path: str, pack: int, offset: int, length: int,
               made: set[str]) -> tuple[int, int, int] | None:
    target = f"{build_dir}/{path}"
    folder = target.rpartition("/")[0]
    try:
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        fd = os.open(target, CREATE, 0o644)
    except OSError:
        return None   # in the way of another output (a clash as file and folder): the mirror explains it
    try:
        _copy(pack, fd, offset, length)
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        try:
            os.unlink(target)
        except OSError:
            pass
        return None   # a full disk, say: the mirror deals with it
    os.close(fd)
    return st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _copy(src: int, dst: int, offset: int, length: int) -> None:
    """``length`` bytes at ``offset`` of ``src`` to ``dst``: in the kernel where it can, else through memory."""
    done = 0
    try:
        while done < length:
            n = os.copy_file_range(src, dst, length - done, offset + done)
            if n == 0:
                raise OSError("staged output cut short")
            done += n
        return
    except (AttributeError, OSError) as e:
        if done or (isinstance(e, OSError) and e.errno is None):
            raise
    data = os.pread(src, length, offset)
    if len(data) != length:
        raise OSError("staged output cut short")
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view):]


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the build decides what Ctrl-C means (and waits for us)
    fd_in, fd_out = int(argv[1]), int(argv[2])
    with open(fd_in, "rb") as f, open(fd_out, "wb") as out:
        f.seek(0)
        build_dir = pickle.load(f)
        for st in place(build_dir, _moves(f)):
            out.write(NOT_PLACED if st is None else STAT.pack(*st))
    return 0


def _moves(f: Any) -> Iterator[tuple[str, str, int, int]]:
    """The moves as ``Placer._give`` pickled them: lists, a part at a time, until None."""
    while (part := pickle.load(f)) is not None:
        yield from part


if __name__ == "__main__":
    sys.exit(main(sys.argv))
