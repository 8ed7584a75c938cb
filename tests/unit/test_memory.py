"""sqldom/memory.py: freed heap pages go back to the system (measured in a real process's RSS)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import sys
from sqldom.memory import release

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

# 100 MiB in 64 KiB objects (below glibc's mmap threshold: they live in the heap), then every one
# freed but each 16th, which pins the heap so that it cannot simply shrink from the top
chunks = [b"x" * 65536 for _ in range(1600)]
kept = chunks[::16]
del chunks
before = rss()
release()
print(before, rss(), len(kept))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc: Linux only")
def test_release_gives_freed_heap_pages_back() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    before, after, _ = map(int, out.split())
    assert before - after >= 60, (before, after)   # most of the ~94 MiB freed is no longer resident


def test_release_is_harmless_when_called_again() -> None:
    from sqldom.memory import release
    release()
    release()
