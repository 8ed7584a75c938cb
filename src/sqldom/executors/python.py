"""Run one phase (parse or write) of a document or page step in this process.

An exception raised by the user's code fails that step only: it becomes an
error problem carrying the traceback, and the rest of the build goes on.
"""

from __future__ import annotations

from typing import Any

from sqldom.hashing import canonical_json, hash_bytes
from sqldom.model import PARSE, WRITE, PhaseResult, Problem
from sqldom.rules import Rule
from sqldom.site import Doc, ReadLog, Site, Source, World
from sqldom.transforms import module
from sqldom.usercode import format_user_traceback


def _base_reads(log: ReadLog, rule: Rule) -> None:
    log.add("code", rule.name, "", rule.code_hash)
    log.add("spec", "rule", "", rule.spec_hash)


def _failure(step: str, phase: str, rule: Rule, exc: BaseException, user_file: str | None) -> Problem:
    if rule.func is not None and user_file:
        tb, line = format_user_traceback(exc, rule.func.__code__.co_filename, user_file)
        if line is None:   # raised by sqldom's checks of the result: point at the function
            line = rule.func.__code__.co_firstlineno
        text = f"{rule.name.split(':', 1)[-1]} raised {type(exc).__name__}: {exc}"
        return Problem(step=step, phase=phase, path=user_file, line=line, severity="error",
                       message=f"{text}\n{tb}" if tb else text)
    return Problem(step=step, phase=phase, path=step, severity="error",
                   message=f"{rule.name} raised {type(exc).__name__}: {exc}")


def run_parse(step: str, rule: Rule, world: World, user_file: str | None) -> PhaseResult:
    log = ReadLog()
    _base_reads(log, rule)
    source = Source(step, world, log)
    problems: list[Problem] = []
    try:
        if rule.func is not None:
            facts = rule.func(source)
            if facts is None:
                facts = {}
            if not isinstance(facts, dict):
                raise TypeError(f"a parser must return a dict of facts, not {type(facts).__name__}")
            _check_json(facts)
            facts = {str(k): v for k, v in facts.items()}
        else:
            facts = module(rule.builtin or "copy").parse(source, problems)
        facts = _json_roundtrip(facts)
    except (Exception, SystemExit) as e:  # the user's failure, kept apart from sqldom's
        return PhaseResult(reads=log.reads(), problems=[_failure(step, PARSE, rule, e, user_file)], facts={},
                           failed=True)
    return PhaseResult(reads=log.reads(), facts=facts, problems=problems)


def _check_json(facts: dict[str, Any]) -> None:
    """Facts are stored as JSON: refuse what would not come back equal (objects, sets, NaN)."""
    import json
    try:
        json.dumps(facts, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:   # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise TypeError(f"a parser must return JSON-serialisable facts: {e}") from None


def _json_roundtrip(facts: dict[str, Any]) -> dict[str, Any]:
    import json
    return dict(json.loads(canonical_json(facts)))


def run_write(step: str, rule: Rule, world: World, output: str, is_page: bool,
              user_file: str | None) -> PhaseResult:
    log = ReadLog()
    _base_reads(log, rule)
    site = Site(world, log)
    problems: list[Problem] = []
    try:
        if rule.func is not None:
            result = rule.func(site) if is_page else rule.func(Doc(step, world, log, output), site)
            if isinstance(result, str):
                data = result.encode("utf-8")
            elif isinstance(result, bytes | bytearray | memoryview):
                data = bytes(result)
            else:
                raise TypeError(f"a {'page' if is_page else 'writer'} must return str or bytes, "
                                f"not {type(result).__name__}")
        else:
            data = module(rule.builtin or "copy").write(Doc(step, world, log, output), site, problems)
    except (Exception, SystemExit) as e:
        return PhaseResult(reads=log.reads(), problems=[_failure(step, WRITE, rule, e, user_file)], failed=True)
    return PhaseResult(reads=log.reads(), output=data, output_hash=hash_bytes(data), problems=problems)
