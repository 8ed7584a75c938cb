"""sqldom/place.py: the placer writes a cold build's staged outputs into the empty build/ (real files)."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from sqldom import place


def _pack(tmp_path: Path, outputs: dict[str, bytes]) -> tuple[str, list[tuple[str, str, int, int]]]:
    """A worker's pack holding ``outputs`` back to back, and the placer's moves for them."""
    pack = tmp_path / "staged" / "101.pack"
    pack.parent.mkdir(parents=True, exist_ok=True)
    moves, at = [], 0
    with open(pack, "wb") as f:
        for path, data in outputs.items():
            f.write(data)
            moves.append((path, str(pack), at, len(data)))
            at += len(data)
    return str(pack), moves


OUTPUTS = {"index.html": b"<p>home</p>", "a/b/deep.html": b"x" * 70_000, "a/empty.css": b"",
           "a/c.html": "<p>caf\u00e9</p>".encode()}


def test_every_output_lands_whole_with_the_stat_it_reports(tmp_path: Path) -> None:
    _, moves = _pack(tmp_path, OUTPUTS)
    build = tmp_path / "build"
    placed = place.place(str(build), moves)
    for (path, *_), got in zip(moves, placed, strict=True):
        st = os.stat(build / path)
        assert got == (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        assert (build / path).read_bytes() == OUTPUTS[path]
    assert sorted(str(p.relative_to(build)) for p in build.rglob("*") if p.is_file()) == sorted(OUTPUTS)


def test_nothing_in_the_way_is_written_through(tmp_path: Path) -> None:
    """A file or a symlink already at an output's path is left alone (None: the mirror deals with it)."""
    _, moves = _pack(tmp_path, OUTPUTS)
    build = tmp_path / "build"
    (build / "a").mkdir(parents=True)
    outside = tmp_path / "outside.html"
    outside.write_bytes(b"keep me")
    (build / "index.html").symlink_to(outside)
    (build / "a" / "c.html").write_bytes(b"there first")
    placed = dict(zip([m[0] for m in moves], place.place(str(build), moves), strict=True))
    assert placed["index.html"] is None and placed["a/c.html"] is None
    assert outside.read_bytes() == b"keep me" and (build / "a" / "c.html").read_bytes() == b"there first"
    assert placed["a/b/deep.html"] is not None and (build / "a" / "b" / "deep.html").read_bytes() == b"x" * 70_000


def test_a_pack_cut_short_places_nothing_partial(tmp_path: Path) -> None:
    pack, moves = _pack(tmp_path, OUTPUTS)
    os.truncate(pack, 100)   # (a worker killed mid-append: never reported, but never trusted either)
    build = tmp_path / "build"
    placed = dict(zip([m[0] for m in moves], place.place(str(build), moves), strict=True))
    assert placed["index.html"] is not None and placed["a/b/deep.html"] is None
    assert not (build / "a" / "b" / "deep.html").exists()


@pytest.mark.parametrize("failure", [errno.EXDEV, errno.ENOSYS, errno.EINVAL])
def test_without_copy_file_range_the_bytes_go_through_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              failure: int) -> None:
    def refusing(*args: object) -> int:
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(os, "copy_file_range", refusing)
    _, moves = _pack(tmp_path, OUTPUTS)
    build = tmp_path / "build"
    assert None not in place.place(str(build), moves)
    assert {p: (build / p).read_bytes() for p in OUTPUTS} == OUTPUTS


def test_the_script_runs_in_a_fresh_isolated_interpreter(tmp_path: Path) -> None:
    """As ``mirror.Placer`` starts it: ``python -I place.py FD_IN FD_OUT``, the moves pickled in parts,
    each output's stat packed back in order (zeros for one it did not place)."""
    _, moves = _pack(tmp_path, OUTPUTS)
    build = tmp_path / "build"
    (build / "a").mkdir(parents=True)
    (build / "a" / "c.html").write_bytes(b"there first")
    given, got = tmp_path / "given", tmp_path / "got"
    given.write_bytes(pickle.dumps(str(build)) + pickle.dumps(moves[:2]) + pickle.dumps(moves[2:]) + pickle.dumps(None))
    with open(given, "rb") as fin, open(got, "wb") as fout:
        fds = (fin.fileno(), fout.fileno())
        subprocess.run([sys.executable, "-I", place.__file__, *map(str, fds)], pass_fds=fds, check=True,
                       stdin=subprocess.DEVNULL)
    data = got.read_bytes()
    assert len(data) == place.STAT.size * len(moves)
    for i, (path, *_) in enumerate(moves):
        got_stat = place.STAT.unpack_from(data, i * place.STAT.size)
        if path == "a/c.html":
            assert got_stat == (0, 0, 0) and (build / path).read_bytes() == b"there first"
            continue
        st = os.stat(build / path)
        assert got_stat == (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        assert (build / path).read_bytes() == OUTPUTS[path]


def test_placed_files_are_looked_up_in_the_mirrors_order_without_an_index() -> None:
    from sqldom.mirror import PlacedFiles

    paths = ["a.html", "b/c.html", "b/d.html", "e.html"]
    stats = [(1, 2, 3), None, (7, 8, 9), (10, 11, 12)]
    placed = PlacedFiles(paths, b"".join(place.NOT_PLACED if st is None else place.STAT.pack(*st) for st in stats))
    assert list(placed) == ["a.html", "b/d.html", "e.html"] and len(placed) == 3
    lookup = placed.in_order()
    # the mirror asks for every row, placed or not, in ascending order
    asked = ["0.html", "a.html", "b/c.html", "b/d.html", "b/z.html", "e.html", "f.html"]
    assert [lookup(p) for p in asked] == [None, (1, 2, 3), None, (7, 8, 9), None, (10, 11, 12), None]
    assert [tuple(r) for r in placed.rows(99, {"a.html", "e.html", "b/c.html"})] == [
        (1, 2, 3, 99, "a.html"), (10, 11, 12, 99, "e.html")]
