"""After any sequence of edits, an incremental build equals a clean build, and exactly the
steps whose reads changed executed (or were restored from a trace).

The oracle for "affected" is independent of the engine's planner: it takes each
step's recorded reads from before the build and evaluates them against the
*clean* build's database (its facts, its code and rule hashes) and the files on
disk. A step must run iff it is new or one of those reads changed value.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from sqldom.engine import BuildOptions, Session
from sqldom.engine import Project as EngineProject
from sqldom.hashing import ABSENT, hash_bytes, hash_json
from sqldom.patterns import glob_filter
from tests.support.project import Project

EXAMPLES = int(os.environ.get("SQLDOM_PROPERTY_EXAMPLES", "40"))

DOCS = ["a.md", "b.md", "sub/c.md", "n.txt", "sub/m.txt", "pic.bin"]
TITLES = ["Alpha", "Beta", "Gamma"]
WORDS = ["one", "two", "three"]

PAGE = '''
import sqldom

PREFIX = "{prefix}"


def fmt(title):
    return PREFIX + str(title)


def unused():
    return {unused}


@sqldom.page("index.html")
def index(site):
    return "\\n".join(fmt(site.fact(p, "title")) for p in site.glob("**/*.md"))
'''
TXT_WRITER = '''

@sqldom.writer("**/*.txt")
def write_txt(doc, site):
    return doc.text.upper() + fmt("")
'''
RAISING_PARSER = '''

@sqldom.parser("**/*.txt")
def parse_txt(source):
    title = source.text.split("\\n", 1)[0]
    if title == "Gamma":
        raise ValueError("no Gamma here")
    return {"title": title}
'''
BUILD_PY = [
    None,
    PAGE.format(prefix="* ", unused=1),
    PAGE.format(prefix="- ", unused=1),
    PAGE.format(prefix="* ", unused=2),
    PAGE.format(prefix="* ", unused=1) + TXT_WRITER,
    PAGE.format(prefix="* ", unused=1) + "\n# a comment only\n",
    PAGE.format(prefix="* ", unused=1) + RAISING_PARSER,
]


def md_text(title: str, body: str, links: list[tuple[str, bool]], front: bool) -> str:
    head = f"---\ntitle: {title}\n---\n\n" if front else ""
    parts = [f"[]({t})" if empty else f"[see]({t})" for t, empty in links]
    return f"{head}# {title}\n\n{body}\n" + ("\n".join(parts) + "\n" if parts else "")


def rel_link(src: str, target: str) -> str:
    return os.path.relpath(target, os.path.dirname(src) or ".")


def snapshot(root: Path) -> dict[str, Any]:
    con = sqlite3.connect(root / "var" / "build.db")
    try:
        snap = {
            "build": sorted(con.execute("select path, hash, step from build")),
            "facts": sorted(con.execute("select path, name, value from facts")),
            "problems": sorted(con.execute("select step, path, line, severity, message from problems")),
            # (a one-shot build makes these rows while recording them; a warm session keeps them)
            "steps": sorted(con.execute("select id, kind, parser, writer, output from steps")),
            "sources": sorted(con.execute("select path, hash, size from sources")),
        }
    finally:
        con.close()
    out = root / "build"
    snap["files"] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} \
        if out.is_dir() else {}
    return snap


def recorded_reads(root: Path) -> tuple[set[str], dict[str, list[tuple[str, str, str, str, str]]]]:
    con = sqlite3.connect(root / "var" / "build.db")
    try:
        steps = {r[0] for r in con.execute("select id from steps")}
        reads: dict[str, list[tuple[str, str, str, str, str]]] = {}
        for step, phase, kind, target, key, h in con.execute("select step, phase, kind, target, key, hash from deps"):
            reads.setdefault(step, []).append((phase, kind, target, key, h))
    finally:
        con.close()
    return steps, reads


class IncrementalEqualsClean(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="sqldom-prop-"))
        self.proj = Project(self.tmp / "inc")
        # the twin is built the way `sqldom watch` builds: one warm Session, told which paths changed
        self.twin = Project(self.tmp / "warm")
        self.session: Session | None = None
        self.pending: set[str] = set()
        self.files: dict[str, bytes] = {}
        self.build_py: str | None = None

    def teardown(self) -> None:
        if self.session is not None:
            self.session.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- edits (applied to both projects) ------------------------------------

    def _put(self, path: str, data: bytes) -> None:
        self.files[path] = data
        self.proj.write(path, data)
        self.twin.write(path, data)
        self.pending.add(path)

    @rule(doc=st.sampled_from([d for d in DOCS if d.endswith(".md")]), title=st.sampled_from(TITLES),
          body=st.sampled_from(WORDS), front=st.booleans(),
          links=st.lists(st.tuples(st.sampled_from(DOCS[:5] + ["gone.md"]), st.booleans()), max_size=3))
    def write_markdown(self, doc: str, title: str, body: str, front: bool, links: list[tuple[str, bool]]) -> None:
        rel = [(rel_link(doc, t), e) for t, e in links if t != doc]
        self._put(doc, md_text(title, body, rel, front).encode())

    @rule(doc=st.sampled_from([d for d in DOCS if d.endswith(".txt")]), title=st.sampled_from(TITLES),
          body=st.sampled_from(WORDS))
    def write_text(self, doc: str, title: str, body: str) -> None:
        self._put(doc, f"{title}\n\n{body}\n".encode())

    @rule(data=st.binary(min_size=0, max_size=8))
    def write_binary(self, data: bytes) -> None:
        self._put("pic.bin", data)

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(self.files)))
        del self.files[path]
        self.proj.delete(path)
        self.twin.delete(path)
        self.pending.add(path)

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        src = data.draw(st.sampled_from(sorted(self.files)))
        dst = data.draw(st.sampled_from(DOCS))
        if os.path.splitext(src)[1] != os.path.splitext(dst)[1] or dst in self.files:
            return
        payload = self.files.pop(src)
        self.proj.delete(src)
        self.twin.delete(src)
        self.pending.add(src)
        self._put(dst, payload)

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def touch(self, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(self.files)))
        os.utime(self.proj.root / "content" / path)
        os.utime(self.twin.root / "content" / path)
        self.pending.add(path)

    @rule(variant=st.integers(min_value=0, max_value=len(BUILD_PY) - 1))
    def edit_build_py(self, variant: int) -> None:
        self.build_py = BUILD_PY[variant]
        for root in (self.proj.root, self.twin.root):
            path = root / "build.py"
            if self.build_py is None:
                if path.exists():
                    path.unlink()
            else:
                path.write_text(self.build_py)

    @rule()
    def build_now(self) -> None:
        self.build(False)

    @rule()
    def build_again(self) -> None:
        self.build(False)

    @rule(tamper=st.booleans())
    def build(self, tamper: bool) -> None:
        root = self.proj.root
        if tamper and (root / "build").is_dir():
            outs = sorted(p for p in (root / "build").rglob("*") if p.is_file())
            if outs:
                outs[0].write_bytes(b"tampered")
        had_db = (root / "var" / "build.db").exists()
        prev_steps, prev_reads = recorded_reads(root) if had_db else (set(), {})

        result = self.proj.build_inproc()
        clean = self._clean_build()

        inc_snap, clean_snap = snapshot(root), snapshot(clean.root)
        assert inc_snap == clean_snap
        assert result.code == (1 if clean_snap["problems"] else 0)

        if had_db:
            expected = self._affected(prev_steps, prev_reads, clean.root)
            ran = result.executed | result.restored
            assert ran == expected, f"ran {sorted(ran)}, expected {sorted(expected)}"

        again = self.proj.build_inproc()
        assert again.steps == {}, f"no-op build ran {again.steps}"

        warm = self._warm_build()
        assert snapshot(self.twin.root) == clean_snap
        assert warm.code == result.code

    def _warm_build(self) -> Any:
        from sqldom.events import ListSink, as_dict
        from tests.support.project import _result
        sink = ListSink()
        if self.session is None:
            self.session = Session(EngineProject.at(self.twin.root), BuildOptions(root=self.twin.root))
            code = self.session.build(sink)
        else:
            code = self.session.build(sink, changed=set(self.pending))
        self.pending.clear()
        return _result(code, [as_dict(e) for e in sink.events])

    # ---- oracle ------------------------------------------------------------

    def _clean_build(self) -> Project:
        clean_root = self.tmp / "clean"
        shutil.rmtree(clean_root, ignore_errors=True)
        clean = Project(clean_root)
        for path, data in self.files.items():
            clean.write(path, data)
        if self.build_py is not None:
            (clean_root / "build.py").write_text(self.build_py)
        clean.build_inproc()
        return clean

    def _affected(self, prev_steps: set[str], prev_reads: dict[str, list[Any]], clean_root: Path) -> set[str]:
        con = sqlite3.connect(clean_root / "var" / "build.db")
        try:
            now_steps = {r[0] for r in con.execute("select id from steps")}
            facts: dict[str, dict[str, Any]] = {}
            import json
            for path, name, value in con.execute("select path, name, value from facts"):
                facts.setdefault(path, {})[name] = json.loads(value)
            code = {t: h for t, h in con.execute("select target, hash from deps where kind = 'code'")}
            spec = {(s, p, k): h for s, p, k, h in con.execute(
                "select step, phase, key, hash from deps where kind = 'spec'")}
        finally:
            con.close()
        docs = {p for p in self.files}
        paths = sorted(docs)

        def value(step: str, phase: str, kind: str, target: str, key: str) -> str:
            if kind == "source":
                return hash_bytes(self.files[target]) if target in self.files else ABSENT
            if kind == "exists":
                return "present" if target in docs else ABSENT
            if kind == "fact":
                if target not in docs:
                    return ABSENT
                f = facts.get(target, {})
                return hash_json(f if key == "*" else f.get(key))
            if kind == "glob":
                return hash_json(glob_filter(target, paths))
            if kind == "code":
                return code.get(target, ABSENT)
            if kind == "spec":
                return spec.get((step, phase, key), ABSENT)
            raise AssertionError(kind)

        expected = now_steps - prev_steps
        for step in now_steps & prev_steps:
            if any(value(step, ph, k, t, key) != h for ph, k, t, key, h in prev_reads.get(step, [])):
                expected.add(step)
        return expected


IncrementalEqualsClean.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_incremental_equals_clean = IncrementalEqualsClean.TestCase
