"""A phase's result as the database will record it, packed into strings where it is made.

A cold build holds every step's result until its one record transaction.
Held as objects (a list of read tuples, a dict of facts, a dict per trace
row) that is thousands of objects per step, unpickled from the workers and
encoded again in the parent. Packed by the worker that ran the step, it is
a handful of strings: the parent neither decodes nor encodes them, and the
same function packs the serial path's results, so the database cannot
depend on ``-j``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqldom.hashing import canonical_json, hash_text
from sqldom.model import PhaseResult, Problem, Read


class ParseRecord(NamedTuple):
    reads: str       # canonical JSON list of [kind, target, key, hash]: the deps rows and the trace's reads
    results: str     # the trace's results: facts, problems, failed
    facts: str       # canonical JSON object of the facts: what other steps' writes read
    fact_rows: str   # JSON list of [name, value JSON, value hash]: the facts rows
    problems: list[Problem]
    failed: bool


class WriteRecord(NamedTuple):
    reads: str
    results: str     # the trace's results: output hash, size, problems, failed
    outputs: str     # the trace's outputs: the blob hashes it keeps alive
    output: bytes | None
    output_hash: str | None
    size: int
    problems: list[Problem]
    failed: bool


def reads_json(reads: Sequence[Read]) -> str:
    return canonical_json(reads)   # (a Read is a tuple: it encodes as [kind, target, key, hash])


def reads_from_json(text: str) -> list[Read]:
    return [Read(*r) for r in json.loads(text)]


def fact_rows(facts: dict[str, Any]) -> str:
    """The facts table's rows of one document (name, value as canonical JSON, its hash), in the facts' order."""
    rows = []
    for name, value in facts.items():
        js = canonical_json(value)
        rows.append([name, js, hash_text(js)])
    return canonical_json(rows)


def parse_results(facts: dict[str, Any], problems: list[Problem], failed: bool) -> str:
    return canonical_json({"facts": facts, "problems": [p.as_dict() for p in problems], "failed": failed})


def pack_parse(res: PhaseResult) -> ParseRecord:
    facts = res.facts or {}
    facts_json = canonical_json(facts)
    # the results object spelled with the facts' JSON in place, keys in canonical (sorted) order:
    # equal to parse_results(...), without encoding the facts twice (tests/unit/test_packing.py)
    results = (f'{{"facts":{facts_json},"failed":{"true" if res.failed else "false"},'
               f'"problems":{canonical_json([p.as_dict() for p in res.problems])}}}')
    return ParseRecord(reads_json(res.reads), results, facts_json, fact_rows(facts), res.problems, res.failed)


def write_results(output_hash: str | None, size: int, problems: list[Problem], failed: bool) -> str:
    return canonical_json({"output": output_hash, "size": size, "problems": [p.as_dict() for p in problems],
                           "failed": failed})


def outputs_json(output_hash: str | None) -> str:
    return canonical_json([output_hash] if output_hash else [])


def pack_write(res: PhaseResult) -> WriteRecord:
    size = len(res.output) if res.output is not None else 0
    return WriteRecord(reads_json(res.reads), write_results(res.output_hash, size, res.problems, res.failed),
                       outputs_json(res.output_hash), res.output, res.output_hash, size, res.problems, res.failed)
