"""fs.walk_files: which entries a walk of content/ and of build/ yields, and with which stat."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqldom.fs import walk_files


def tree(tmp_path: Path) -> tuple[Path, Path]:
    top, outside = tmp_path / "top", tmp_path / "outside"
    (top / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (top / "x.md").write_text("x")
    (top / "a" / "y.txt").write_text("yy")
    (top / "a" / "b" / "z.bin").write_bytes(b"zzz")
    (top / ".hidden").write_text("h")
    (top / "a" / "notes.md~").write_text("backup")
    (top / "a" / ".git").mkdir()
    (top / "a" / ".git" / "HEAD").write_text("ref")
    (outside / "secret.txt").write_text("s")
    os.symlink(top / "x.md", top / "a" / "inside-link.md")          # to a file inside: followed
    os.symlink(outside / "secret.txt", top / "out-link.txt")        # to a file outside: skipped
    os.symlink(top / "a" / "b", top / "folder-link")                # to a folder: not entered
    os.symlink(top / "gone.md", top / "dangling.md")                # to nothing: skipped
    os.mkfifo(top / "a" / "fifo")                                   # not a regular file
    return top, outside


def test_a_content_walk_yields_regular_files_and_links_to_files_inside(tmp_path: Path) -> None:
    top, _ = tree(tmp_path)
    got = dict(walk_files(top))
    assert sorted(got) == ["a/b/z.bin", "a/inside-link.md", "a/y.txt", "x.md"]
    assert got["a/b/z.bin"].st_size == 3
    assert got["a/b/z.bin"].st_ino == os.stat(top / "a" / "b" / "z.bin").st_ino
    linked = got["a/inside-link.md"]   # the target's stat, as the scan reads the target's bytes
    assert (linked.st_ino, linked.st_size) == (os.stat(top / "x.md").st_ino, 1)


def test_a_build_walk_yields_every_entry_but_folders_with_its_lstat(tmp_path: Path) -> None:
    top, _ = tree(tmp_path)
    got = dict(walk_files(top, skip_ignored=False, report_links=True))
    assert sorted(got) == [".hidden", "a/.git/HEAD", "a/b/z.bin", "a/fifo", "a/inside-link.md", "a/notes.md~",
                           "a/y.txt", "dangling.md", "folder-link", "out-link.txt", "x.md"]
    assert stat.S_ISLNK(got["folder-link"].st_mode) and stat.S_ISLNK(got["a/inside-link.md"].st_mode)
    assert stat.S_ISFIFO(got["a/fifo"].st_mode)
    assert stat.S_ISREG(got["x.md"].st_mode)


def test_a_missing_or_unreadable_folder_is_walked_as_empty(tmp_path: Path) -> None:
    assert list(walk_files(tmp_path / "nothing-here")) == []
    (tmp_path / "file").write_text("not a folder")
    assert list(walk_files(tmp_path / "file")) == []


def test_a_walk_holds_no_descriptor_once_done(tmp_path: Path) -> None:
    top, _ = tree(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        list(walk_files(top))
        next(iter(walk_files(top)))   # (abandoned after one entry: its folder is closed when it is collected)
    assert len(os.listdir("/proc/self/fd")) == before
