"""Two `sqldom build` at once: one builds, the other waits, then refuses naming the holder."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.support.project import Project

SLOW = '''
import time
import sqldom

@sqldom.writer("**/*.txt")
def slow(doc, site):
    time.sleep(8)
    return doc.data
'''


def test_a_second_build_waits_then_names_the_holder_and_never_writes(project: Project) -> None:
    project.write_root("build.py", SLOW)
    project.write("a.txt", "A\n")
    first = subprocess.Popen([sys.executable, "-m", "sqldom", "build", "-C", str(project.root)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = project.root / "var" / "lock"
        deadline = time.monotonic() + 30
        while not (lock.exists() and b"pid" in lock.read_bytes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        second = project.cli("build", "-C", str(project.root), timeout=60)
        waited = time.monotonic() - t0
        assert second.returncode == 2
        assert f"sqldom pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert 4 < waited < 8, f"it waits about five seconds before refusing, not {waited:.1f}"
        # a reader is never blocked while the build holds the lock
        assert project.query("select count(*) from sources")[0][0] >= 0
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert project.output("a.txt") == b"A\n"
    assert project.query("pragma integrity_check") == [("ok",)]
    assert project.build().steps == {}
