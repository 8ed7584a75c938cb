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
        """The same build in this process (fast; used by the property tests)."""
        from sqldom.engine import BuildOptions, build
        from sqldom.events import ListSink, as_dict
        sink = ListSink()
        code = build(BuildOptions(root=self.root, full=full), sink)
        return _result(code, [as_dict(e) for e in sink.events])
