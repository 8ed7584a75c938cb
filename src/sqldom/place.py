"""Move staged outputs into build/, in a process of its own: ``python -I sqldom/place.py FD_IN FD_OUT``.

Started by ``mirror.Placer`` while a cold build records. A fresh interpreter,
not a fork: a forked child shares the build's pages until either side writes
one, and the record writes most of them, so at 100,000 documents the child came
to hold a copy of the main process (350 MiB). This file imports nothing of
sqldom (``-I`` keeps its folder off ``sys.path``, so no module here can shadow
the standard library's): it reads ``(build_dir, [(path, staged file), ...])``
pickled from FD_IN and writes the stat of each after its move (``place``) pickled to FD_OUT.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys


def place(build_dir: str, moves: list[tuple[str, str]]) -> list[tuple[int, int, int] | None]:
    """Move each staged file to build/<path>: its (mtime_ns, ctime_ns, inode) after the move, in order;
    None for what is not simply moved, which the mirror then writes."""
    made: set[str] = set()
    placed: list[tuple[int, int, int] | None] = []
    for path, source in moves:
        target = f"{build_dir}/{path}"
        folder = target.rpartition("/")[0]
        try:
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            if os.path.lexists(target):
                placed.append(None)   # (two outputs that clash as file and folder: the mirror explains it)
                continue
            os.rename(source, target)
            st = os.stat(target, follow_symlinks=False)
        except OSError:
            placed.append(None)   # not staged after all, or in the way of another output
            continue
        placed.append((st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return placed


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the build decides what Ctrl-C means (and waits for us)
    fd_in, fd_out = int(argv[1]), int(argv[2])
    with open(fd_in, "rb") as f:
        f.seek(0)
        build_dir, moves = pickle.load(f)
    placed = place(build_dir, moves)
    with open(fd_out, "wb") as out:
        pickle.dump(placed, out, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
