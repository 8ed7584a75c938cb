"""Two steps wanting one output, in a warm session (``sqldom watch``): the clash comes and goes with its steps."""

from __future__ import annotations

from pathlib import Path

from sqldom.engine import BuildOptions, Session
from sqldom.engine import Project as EngineProject
from sqldom.events import ListSink, ProblemEvent
from tests.support.project import Project

BUILD_PY = '''
import sqldom


@sqldom.writer("**/*.txt", output="all.html")
def every(doc, site):
    return doc.data
'''


def problems(session: Session, changed: set[str] | None) -> dict[str, str]:
    sink = ListSink()
    session.build(sink, changed=changed)
    return {e.step: e.message for e in sink.events if isinstance(e, ProblemEvent)}


def test_a_shared_output_is_claimed_again_as_steps_come_and_go(tmp_path: Path) -> None:
    p = Project(tmp_path / "p")
    p.write("../build.py", BUILD_PY)
    for name in ("a.txt", "b.txt", "c.txt"):
        p.write(name, name)
    session = Session(EngineProject.at(p.root), BuildOptions(root=p.root))
    try:
        first = problems(session, None)
        assert set(first) == {"b.txt", "c.txt"} and "a.txt" in first["b.txt"]
        assert p.output("all.html") == b"a.txt"

        p.delete("a.txt")   # the winner goes: b.txt now writes it, c.txt still loses
        after = problems(session, {"a.txt"})
        assert set(after) == {"c.txt"} and "b.txt" in after["c.txt"]
        assert p.output("all.html") == b"b.txt"

        p.delete("c.txt")   # one claimant left: no clash
        assert problems(session, {"c.txt"}) == {}
        assert p.output("all.html") == b"b.txt"

        p.write("a.txt", "a.txt again")   # back, and first by id again
        again = problems(session, {"a.txt"})
        assert set(again) == {"b.txt"}
        assert p.output("all.html") == b"a.txt again"
    finally:
        session.close()
