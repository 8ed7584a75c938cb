"""sqldom.transforms.links: resolve, rewrite, check, and process_html over a fake World."""

from __future__ import annotations

import pytest

from sqldom.hashing import ABSENT, hash_json
from sqldom.model import Problem, Read
from sqldom.site import PRESENT, ReadLog, Site
from sqldom.transforms.links import (
    hrefs_in_html,
    link_targets,
    process_html,
    resolve,
    rewrite,
    split_href,
)
from tests.unit.fakeworld import FakeWorld

# --- resolve ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("href", "doc", "expected"), [
    ("a.md", "b.md", "a.md"),
    ("a.md", "x/b.md", "x/a.md"),
    ("./a.md", "x/b.md", "x/a.md"),
    ("../a.md", "x/b.md", "a.md"),
    ("../y/a.md", "x/b.md", "y/a.md"),
    ("sub/../a.md", "b.md", "a.md"),
    ("/a.md", "x/y/b.md", "a.md"),          # root-absolute: relative to content/
    ("/docs/a.md", "x/b.md", "docs/a.md"),
    ("a.md#intro", "b.md", "a.md"),
    ("a.md?v=1", "b.md", "a.md"),
    ("a.md?v=1#intro", "b.md", "a.md"),
    ("my%20file.md", "b.md", "my file.md"),
    ("x/caf%C3%A9.txt", "b.md", "x/café.txt"),
    ("  a.md  ", "b.md", "a.md"),
    # not local
    ("https://example.com/a.md", "b.md", None),
    ("http://example.com", "b.md", None),
    ("mailto:someone@example.com", "b.md", None),
    ("tel:+123", "b.md", None),
    ("//cdn.example.com/x.js", "b.md", None),
    ("#anchor", "b.md", None),
    ("", "b.md", None),
    ("?q=1", "b.md", None),
    # escaping content/
    ("../a.md", "b.md", ""),
    ("../../a.md", "x/b.md", ""),
    ("/../a.md", "b.md", ""),
    ("..", "b.md", ""),
    ("%2E%2E/a.md", "b.md", ""),
])
def test_resolve(href: str, doc: str, expected: str | None) -> None:
    assert resolve(href, doc) == expected


def test_split_href() -> None:
    assert split_href("a.md#x") == ("a.md", "#x")
    assert split_href("a.md?q=1") == ("a.md", "?q=1")
    assert split_href("a.md") == ("a.md", "")
    assert split_href("a.md?q=1#x") == ("a.md", "?q=1#x")


@pytest.mark.parametrize(("href", "expected"), [
    ("a.md", "a.html"),
    ("a.md#x", "a.html#x"),
    ("x/a.md?v=2", "x/a.html?v=2"),
    ("a.md?v=2#x", "a.html?v=2#x"),
    ("../a.md", "../a.html"),
    ("a.txt", "a.txt"),
    ("a.html", "a.html"),
    ("a.mdx", "a.mdx"),
    ("#top", "#top"),
])
def test_rewrite(href: str, expected: str) -> None:
    assert rewrite(href) == expected


def test_link_targets_distinct_in_order_local_only() -> None:
    hrefs = ["c.md", "https://x", "a.txt#x", "c.md", "../out.md", "#top", "sub/b.md"]
    assert link_targets(hrefs, "d.md") == ["c.md", "a.txt", "sub/b.md"]


def test_hrefs_in_html() -> None:
    text = '<p><a href="a.txt">A</a>\n<a name="x">no href</a>\n<A HREF=\'b.md\'>\n<abbr href="no">\n<a href=c&amp;d.txt>'
    assert hrefs_in_html(text) == [("a.txt", 1), ("b.md", 3), ("c&d.txt", 5)]


# --- process_html ----------------------------------------------------------------------------------

def _run(text: str, world: FakeWorld, doc: str = "doc.html", first_line: int = 1) -> tuple[str, list[Problem], list[Read]]:
    log = ReadLog()
    problems: list[Problem] = []
    out = process_html(text, doc, Site(world, log), problems, first_line)
    return out, problems, log.reads()


def test_empty_link_gets_the_target_title_escaped() -> None:
    world = FakeWorld({"a.txt": "A & B <x>\n", "doc.html": ""}, {"a.txt": {"title": "A & B <x>", "links": []}})
    out, problems, reads = _run('<p><a href="a.txt"></a></p>', world)
    assert out == '<p><a href="a.txt">A &amp; B &lt;x&gt;</a></p>'
    assert problems == []
    assert set(reads) == {Read("exists", "a.txt", "", PRESENT),
                          Read("fact", "a.txt", "title", hash_json("A & B <x>"))}


def test_whitespace_only_link_is_filled_too() -> None:
    world = FakeWorld({"a.txt": "T"}, {"a.txt": {"title": "T"}})
    out, _, _ = _run('<a href="a.txt">  </a>', world)
    assert out == '<a href="a.txt">T</a>'


def test_non_empty_link_is_kept_and_reads_only_existence() -> None:
    world = FakeWorld({"a.txt": "T"}, {"a.txt": {"title": "T"}})
    text = '<a href="a.txt">my words</a>'
    out, problems, reads = _run(text, world)
    assert out == text
    assert problems == []
    assert reads == [Read("exists", "a.txt", "", PRESENT)]


def test_md_hrefs_are_rewritten_keeping_quotes_and_fragment() -> None:
    world = FakeWorld({"a.md": "# A", "x/b.md": "# B"}, {"a.md": {"title": "A"}, "x/b.md": {"title": "B"}})
    text = "<a href=\"a.md#s\" class=\"k\">a</a> <a href='x/b.md'></a> <a href=a.md>u</a>"
    out, problems, _ = _run(text, world)
    assert out == "<a href=\"a.html#s\" class=\"k\">a</a> <a href='x/b.html'>B</a> <a href=a.html>u</a>"
    assert problems == []


def test_relative_to_the_document_folder() -> None:
    world = FakeWorld({"docs/a.txt": "T", "top.txt": "Top"}, {"docs/a.txt": {"title": "T"}, "top.txt": {"title": "Top"}})
    out, problems, _ = _run('<a href="a.txt"></a><a href="../top.txt"></a><a href="/top.txt"></a>', world,
                            doc="docs/page.html")
    assert out == '<a href="a.txt">T</a><a href="../top.txt">Top</a><a href="/top.txt">Top</a>'
    assert problems == []


def test_external_and_anchor_links_are_untouched_and_read_nothing() -> None:
    text = ('<a href="https://example.com"></a><a href="#top"></a><a href="mailto:x@y.z"></a>'
            '<a href="//cdn/x"></a><a name="n"></a>')
    out, problems, reads = _run(text, FakeWorld())
    assert out == text
    assert problems == []
    assert reads == []


def test_broken_links_are_reported_with_their_line() -> None:
    world = FakeWorld({"sub/ok.txt": "OK"}, {"sub/ok.txt": {"title": "OK"}})
    text = ('<html>\n<body>\n<a href="ok.txt"></a>\n<p>text\n'
            '  <a class="x"\n     href="missing.txt"></a>\n<a href="gone.md#x">g</a></p>\n')
    out, problems, reads = _run(text, world, doc="sub/page.html")
    assert [(p.path, p.line, p.step, p.severity) for p in problems] == [
        ("sub/page.html", 5, "sub/page.html", "error"), ("sub/page.html", 7, "sub/page.html", "error")]
    assert "sub/missing.txt" in problems[0].message and "no such document" in problems[0].message
    assert "sub/gone.md" in problems[1].message
    # the broken links are left as they were (output still written), the good one filled
    assert out == text.replace('<a href="ok.txt"></a>', '<a href="ok.txt">OK</a>')
    assert set(reads) == {Read("exists", "sub/ok.txt", "", PRESENT),
                          Read("fact", "sub/ok.txt", "title", hash_json("OK")),
                          Read("exists", "sub/missing.txt", "", ABSENT),
                          Read("exists", "sub/gone.md", "", ABSENT)}


def test_broken_link_output_unchanged_and_line_offset() -> None:
    text = "a\nb\n<a href=\"nope.txt\"></a>"
    out, problems, reads = _run(text, FakeWorld(), first_line=10)
    assert out == text
    assert [p.line for p in problems] == [12]
    assert reads == [Read("exists", "nope.txt", "", ABSENT)]


def test_link_leaving_content_is_a_problem_and_reads_nothing() -> None:
    text = '<a href="../../etc/passwd"></a>'
    out, problems, reads = _run(text, FakeWorld(), doc="a/b.html")
    assert out == text
    assert len(problems) == 1 and "outside content/" in problems[0].message and problems[0].line == 1
    assert reads == []


def test_missing_title_falls_back_to_the_target_path() -> None:
    world = FakeWorld({"a.bin": b"\x00"}, {"a.bin": {}})
    out, _, reads = _run('<a href="a.bin"></a>', world)
    assert out == '<a href="a.bin">a.bin</a>'
    assert Read("fact", "a.bin", "title", hash_json(None)) in reads


def test_escaped_href_is_unescaped_for_lookup() -> None:
    world = FakeWorld({"a&b.txt": "T", "my file.txt": "F"}, {"a&b.txt": {"title": "T"}, "my file.txt": {"title": "F"}})
    out, problems, _ = _run('<a href="a&amp;b.txt"></a><a href="my%20file.txt"></a>', world)
    assert out == '<a href="a&amp;b.txt">T</a><a href="my%20file.txt">F</a>'
    assert problems == []


def test_same_target_twice_is_one_read_each() -> None:
    world = FakeWorld({"a.txt": "T"}, {"a.txt": {"title": "T"}})
    out, _, reads = _run('<a href="a.txt"></a> <a href="./a.txt"></a>', world)
    assert out == '<a href="a.txt">T</a> <a href="./a.txt">T</a>'
    assert sorted(reads, key=lambda r: r.kind) == [Read("exists", "a.txt", "", PRESENT),
                                                   Read("fact", "a.txt", "title", hash_json("T"))]
