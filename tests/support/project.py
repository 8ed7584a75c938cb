"""A project on disk and ways to build it: in a real subprocess (the CLI) or in-process.

Every helper returns what a user would see: exit code, events, which steps ran.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# In-process builds (build_inproc) create many fresh databases: with SQLAlchemy already loaded
# here, migrate.upgrade_apart upgrades in this process instead of starting a child interpreter
# for each (the child path is what the CLI takes; tests/db/test_migrations.py covers it).
import sqlalchemy  # noqa: F401


@dataclass
class Result:
    code: int
    events: list[dict[str, Any]]
    stdout: str = ""
    stderr: str = ""
    steps: dict[str, str] = field(default_factory=dict)   # step id -> status, for executed/restored steps

    @property
    def executed(self) -> set[str]:
        """Steps that actually ran (status built or failed), not those restored."""
        return {s for s, st in self.steps.items() if st in ("built", "failed")}

    @property
    def restored(self) -> set[str]:
        return {s for s, st in self.steps.items() if st == "restored"}

    @property
    def summary(self) -> dict[str, Any]:
        return next(e for e in reversed(self.events) if e["event"] == "summary")

    @property
    def problems(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "problem"]

    @property
    def deleted(self) -> set[str]:
        return {e["path"] for e in self.events if e["event"] == "deleted"}

    @property
    def repaired(self) -> dict[str, str]:
        return {e["path"]: e["what"] for e in self.events if e["event"] == "repaired"}


def _result(code: int, events: list[dict[str, Any]], stdout: str = "", stderr: str = "") -> Result:
    steps = {e["id"]: e["status"] for e in events if e["event"] == "step"}
    return Result(code, events, stdout, stderr, steps)


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "content").mkdir(parents=True, exist_ok=True)

    # files
    def write(self, rel: str, data: str | bytes) -> Path:
        """Write content/<rel>; ``../build.py`` style paths write at the project root."""
        path = (self.root / "content" / rel).resolve() if not rel.startswith("../") else self.root / rel[3:]
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode("utf-8")
        path.write_bytes(data)
        return path

    def write_root(self, rel: str, data: str) -> Path:
        path = self.root / rel
        path.write_text(data, encoding="utf-8")
        return path

    def delete(self, rel: str) -> None:
        (self.root / "content" / rel).unlink()

    def output(self, rel: str) -> bytes | None:
        path = self.root / "build" / rel
        return path.read_bytes() if path.is_file() else None

    def text(self, rel: str) -> str | None:
        data = self.output(rel)
        return None if data is None else data.decode("utf-8")

    def outputs(self) -> dict[str, bytes]:
        build = self.root / "build"
        if not build.is_dir():
            return {}
        return {p.relative_to(build).as_posix(): p.read_bytes() for p in sorted(build.rglob("*")) if p.is_file()}

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.root / "var" / "build.db")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        con = self.db()
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    # builds
    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
        return subprocess.run([sys.executable, "-m", "sqldom", *args], cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, env=env)

    def build(self, *args: str) -> Result:
        """``sqldom build --json`` in a real subprocess."""
        proc = self.cli("build", "--json", "-C", str(self.root), *args)
        events = []
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return _result(proc.returncode, events, proc.stdout, proc.stderr)

    def build_inproc(self, full: bool = False) -> Result:
        """The same build in this process, the probe first as in ``sqldom build`` (fast; the property tests)."""
        from sqldom import probe
        from sqldom.engine import BuildOptions, build
        from sqldom.events import ListSink, as_dict
        sink = ListSink()
        code = None if full else probe.try_build(self.root, lambda: sink)
        if code is None:
            code = build(BuildOptions(root=self.root, full=full), sink)
        return _result(code, [as_dict(e) for e in sink.events])


# ---- helpers added for the scenario and end-to-end tests ---------------------------------------------
# (additions only: nothing above this line changed)

def hash_bytes(data: bytes | str) -> str:
    """The database's notion of a content hash (xxh3-128, hex), computed independently of sqldom."""
    import xxhash
    if isinstance(data, str):
        data = data.encode("utf-8")
    return xxhash.xxh3_128_hexdigest(data)


def step_events(result: Result) -> list[dict[str, Any]]:
    return [e for e in result.events if e["event"] == "step"]


def reasons(result: Result) -> dict[str, str]:
    """step id -> reason, for every step event of a build."""
    return {e["id"]: e["reason"] for e in result.events if e["event"] == "step"}


class ProjectTables:
    """Read-only views of var/build.db as a user with sqlite3 would query them."""

    def __init__(self, project: Project) -> None:
        self.p = project

    def sources(self) -> dict[str, str]:
        """path -> hash of every row of ``sources``."""
        return dict(self.p.query("select path, hash from sources"))

    def content_sources(self) -> dict[str, str]:
        """Like ``sources`` but only files under content/ (not build.py / sqldom.yaml rows)."""
        root_files = {"build.py", "sqldom.yaml"}
        return {p: h for p, h in self.sources().items()
                if not p.startswith("../") and p not in root_files}

    def source_bytes(self, path: str) -> bytes | None:
        rows = self.p.query("select b.data from sources s join blobs b on b.hash = s.hash where s.path = ?", path)
        return bytes(rows[0][0]) if rows else None

    def build(self) -> dict[str, tuple[str, str]]:
        """path -> (hash, step) of every row of the ``build`` table."""
        return {p: (h, s) for p, h, s in self.p.query("select path, hash, step from build")}

    def output_bytes(self, path: str) -> bytes | None:
        rows = self.p.query("select b.data from build o join blobs b on b.hash = o.hash where o.path = ?", path)
        return bytes(rows[0][0]) if rows else None

    def steps(self) -> set[str]:
        return {r[0] for r in self.p.query("select id from steps")}

    def facts(self, path: str) -> dict[str, Any]:
        return {n: json.loads(v) for n, v in self.p.query("select name, value from facts where path = ?", path)}

    def deps(self, step: str, kind: str | None = None) -> set[tuple[str, str, str]]:
        """(kind, target, key) of everything ``step`` read, optionally one kind only."""
        rows = self.p.query("select kind, target, key from deps where step = ?", step)
        return {tuple(r) for r in rows if kind is None or r[0] == kind}  # type: ignore[misc]

    def problems(self) -> list[dict[str, Any]]:
        rows = self.p.query("select step, path, line, severity, message from problems order by step, line")
        return [dict(zip(("step", "path", "line", "severity", "message"), r, strict=True)) for r in rows]

    def last_execution(self, step: str) -> tuple[str, str] | None:
        """(outcome, reason) of the latest ``executions`` row of a step."""
        rows = self.p.query("select outcome, reason from executions where step = ? order by run desc, id desc "
                            "limit 1", step)
        return (rows[0][0], rows[0][1]) if rows else None


def tables(project: Project) -> ProjectTables:
    return ProjectTables(project)


def write_build_py(project: Project, text: str) -> Path:
    """Write the project's build.py (dedented)."""
    import textwrap
    return project.write_root("build.py", textwrap.dedent(text))


def cli_in(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m sqldom ARGS`` run in an arbitrary directory (for -C / usage tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    return subprocess.run([sys.executable, "-m", "sqldom", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def popen(project: Project, *args: str) -> subprocess.Popen[str]:
    """``python -m sqldom ARGS`` started in the background (for ``watch``); the caller must stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, "-m", "sqldom", *args], cwd=project.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def clone(project: Project, dest: Path) -> Project:
    """A copy of a whole project (content/, build/, var/, build.py ...) at ``dest``, as ``cp -a`` makes it.

    Lets a module build an expensive baseline once and hand every test its own copy.
    """
    import shutil
    shutil.copytree(project.root, dest, symlinks=True, ignore=shutil.ignore_patterns("lock"))
    return Project(dest)
