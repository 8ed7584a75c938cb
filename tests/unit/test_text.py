"""sqldom.transforms.text (title = first line, bytes unchanged) and transforms.copy."""

from __future__ import annotations

import pytest

from sqldom.model import Problem
from sqldom.transforms import copy, text
from tests.unit.fakeworld import FakeWorld, doc_and_site, source


@pytest.mark.parametrize(("data", "title"), [
    ("Hello world\nsecond line\n", "Hello world"),
    ("  Padded  \n", "Padded"),
    ("\ufeffWith BOM\nx", "With BOM"),
    ("Windows\r\nline\r\n", "Windows"),
    ("only line", "only line"),
    ("", "notes"),
    ("\nfirst line empty", "notes"),
])
def test_title_is_the_first_line(data: str, title: str) -> None:
    world = FakeWorld({"d/notes.txt": data})
    src, _ = source(world, "d/notes.txt")
    problems: list[Problem] = []
    assert text.parse(src, problems) == {"title": title, "links": []}
    assert problems == []


@pytest.mark.parametrize("data", [b"Title\r\nbody \xc3\xa9\r\n", b"", b"no newline", b"bad \xff utf8\n"])
def test_text_output_is_byte_identical(data: bytes) -> None:
    world = FakeWorld({"a.txt": data})
    doc, site, log = doc_and_site(world, "a.txt")
    problems: list[Problem] = []
    assert text.write(doc, site, problems) == data
    assert problems == []
    assert [(r.kind, r.target) for r in log.reads()] == [("source", "a.txt")]


def test_text_with_bad_utf8_reports_the_line() -> None:
    world = FakeWorld({"a.txt": b"ok\nok\nbad \xff\n"})
    src, _ = source(world, "a.txt")
    problems: list[Problem] = []
    text.parse(src, problems)
    assert [(p.path, p.line) for p in problems] == [("a.txt", 3)]


def test_binary_content_in_a_text_file_is_a_problem() -> None:
    world = FakeWorld({"a.txt": b"title\n\x00\x01\x02"})
    src, _ = source(world, "a.txt")
    problems: list[Problem] = []
    text.parse(src, problems)
    assert len(problems) == 1 and problems[0].line == 2 and "binary" in problems[0].message


def test_copy_has_no_facts_and_copies_bytes() -> None:
    data = bytes(range(256))
    world = FakeWorld({"img/x.bin": data})
    src, _ = source(world, "img/x.bin")
    assert copy.parse(src, []) == {}
    doc, site, _ = doc_and_site(world, "img/x.bin")
    assert copy.write(doc, site, []) == data
