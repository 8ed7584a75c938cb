"""sqldom.transforms.html: title from <title>, else <h1>, else the stem; links checked and filled."""

from __future__ import annotations

from typing import Any

import pytest

from sqldom.hashing import hash_json
from sqldom.model import Problem, Read
from sqldom.site import PRESENT
from sqldom.transforms import html
from tests.unit.fakeworld import FakeWorld, doc_and_site, source


def parse(text: str | bytes, path: str = "page.html") -> tuple[dict[str, Any], list[Problem]]:
    world = FakeWorld({path: text})
    src, _ = source(world, path)
    problems: list[Problem] = []
    return html.parse(src, problems), problems


def write(world: FakeWorld, path: str) -> tuple[bytes, list[Problem], list[Read]]:
    doc, site, log = doc_and_site(world, path)
    problems: list[Problem] = []
    return html.write(doc, site, problems), problems, log.reads()


@pytest.mark.parametrize(("text", "title"), [
    ("<html><head><title>The Title</title></head><body><h1>H</h1></body></html>", "The Title"),
    ("<TITLE lang=en>\n  Spaced\n  Out  </TITLE>", "Spaced Out"),
    ("<title>Fish &amp; Chips</title>", "Fish & Chips"),
    ("<body><h1 class='x'>Head <em>One</em></h1><h1>Two</h1></body>", "Head One"),
    ("<title>  </title><h1>From H1</h1>", "From H1"),
    ("<p>no heading</p>", "page"),
    ("", "page"),
])
def test_title(text: str, title: str) -> None:
    facts, problems = parse(text)
    assert facts["title"] == title
    assert problems == []


def test_title_falls_back_to_the_stem_of_a_nested_file() -> None:
    facts, _ = parse("<p>x</p>", path="a/b/my.page.html")
    assert facts["title"] == "my.page"


def test_links_fact() -> None:
    text = '<a href="b.html">b</a> <a href="../x.txt"></a> <a href="https://e.org"></a> <a href="b.html#s"></a>'
    facts, _ = parse(text, path="d/p.html")
    assert facts["links"] == ["d/b.html", "x.txt"]


def test_write_without_links_is_byte_identical() -> None:
    data = b"<html>\r\n<title>T</title>\r\n<body>\xc3\xa9 <a href='https://x'>x</a></body></html>\r\n"
    world = FakeWorld({"p.html": data})
    out, problems, reads = write(world, "p.html")
    assert out == data
    assert problems == []
    assert reads == [Read("source", "p.html", "", world.source_hash("p.html") or "")]


def test_write_fills_empty_links_and_rewrites_md() -> None:
    world = FakeWorld({"p.html": '<p><a href="a.txt"></a> <a href="b.md">b</a></p>\n', "a.txt": "A\n", "b.md": "# B"},
                      {"a.txt": {"title": "A & co"}, "b.md": {"title": "B"}})
    out, problems, reads = write(world, "p.html")
    assert out == b'<p><a href="a.txt">A &amp; co</a> <a href="b.html">b</a></p>\n'
    assert problems == []
    assert set(reads) == {Read("source", "p.html", "", world.source_hash("p.html") or ""),
                          Read("exists", "a.txt", "", PRESENT), Read("fact", "a.txt", "title", hash_json("A & co")),
                          Read("exists", "b.md", "", PRESENT)}


def test_write_reports_broken_links_with_lines() -> None:
    world = FakeWorld({"p.html": "<html>\n<body>\n<a href=\"gone.txt\"></a>\n</body>\n"})
    out, problems, _ = write(world, "p.html")
    assert out == world.sources["p.html"]
    assert [(p.path, p.line) for p in problems] == [("p.html", 3)]
    assert "gone.txt" in problems[0].message


def test_invalid_utf8_is_a_parse_problem() -> None:
    _, problems = parse(b"<title>x</title>\n\xff\n")
    assert [p.line for p in problems] == [2]
