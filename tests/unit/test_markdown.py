"""sqldom.transforms.markdown: facts (title, links, front matter) and the HTML5 page it writes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqldom.hashing import hash_json
from sqldom.model import Problem, Read
from sqldom.site import PRESENT
from sqldom.transforms import markdown
from tests.unit.fakeworld import FakeWorld, doc_and_site, source


@pytest.fixture(autouse=True)
def _fresh_items_cache() -> Iterator[None]:
    """Tests must not see each other through the module's parse cache."""
    cache = getattr(markdown, "_items_cache", None)
    if cache is not None:
        cache.clear()
    yield
    if cache is not None:
        cache.clear()


def parse(text: str | bytes, path: str = "doc.md", world: FakeWorld | None = None) -> tuple[dict[str, Any], list[Problem]]:
    world = world or FakeWorld()
    world.sources[path] = text.encode() if isinstance(text, str) else text
    src, _ = source(world, path)
    problems: list[Problem] = []
    return markdown.parse(src, problems), problems


def write(world: FakeWorld, path: str) -> tuple[str, list[Problem], list[Read]]:
    """Parse ``path`` (so its facts exist, as the engine would), then write it."""
    facts, _ = parse(world.sources[path], path, world)
    world.fact_map[path] = facts
    doc, site, log = doc_and_site(world, path, path[:-3] + ".html")
    problems: list[Problem] = []
    out = markdown.write(doc, site, problems)
    assert isinstance(out, bytes)
    return out.decode("utf-8"), problems, log.reads()


def broken(problems: list[Problem]) -> list[tuple[int | None, str]]:
    return [(p.line, p.message) for p in problems]


# --- parse: title -------------------------------------------------------------------------------

def test_title_from_front_matter() -> None:
    facts, problems = parse("---\ntitle: From Meta\n---\n# Heading\n")
    assert facts["title"] == "From Meta"
    assert problems == []


def test_title_from_first_h1() -> None:
    facts, _ = parse("Intro\n\n## Sub\n\n# The *Real* Title\n\n# Second\n")
    assert facts["title"] == "The Real Title"


def test_title_from_setext_h1() -> None:
    facts, _ = parse("Setext Title\n============\n\nbody\n")
    assert facts["title"] == "Setext Title"


def test_title_falls_back_to_stem() -> None:
    facts, _ = parse("just text, ## not a heading\n", path="notes/my-page.md")
    assert facts["title"] == "my-page"


def test_empty_file() -> None:
    facts, problems = parse("", path="empty.md")
    assert facts == {"title": "empty", "links": []}
    assert problems == []


def test_non_string_front_matter_title_becomes_a_string() -> None:
    facts, _ = parse("---\ntitle: 2024\n---\nx\n")
    assert facts["title"] == "2024"


# --- parse: front matter ------------------------------------------------------------------------

def test_front_matter_keys_are_facts_and_dates_become_iso_strings() -> None:
    text = ("---\ntitle: T\ndate: 2024-03-05\nwhen: 2024-03-05 10:20:30\ntags: [a, b]\n"
            "draft: false\ncount: 3\nnested: {d: 2020-01-02}\n---\nbody\n")
    facts, problems = parse(text)
    assert problems == []
    assert facts["date"] == "2024-03-05"
    assert facts["when"] == "2024-03-05T10:20:30"
    assert facts["tags"] == ["a", "b"]
    assert facts["draft"] is False
    assert facts["count"] == 3
    assert facts["nested"] == {"d": "2020-01-02"}
    assert facts["links"] == []
    hash_json(facts)  # JSON-serialisable


def test_front_matter_is_not_rendered() -> None:
    world = FakeWorld({"a.md": "---\ntitle: T\nsecret: xyz\n---\n\nHello\n"})
    out, problems, _ = write(world, "a.md")
    assert "secret" not in out and "xyz" not in out
    assert "<p>Hello</p>" in out
    assert problems == []


def test_invalid_front_matter_is_a_problem_on_its_line() -> None:
    text = "---\ntitle: ok\nbad: [unclosed\nother: 1\n---\n# Body Title\n"
    facts, problems = parse(text, path="p.md")
    assert len(problems) == 1
    p = problems[0]
    assert p.path == "p.md" and p.step == "p.md" and p.severity == "error"
    assert "front matter" in p.message and "YAML" in p.message
    assert p.line == 4    # PyYAML notices the unclosed flow sequence on the next line
    assert facts["title"] == "Body Title"   # the body is still used


def test_a_date_that_does_not_exist_is_a_problem_on_its_line() -> None:
    """PyYAML raises a bare ValueError for 2023-02-30: a problem naming the line, not a failed parse."""
    text = "---\ntitle: ok\nsummary: fine\ndate: 2023-02-30\n---\n# Body Title\n"
    facts, problems = parse(text, path="p.md")
    assert [(p.path, p.line, p.severity) for p in problems] == [("p.md", 4, "error")]
    assert "day is out of range for month" in problems[0].message
    assert facts["title"] == "Body Title"


def test_invalid_front_matter_line_of_a_bad_mapping() -> None:
    text = "---\na: 1\n  b: 2\n---\nx\n"
    _, problems = parse(text)
    assert [p.line for p in problems] == [3]


def test_front_matter_that_is_not_a_mapping() -> None:
    _, problems = parse("---\n- a\n- b\n---\nx\n")
    assert len(problems) == 1 and problems[0].line == 2


def test_unclosed_front_matter_is_plain_markdown() -> None:
    facts, problems = parse("---\ntitle: x\n\n# Real\n")
    assert problems == []
    assert facts["title"] == "Real"


# --- parse: links -------------------------------------------------------------------------------

def test_links_fact_is_resolved_targets_in_order() -> None:
    text = ("See [b](b.md), [up](../up.txt) and [ext](https://x.org).\n\n"
            "- [c](sub/c.md#part)\n- [again](b.md)\n- [anchor](#top)\n\n"
            "![img](img/p.png)\n\n[ref][r]\n\n[r]: /root.txt\n")
    facts, _ = parse(text, path="docs/a.md")
    assert facts["links"] == ["docs/b.md", "up.txt", "docs/sub/c.md", "docs/img/p.png", "root.txt"]


def test_links_fact_includes_html_block_anchors() -> None:
    text = "# T\n\n<div>\n<a href=\"x.txt\"></a>\n</div>\n"
    facts, _ = parse(text)
    assert facts["links"] == ["x.txt"]


def test_links_fact_includes_inline_html_anchors() -> None:
    # SPEC 4: inline HTML <a href="a.txt"></a> is a link like [](a.txt); parse must list it too.
    facts, _ = parse('Text <a href="a.txt"></a> and [b](b.md).\n')
    assert facts["links"] == ["a.txt", "b.md"]


def test_parse_reads_only_its_own_source() -> None:
    world = FakeWorld({"a.md": "# A\n[](b.txt)\n", "b.txt": "B"}, {"b.txt": {"title": "B"}})
    src, log = source(world, "a.md")
    markdown.parse(src, [])
    assert log.reads() == [Read("source", "a.md", "", world.source_hash("a.md") or "")]


def test_parse_of_invalid_utf8_is_a_problem_with_the_line() -> None:
    _, problems = parse(b"# T\n\nok\nbad \xff byte\n")
    assert [p.line for p in problems] == [4]
    assert "UTF-8" in problems[0].message


# --- write: the page ----------------------------------------------------------------------------

def test_write_is_a_complete_html5_document() -> None:
    world = FakeWorld({"a.md": "# Hello & World\n\nSome *text*.\n"})
    out, problems, _ = write(world, "a.md")
    assert problems == []
    assert out.startswith("<!DOCTYPE html>")
    assert re.search(r"<html[^>]*>", out) and "<head>" in out and "<body>" in out
    assert '<meta charset="utf-8">' in out
    assert "<title>Hello &amp; World</title>" in out
    assert "<h1>Hello &amp; World</h1>" in out
    assert "<p>Some <em>text</em>.</p>" in out
    assert out.rstrip().endswith("</html>")


def test_write_title_from_front_matter_escaped() -> None:
    world = FakeWorld({"a.md": "---\ntitle: Meta <&> x\n---\n# Other\n"})
    out, _, _ = write(world, "a.md")
    assert "<title>Meta &lt;&amp;&gt; x</title>" in out


def test_empty_markdown_link_gets_target_title_and_depends_only_on_it() -> None:
    world = FakeWorld({"b.md": "Read [](a.txt) now.\n", "a.txt": "A <title>\nbody\n"},
                      {"a.txt": {"title": "A <title>", "links": []}})
    out, problems, reads = write(world, "b.md")
    assert problems == []
    assert '<a href="a.txt">A &lt;title&gt;</a>' in out
    assert set(reads) == {
        Read("source", "b.md", "", world.source_hash("b.md") or ""),
        Read("fact", "b.md", "*", hash_json(world.fact_map["b.md"])),
        Read("exists", "a.txt", "", PRESENT),
        Read("fact", "a.txt", "title", hash_json("A <title>")),
    }


def test_md_links_are_rewritten_to_html() -> None:
    world = FakeWorld({"docs/b.md": "[A](a.md#sec) [](../c.md) [t](t.txt) [e](https://x.org/y.md)\n",
                       "docs/a.md": "# A\n", "c.md": "# C\n", "docs/t.txt": "T\n"},
                      {"docs/a.md": {"title": "A"}, "c.md": {"title": "C title"}, "docs/t.txt": {"title": "T"}})
    out, problems, _ = write(world, "docs/b.md")
    assert problems == []
    assert '<a href="a.html#sec">A</a>' in out
    assert '<a href="../c.html">C title</a>' in out
    assert '<a href="t.txt">t</a>' in out
    assert '<a href="https://x.org/y.md">e</a>' in out


def test_inline_html_link_is_filled_and_rewritten() -> None:
    world = FakeWorld({"b.md": 'See <a href="a.md"></a> here.\n', "a.md": "# The A\n"},
                      {"a.md": {"title": "The A"}})
    out, problems, _ = write(world, "b.md")
    assert problems == []
    assert '<a href="a.html">The A</a>' in out


def test_html_block_link_is_filled() -> None:
    world = FakeWorld({"b.md": '<div>\n<a href="a.txt"></a>\n</div>\n', "a.txt": "A\n"}, {"a.txt": {"title": "A"}})
    out, problems, _ = write(world, "b.md")
    assert problems == []
    assert '<a href="a.txt">A</a>' in out


# --- write: broken links and their lines --------------------------------------------------------

def test_broken_link_is_a_problem_and_the_output_is_still_written() -> None:
    world = FakeWorld({"b.md": "# B\n\n[](a.txt)\n"})
    out, problems, reads = write(world, "b.md")
    assert len(problems) == 1
    p = problems[0]
    assert (p.path, p.line, p.step, p.severity) == ("b.md", 3, "b.md", "error")
    assert "a.txt" in p.message and "no such document" in p.message
    assert '<a href="a.txt"></a>' in out
    assert Read("exists", "a.txt", "", "absent") in reads


def test_links_on_later_lines_of_a_paragraph() -> None:
    text = "First line of the paragraph\nsecond line [](missing1.txt)\nthird [x](missing2.md) end\n"
    _, problems, _ = write(FakeWorld({"b.md": text}), "b.md")
    assert broken(problems) == [(2, "link to missing1.txt: no such document"),
                                (3, "link to missing2.md: no such document")]


def test_link_lines_after_front_matter() -> None:
    text = "---\ntitle: T\ntags: [a]\n---\n\n# H\n\npara\nline [](gone.txt)\n"
    _, problems, _ = write(FakeWorld({"b.md": text}), "b.md")
    assert [p.line for p in problems] == [9]


def test_link_lines_with_hard_breaks_and_multiline_link_text() -> None:
    text = "a  \nb [](g1.txt)\n[multi\nline](g2.txt) [](g3.txt)\nx\\\n[](g4.txt)\n"
    _, problems, _ = write(FakeWorld({"b.md": text}), "b.md")
    assert [p.line for p in problems] == [2, 3, 4, 6]


def test_link_lines_in_lists_quotes_and_headings() -> None:
    text = "# [](g1.txt)\n\n- one\n- two [](g2.txt)\n  more [](g3.txt)\n\n> quote\n> [](g4.txt)\n"
    _, problems, _ = write(FakeWorld({"b.md": text}), "b.md")
    assert [p.line for p in problems] == [1, 4, 5, 8]


def test_link_line_after_a_code_span_spanning_lines() -> None:
    text = "x `code\nspan` [](gone.txt)\n"
    _, problems, _ = write(FakeWorld({"b.md": text}), "b.md")
    assert [p.line for p in problems] == [2]


def test_link_line_after_inline_html_spanning_lines() -> None:
    text = 'x <span\nclass="c">y</span> [](gone.txt)\n'
    _, problems, _ = write(FakeWorld({"b.md": text}), "b.md")
    assert [p.line for p in problems] == [2]


def test_broken_link_lines_in_html_blocks_and_inline_html() -> None:
    text = ("---\ntitle: T\n---\n# T\n\n<div>\n<p>\n<a href=\"hb.txt\"></a>\n</div>\n\n"
            "para\nline <a href=\"inl.txt\"></a>\n")
    _, problems, _ = write(FakeWorld({"b.md": text}), "b.md")
    assert broken(problems) == [(8, "link to hb.txt: no such document"),
                                (12, "link to inl.txt: no such document")]


def test_images_are_checked() -> None:
    world = FakeWorld({"b.md": "![logo](img/logo.png)\n\n![x](missing.png)\n", "img/logo.png": b"\x89PNG"})
    out, problems, reads = write(world, "b.md")
    assert broken(problems) == [(3, "link to missing.png: no such document")]
    assert '<img src="img/logo.png" alt="logo"' in out
    assert Read("exists", "img/logo.png", "", PRESENT) in reads
    assert not any(r.kind == "fact" and r.target == "img/logo.png" for r in reads)


def test_link_outside_content_is_a_problem() -> None:
    _, problems, _ = write(FakeWorld({"b.md": "[x](../../etc/passwd)\n"}), "b.md")
    assert len(problems) == 1 and "outside content/" in problems[0].message and problems[0].line == 1


def test_external_links_read_nothing() -> None:
    world = FakeWorld({"b.md": "[a](https://a.org) [m](mailto:x@y.z) [h](#top) <https://auto.link>\n"})
    _, problems, reads = write(world, "b.md")
    assert problems == []
    assert {r.kind for r in reads} == {"source", "fact"}
    assert {r.target for r in reads} == {"b.md"}


# --- write is repeatable (the engine writes again in the same process, e.g. in watch) ------------

def test_write_does_not_change_a_later_parse_of_the_same_text() -> None:
    world = FakeWorld({"b.md": "[see](a.md)\n", "a.md": "# A\n"}, {"a.md": {"title": "A"}})
    out, _, _ = write(world, "b.md")
    assert 'href="a.html"' in out
    facts, _ = parse(world.sources["b.md"], "b.md", world)
    assert facts["links"] == ["a.md"]


def test_writing_the_same_document_twice_gives_the_same_result() -> None:
    world = FakeWorld({"b.md": "[](a.md)\n", "a.md": "# A\n"}, {"a.md": {"title": "A"}})
    first = write(world, "b.md")
    world.fact_map["a.md"] = {"title": "A2"}   # a.md's title changed: b.md is written again
    out, problems, reads = write(world, "b.md")
    assert problems == []
    assert '<a href="a.html">A2</a>' in out
    assert '<a href="a.html">A</a>' in first[0] and first[1] == []
    assert Read("exists", "a.md", "", PRESENT) in reads


# --- templates made ahead (what a worker does between its parse and its write) --------------------

def test_a_prepared_template_is_kept_in_a_file_and_taken_by_the_write(tmp_path: Any) -> None:
    text = "---\ntitle: Doc\n---\n# Doc\n\nSee [](other.md) and [x](missing.md).\n"
    world = FakeWorld({"doc.md": text, "other.md": "# Other\n"})
    world.fact_map["other.md"] = {"title": "Other", "links": []}
    plain, problems, reads = write(world, "doc.md")

    try:
        parse(text, "doc.md", world)
        markdown.prepare("doc.md", world.source_hash("doc.md") or "", text.encode(), tmp_path / "tmp")
        assert list(markdown._prepared.at) == [("doc.md", world.source_hash("doc.md"))]
        # (offset, length), not the template
        assert all(isinstance(at, int) and isinstance(n, int) for at, n in markdown._prepared.at.values())
        assert (tmp_path / "tmp").is_dir() and not list((tmp_path / "tmp").iterdir())   # (a nameless file)
        markdown._items_cache.clear()   # the write must not be able to fall back on a cached tree
        again = write(world, "doc.md")
        assert markdown._prepared.at == {}   # taken
        assert again == (plain, problems, reads)
    finally:
        markdown.discard_prepared()
    assert markdown._prepared.file is None


def test_a_template_prepared_for_other_bytes_is_not_used(tmp_path: Any) -> None:
    world = FakeWorld({"doc.md": "# New text\n"})
    try:
        markdown.prepare("doc.md", "hash-of-the-old-bytes", b"# Old text\n", tmp_path)
        out, _, _ = write(world, "doc.md")
        assert "New text" in out and "Old text" not in out
    finally:
        markdown.discard_prepared()


def test_a_template_that_cannot_be_kept_is_rendered_again_by_the_write(tmp_path: Any) -> None:
    text = "# Doc\n\nSee [](other.md).\n"
    world = FakeWorld({"doc.md": text, "other.md": "# Other\n"})
    world.fact_map["other.md"] = {"title": "Other", "links": []}
    plain = write(world, "doc.md")
    (tmp_path / "file").write_text("not a folder")
    try:
        markdown.prepare("doc.md", world.source_hash("doc.md") or "", text.encode(), tmp_path / "file")
        assert markdown._prepared.at == {}   # not kept (no folder for the file)
        assert write(world, "doc.md") == plain
    finally:
        markdown.discard_prepared()


# --- the front-matter fence, found by str.find or by splitlines -------------------------------

_LINE_PARTS = ["---", "...", "title: x", "--- ", "..", "----", "", "a", "\r", "\x85", "\u2028", "\x0b"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_LINE_PARTS), st.sampled_from(["\n", "\n", "\r\n", "\r", "\x0c"])),
                max_size=8), st.booleans())
def test_the_quick_fence_search_splits_as_splitlines_does(lines: list[tuple[str, str]], cut_last: bool) -> None:
    text = "---\n" + "".join(part + end for part, end in lines)
    if cut_last:
        text = text[:-1]
    quick = markdown._fence(text)
    if quick is not markdown._UNSURE:
        assert quick == markdown._fence_by_lines(text)
    for load in (False, True):   # and the whole split agrees with the line-by-line one
        got = markdown.split_front_matter(text, "doc.md", [], load=load)
        by_lines = markdown._fence_by_lines(text)
        assert got[1:] == ((by_lines[1], by_lines[2]) if by_lines is not None else (text, 0))


def test_the_quick_fence_search_is_taken_for_plain_front_matter() -> None:
    text = "---\ntitle: T\ndate: 2024-01-02\n---\n# Body\n"
    assert markdown._fence(text) == ("title: T\ndate: 2024-01-02\n", "# Body\n", 4)
    assert markdown._fence("---\r\ntitle: T\r\n---\r\nbody") is markdown._UNSURE   # (\r: splitlines decides)
    assert markdown.split_front_matter("---\r\ntitle: T\r\n---\r\nbody", "doc.md", []) == ({"title": "T"}, "body", 3)
