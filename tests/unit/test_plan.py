"""sqldom.plan: verify a step's recorded reads; reasons in the user's words; duplicate outputs."""

from __future__ import annotations

import itertools

import pytest

from sqldom.hashing import ABSENT
from sqldom.model import Read
from sqldom.plan import change_reason, duplicate_outputs, short, verify
from sqldom.site import PRESENT

H1 = "0123456789abcdef0123456789abcdef"
H2 = "fedcba9876543210fedcba9876543210"


def _current(values: dict[tuple[str, str, str], str]):  # type: ignore[no-untyped-def]
    return lambda r: values[(r.kind, r.target, r.key)]


def test_verify_none_when_every_read_matches() -> None:
    reads = [Read("source", "b.md", "", H1), Read("fact", "a.txt", "title", H2),
             Read("exists", "c.txt", "", PRESENT), Read("glob", "posts/*.md", "", H1)]
    assert verify(reads, lambda r: r.hash) is None
    assert verify([], lambda r: "x") is None


@pytest.mark.parametrize(("read", "now", "reason"), [
    (Read("source", "b.md", "", H1), H2, "source b.md changed"),
    (Read("source", "b.md", "", H1), ABSENT, "source b.md deleted"),
    (Read("source", "b.md", "", ABSENT), H1, "source b.md appeared"),
    (Read("fact", "a.txt", "title", H1), H2, "fact title of a.txt changed"),
    (Read("fact", "a.txt", "*", H1), H2, "facts of a.txt changed"),
    (Read("fact", "a.txt", "title", H1), ABSENT, "document a.txt disappeared"),
    (Read("fact", "a.txt", "title", ABSENT), H1, "document a.txt appeared"),
    (Read("code", "build.py:write_html", "", H1), H2, "code of build.py:write_html changed"),
    (Read("exists", "a.txt", "", PRESENT), ABSENT, "a.txt disappeared"),
    (Read("exists", "a.txt", "", ABSENT), PRESENT, "a.txt appeared"),
    (Read("glob", "posts/*.md", "", H1), H2, "glob posts/*.md changed"),
])
def test_reasons(read: Read, now: str, reason: str) -> None:
    assert change_reason(read, now) == reason
    result = verify([read], lambda r: now)
    assert result is not None
    assert result[0] == reason
    assert result[1] == f"{reason} ({short(read.hash)} -> {short(now)})"


def test_verify_reports_the_first_mismatch_in_order() -> None:
    reads = [Read("source", "b.md", "", H1), Read("fact", "a.txt", "title", H1), Read("code", "build.py:w", "", H1)]
    now = _current({("source", "b.md", ""): H1, ("fact", "a.txt", "title"): H2, ("code", "build.py:w", ""): H2})
    result = verify(reads, now)
    assert result is not None and result[0] == "fact title of a.txt changed"
    assert result[1] == "fact title of a.txt changed (01234567 -> fedcba98)"


def test_verify_stops_at_the_first_mismatch() -> None:
    asked: list[Read] = []

    def current(r: Read) -> str:
        asked.append(r)
        return H2

    reads = [Read("source", "a", "", H1), Read("source", "b", "", H1)]
    verify(reads, current)
    assert asked == reads[:1]


def test_short() -> None:
    assert short(H1) == "01234567"
    assert short(ABSENT) == ABSENT
    assert short(PRESENT) == PRESENT


def test_spec_reason() -> None:
    assert change_reason(Read("spec", "writer:**/*.md", "", H1), H2) == "rule changed"


# --- duplicate_outputs -----------------------------------------------------------------------------

def test_no_duplicates() -> None:
    assert duplicate_outputs({"a.md": "a.html", "b.md": "b.html"}) == {}
    assert duplicate_outputs({}) == {}


def test_duplicate_winner_is_the_smallest_id_whatever_the_order() -> None:
    claims = [("b.md", "x.html"), ("a.html", "a.html"), ("x.html", "x.html"), ("a.md", "a.html"),
              ("c.md", "c.html"), ("x.md", "x.html")]
    expected = {"x.md": "b.md", "x.html": "b.md", "a.md": "a.html"}
    for perm in itertools.permutations(claims):
        assert duplicate_outputs(dict(perm)) == expected


def test_duplicate_winner_is_by_id_not_by_path_depth() -> None:
    assert duplicate_outputs({"z.md": "o.html", "a/z.md": "o.html", "index.html": "o.html"}) == {
        "index.html": "a/z.md", "z.md": "a/z.md"}


def test_path_clashes_name_a_file_that_another_output_needs_as_a_folder() -> None:
    from sqldom.plan import path_clashes
    found = path_clashes({"a": "docs", "b.md": "docs/b.html", "c.md": "c.html"})
    assert set(found) == {"b.md"}
    winner, message = found["b.md"]
    assert winner == "a" and "docs/b.html" in message and "build/docs" in message
    assert path_clashes({"x.md": "x.html", "y/z.md": "y/z.html"}) == {}


@pytest.mark.parametrize(("marks", "status"), [
    ([], "restored"), (["restored"], "restored"), (["built"], "built"), (["restored", "built"], "built"),
    (["built", "restored"], "built"), (["failed", "built"], "failed"), (["built", "failed"], "failed"),
    (["restored", "failed", "restored"], "failed")])
def test_a_steps_status_is_the_gravest_of_its_phases(marks: list[str], status: str) -> None:
    """A step whose parse was restored and whose write was built was built; any failed phase fails it."""
    from sqldom.engine import Outcome
    o = Outcome()
    for m in marks:
        o.mark(m)
    assert o.status == status
