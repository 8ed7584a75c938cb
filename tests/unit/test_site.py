"""sqldom.site: Source / Doc / Site, and the read log every read goes through."""

from __future__ import annotations

from sqldom.hashing import ABSENT, hash_bytes, hash_json
from sqldom.model import Read
from sqldom.site import PRESENT, Doc, ReadLog, Site, Source, fact_hash, glob_hash, normalize
from tests.unit.fakeworld import FakeWorld


def _world() -> FakeWorld:
    return FakeWorld(
        {"a.md": "# A\n", "posts/p1.md": "one", "posts/p2.md": "two", "posts/x/deep.md": "d", "b.txt": "B"},
        {"a.md": {"title": "A", "links": ["b.txt"], "date": "2024-01-01"},
         "posts/p1.md": {"title": "P1"}, "posts/p2.md": {"title": "P2"}},
    )


# --- Source ----------------------------------------------------------------------------------------

def test_source_data_and_text_record_one_source_read() -> None:
    w, log = _world(), ReadLog()
    s = Source("a.md", w, log)
    assert log.reads() == []          # nothing read yet
    assert s.data == b"# A\n"
    assert s.text == "# A\n"
    assert s.decode_error is None
    assert log.reads() == [Read("source", "a.md", "", hash_bytes(b"# A\n"))]


def test_source_text_decoding_error_records_offset_and_line() -> None:
    w, log = FakeWorld({"bad.txt": b"line1\nline2\nab\xffcd\n"}), ReadLog()
    s = Source("bad.txt", w, log)
    text = s.text
    assert text == "line1\nline2\nab\ufffdcd\n"
    assert s.decode_error == (14, 3)


def test_source_text_decoding_error_on_first_line() -> None:
    s = Source("x", FakeWorld({"x": b"\xfe"}), ReadLog())
    assert s.text == "\ufffd"
    assert s.decode_error == (0, 1)


# --- Doc -------------------------------------------------------------------------------------------

def test_doc_facts_record_the_whole_fact_dict() -> None:
    w, log = _world(), ReadLog()
    d = Doc("a.md", w, log, "a.html")
    facts = d.facts
    assert facts == w.fact_map["a.md"]
    facts["title"] = "mutated"
    assert w.fact_map["a.md"]["title"] == "A"     # a copy
    assert d.output == "a.html"
    assert log.reads() == [Read("fact", "a.md", "*", hash_json(w.fact_map["a.md"]))]


# --- Site.fact / facts -----------------------------------------------------------------------------

def test_site_fact_records_exactly_that_fact() -> None:
    w, log = _world(), ReadLog()
    site = Site(w, log)
    assert site.fact("a.md", "title") == "A"
    assert log.reads() == [Read("fact", "a.md", "title", hash_json("A"))]


def test_site_fact_of_a_missing_document_returns_default_and_records_absence() -> None:
    w, log = _world(), ReadLog()
    site = Site(w, log)
    assert site.fact("nope.md", "title") is None
    assert site.fact("gone.md", "title", default="fallback") == "fallback"
    assert log.reads() == [Read("fact", "nope.md", "title", ABSENT), Read("fact", "gone.md", "title", ABSENT)]


def test_site_fact_of_a_missing_key_returns_default() -> None:
    w, log = _world(), ReadLog()
    assert Site(w, log).fact("posts/p1.md", "date", "none") == "none"
    assert log.reads() == [Read("fact", "posts/p1.md", "date", hash_json(None))]
    assert hash_json(None) != ABSENT


def test_site_fact_of_a_null_value_returns_null_not_the_default() -> None:
    w, log = FakeWorld(facts={"a.md": {"title": "A", "draft": None}}), ReadLog()
    assert Site(w, log).fact("a.md", "draft", "default") is None   # the fact is there, and it is null
    assert log.reads() == [Read("fact", "a.md", "draft", hash_json(None))]


def test_site_fact_normalizes_paths() -> None:
    w, log = _world(), ReadLog()
    site = Site(w, log)
    assert site.fact("./a.md", "title") == "A"
    assert site.fact("/a.md", "title") == "A"
    assert site.fact("posts/../a.md", "title") == "A"
    assert log.reads() == [Read("fact", "a.md", "title", hash_json("A"))]   # one read, recorded once


def test_site_facts_records_star() -> None:
    w, log = _world(), ReadLog()
    site = Site(w, log)
    assert site.facts("posts/p1.md") == {"title": "P1"}
    assert site.facts("missing.md") is None
    assert log.reads() == [Read("fact", "posts/p1.md", "*", hash_json({"title": "P1"})),
                           Read("fact", "missing.md", "*", ABSENT)]


def test_fact_hash_is_independent_of_key_order() -> None:
    assert fact_hash({"a": 1, "b": 2}, "*") == fact_hash({"b": 2, "a": 1}, "*")
    assert fact_hash(None, "title") == ABSENT
    assert fact_hash({"title": "x"}, "title") == hash_json("x")


# --- Site.glob -------------------------------------------------------------------------------------

def test_site_glob_records_membership_hash() -> None:
    w, log = _world(), ReadLog()
    matches = Site(w, log).glob("posts/*.md")
    assert matches == ["posts/p1.md", "posts/p2.md"]
    assert log.reads() == [Read("glob", "posts/*.md", "", hash_json(["posts/p1.md", "posts/p2.md"]))]
    assert log.reads()[0].hash == glob_hash(w, "posts/*.md")


def test_glob_hash_depends_on_membership_not_content() -> None:
    w = _world()
    before = glob_hash(w, "posts/*.md")
    w.sources["posts/p1.md"] = b"edited"
    w.sources["posts/x/new.md"] = b"deeper: not a member"
    assert glob_hash(w, "posts/*.md") == before
    w.sources["posts/p3.md"] = b"new"
    assert glob_hash(w, "posts/*.md") != before
    del w.sources["posts/p3.md"], w.sources["posts/p2.md"]
    assert glob_hash(w, "posts/*.md") != before


def test_site_glob_with_double_star() -> None:
    w, log = _world(), ReadLog()
    assert Site(w, log).glob("**/*.md") == ["a.md", "posts/p1.md", "posts/p2.md", "posts/x/deep.md"]


# --- Site.read / exists ----------------------------------------------------------------------------

def test_site_read_records_the_source_read() -> None:
    w, log = _world(), ReadLog()
    site = Site(w, log)
    assert site.read("b.txt") == b"B"
    assert site.read("./missing.bin") is None
    assert log.reads() == [Read("source", "b.txt", "", hash_bytes(b"B")), Read("source", "missing.bin", "", ABSENT)]


def test_site_exists_records_presence_not_content() -> None:
    w, log = _world(), ReadLog()
    site = Site(w, log)
    assert site.exists("b.txt") is True
    assert site.exists("c.txt") is False
    assert log.reads() == [Read("exists", "b.txt", "", PRESENT), Read("exists", "c.txt", "", ABSENT)]


# --- ReadLog, normalize -----------------------------------------------------------------------------

def test_read_log_keeps_the_first_value_of_each_read() -> None:
    log = ReadLog()
    log.add("fact", "a.md", "title", "h1")
    log.add("fact", "a.md", "title", "h2")
    log.add("fact", "a.md", "date", "h3")
    assert log.reads() == [Read("fact", "a.md", "title", "h1"), Read("fact", "a.md", "date", "h3")]


def test_normalize() -> None:
    assert normalize("./a.md") == "a.md"
    assert normalize("/a.md") == "a.md"
    assert normalize("x//y/../z.md") == "x/z.md"
    assert normalize("") == ""
    assert normalize(".") == ""
