"""Packed results (sqldom/packing.py): the strings the database records, equal to encoding the values."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sqldom.hashing import canonical_json, hash_text
from sqldom.model import PhaseResult, Problem, Read
from sqldom.packing import fact_rows, pack_parse, pack_write, parse_results, reads_from_json, reads_json

text = st.text(max_size=12)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                           max_leaves=8)
reads = st.lists(st.builds(Read, st.sampled_from(["source", "fact", "glob", "code", "spec"]), text, text, text),
                 max_size=6)
problems = st.lists(st.builds(Problem, step=text, message=text, line=st.none() | st.integers(1, 99)), max_size=2)


@given(reads=reads, facts=st.dictionaries(text, json_values, max_size=4), probs=problems, failed=st.booleans())
def test_a_packed_parse_is_what_encoding_its_values_gives(reads: list[Read], facts: dict[str, Any],
                                                          probs: list[Problem], failed: bool) -> None:
    rec = pack_parse(PhaseResult(reads=reads, problems=probs, facts=facts, failed=failed))
    assert rec.results == parse_results(facts, probs, failed)   # (spelled with the facts' JSON in place)
    assert json.loads(rec.results) == {"facts": facts, "problems": [p.as_dict() for p in probs], "failed": failed}
    assert reads_from_json(rec.reads) == reads
    assert rec.reads == canonical_json([r.as_list() for r in reads])
    assert json.loads(rec.facts) == facts
    rows = json.loads(rec.fact_rows)
    assert [name for name, _, _ in rows] == list(facts)
    assert all(json.loads(js) == facts[name] and h == hash_text(js) for name, js, h in rows)
    assert (rec.problems, rec.failed) == (probs, failed)


def test_a_failed_parse_packs_empty_facts() -> None:
    rec = pack_parse(PhaseResult(reads=[Read("source", "a.md", "", "h")], problems=[], facts=None, failed=True))
    assert (rec.facts, rec.fact_rows) == ("{}", "[]")
    assert json.loads(rec.results) == {"facts": {}, "problems": [], "failed": True}


def test_a_packed_write_carries_its_output_and_the_trace_strings() -> None:
    rec = pack_write(PhaseResult(reads=[Read("source", "a.md", "", "h1"), Read("fact", "b.md", "title", "h2")],
                                 problems=[], output=b"<p>x</p>", output_hash="oh"))
    assert (rec.output, rec.output_hash, rec.size, rec.failed) == (b"<p>x</p>", "oh", 8, False)
    assert json.loads(rec.results) == {"output": "oh", "size": 8, "problems": [], "failed": False}
    assert json.loads(rec.outputs) == ["oh"]
    assert reads_from_json(rec.reads) == [Read("source", "a.md", "", "h1"), Read("fact", "b.md", "title", "h2")]
    failed = pack_write(PhaseResult(reads=[], problems=[Problem(step="a.md", message="boom")], failed=True))
    assert (failed.output, failed.size, json.loads(failed.outputs)) == (None, 0, [])
    assert json.loads(failed.results)["problems"][0]["message"] == "boom"


def test_fact_rows_keep_the_facts_order() -> None:
    assert json.loads(fact_rows({"title": "T", "links": ["b.md"]})) == [
        ["title", '"T"', hash_text('"T"')], ["links", '["b.md"]', hash_text('["b.md"]')]]
    assert reads_json([]) == "[]"
