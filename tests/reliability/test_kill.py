"""Builds killed with SIGKILL at random instants: the next build finishes the job.

After every kill: ``PRAGMA integrity_check`` is ok, build/ holds no partial or
temp file, the next build's result equals a clean build of the same sources,
and the build after that executes nothing. Cold builds and incremental builds
(after editing a batch of documents) are both killed. ``SQLDOM_KILL_TRIALS``
raises the number of kills and ``SQLDOM_KILL_DOCS`` the corpus size for a long
run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

TRIALS = int(os.environ.get("SQLDOM_KILL_TRIALS", "4"))
DOCS = int(os.environ.get("SQLDOM_KILL_DOCS", "1000"))
GENERATOR = Path(__file__).resolve().parents[3] / "shared" / "tools" / "gen_corpus.py"


def sqldom(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sqldom", "build", "--json", "-C", str(root), *args],
                          capture_output=True, text=True, timeout=600)


def generate(dest: Path, docs: int) -> None:
    if GENERATOR.is_file():
        subprocess.run([sys.executable, str(GENERATOR), str(dest), "--docs", str(docs)], check=True,
                       capture_output=True)
        return
    # shared/ is beside the repository in CI; this stand-in keeps the test meaningful without it
    rng = random.Random(1)
    for i in range(docs):
        links = " ".join(f"[](page-{rng.randrange(docs):05d}.md)" for _ in range(3))
        (dest / f"s{i % 10}").mkdir(parents=True, exist_ok=True)
        (dest / f"s{i % 10}" / f"page-{i:05d}.md").write_text(
            f"---\ntitle: Page {i}\n---\n\n# Page {i}\n\n" + "word " * 300 + f"\n\n{links}\n")


def state(root: Path) -> dict[str, Any]:
    build = root / "build"
    files = {p.relative_to(build).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(build.rglob("*")) if p.is_file()}
    con = sqlite3.connect(root / "var" / "build.db")
    try:
        rows = sorted(con.execute("select path, hash, step from build"))
        facts = sorted(con.execute("select path, name, value from facts"))
        problems = sorted(con.execute("select step, path, line, message from problems"))
    finally:
        con.close()
    return {"files": files, "build": rows, "facts": facts, "problems": problems}


def integrity(root: Path) -> str:
    con = sqlite3.connect(root / "var" / "build.db")
    try:
        return str(con.execute("pragma integrity_check").fetchone()[0])
    finally:
        con.close()


def kill_at(root: Path, delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "sqldom", "build", "-C", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=600)


def check_recovers(root: Path, clean: dict[str, Any]) -> None:
    if (root / "var" / "build.db").exists():
        assert integrity(root) == "ok"
    if (root / "build").is_dir():
        leftovers = [p for p in (root / "build").rglob("*") if p.name.startswith(".sqldom-tmp-")]
        assert leftovers == [], "a killed build left temp files in build/"
    done = sqldom(root)
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    assert state(root) == clean
    again = sqldom(root)
    steps = [json.loads(line) for line in again.stdout.splitlines() if '"event": "step"' in line]
    assert steps == [], f"the build after recovery executed {steps[:3]}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The sources, and how long a cold build of them takes here (to aim the kills)."""
    base = tmp_path_factory.mktemp("kill")
    generate(base / "content", DOCS)
    probe = base / "probe"
    shutil.copytree(base / "content", probe / "content")
    t0 = time.monotonic()
    assert sqldom(probe).returncode in (0, 1)
    return base / "content", time.monotonic() - t0


def edited(src: Path, dest: Path, seed: int) -> None:
    """A copy of the corpus with 5% of the Markdown bodies and a few titles changed."""
    shutil.copytree(src, dest, dirs_exist_ok=True)
    rng = random.Random(seed)
    docs = sorted(dest.rglob("*.md"))
    for p in rng.sample(docs, max(1, len(docs) // 20)):
        text = p.read_text()
        p.write_text(text.replace("\n\n", f"\n\nEdited {seed}.\n\n", 1) if rng.random() < 0.8
                     else text.replace("title: ", f"title: Retitled {seed} ", 1))


def clean_state(content: Path, where: Path) -> dict[str, Any]:
    shutil.copytree(content, where / "content")
    assert sqldom(where).returncode in (0, 1)
    return state(where)


@pytest.mark.slow
def test_a_cold_build_killed_at_any_instant_recovers(corpus: tuple[Path, float], tmp_path: Path) -> None:
    content, seconds = corpus
    clean = clean_state(content, tmp_path / "clean")
    rng = random.Random(7)
    for trial in range(TRIALS):
        root = tmp_path / f"cold-{trial}"
        shutil.copytree(content, root / "content")
        kill_at(root, rng.uniform(0.05, seconds))
        check_recovers(root, clean)


@pytest.mark.slow
def test_an_incremental_build_killed_at_any_instant_recovers(corpus: tuple[Path, float], tmp_path: Path) -> None:
    content, seconds = corpus
    base = tmp_path / "base"
    shutil.copytree(content, base / "content")
    assert sqldom(base).returncode in (0, 1)
    rng = random.Random(11)
    for trial in range(TRIALS):
        root = tmp_path / f"inc-{trial}"
        shutil.copytree(base, root, ignore=shutil.ignore_patterns("lock"))
        edited(content, root / "content", seed=trial)
        clean = clean_state(root / "content", tmp_path / f"inc-clean-{trial}")
        kill_at(root, rng.uniform(0.05, max(0.3, seconds / 4)))
        check_recovers(root, clean)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                   (signal.SIGINT, 130, "interrupted")])
def test_sigterm_stops_a_build_cleanly_with_a_message(corpus: tuple[Path, float], tmp_path: Path,
                                                      sig: int, code: int, word: str) -> None:
    content, seconds = corpus
    root = tmp_path / "term"
    shutil.copytree(content, root / "content")
    proc = subprocess.Popen([sys.executable, "-m", "sqldom", "build", "-C", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (root / "var" / "build.db").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)   # sqldom is running (its handlers are installed) once it opened the database
    time.sleep(min(0.5, seconds / 4))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == code:
        assert word in err and "consistent" in err
    else:   # it had finished already
        assert proc.returncode in (0, 1)
    assert "Traceback" not in err
    assert integrity(root) == "ok"
    clean = clean_state(content, tmp_path / "term-clean")
    check_recovers(root, clean)


def test_a_killed_build_leaves_no_stale_lock(corpus: tuple[Path, float], tmp_path: Path) -> None:
    content, seconds = corpus
    root = tmp_path / "lock"
    shutil.copytree(content, root / "content")
    kill_at(root, min(0.8, seconds / 2))
    t0 = time.monotonic()
    r = sqldom(root)
    assert r.returncode in (0, 1), r.stderr
    assert "locked" not in r.stderr
    assert time.monotonic() - t0 < seconds * 3 + 10   # it did not sit waiting for a dead holder
