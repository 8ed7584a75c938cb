"""Which function parses and writes each source, and where its output goes.

Pure: given the user's rules and the built-ins, ``RuleSet.assign(path)`` answers
(parser, writer, output path). User rules are tried before built-ins, in the
order build.py declares them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqldom.api import UserRule
from sqldom.config import CommandRule
from sqldom.hashing import hash_json
from sqldom.patterns import compile_glob


@dataclass(frozen=True)
class Rule:
    """A parser, writer or page, built-in or from build.py."""

    kind: str                      # parser | writer | page
    name: str                      # build.py:write_html | builtin:markdown
    pattern: str                   # glob, or the output path of a page
    output: str | None             # output template (writers, pages)
    func: Callable[..., Any] | None = None   # user function; None for built-ins
    builtin: str | None = None     # module name under sqldom.transforms
    code_hash: str = ""
    command: CommandRule | None = None   # command rules of sqldom.yaml

    @cached_property
    def spec_hash(self) -> str:
        """The rule as a step reads it; for a command rule, its command, env, image and executor too.

        Cached: every parse and write reads it (twice per document in a cold build), and the rule is frozen.
        """
        extra = None
        if self.command is not None:
            c = self.command
            extra = [c.run, list(map(list, c.env)), c.image, c.executor_name, c.timeout]
        return hash_json([self.kind, self.name, self.pattern, self.output, extra])

    def matches(self, path: str) -> bool:
        return compile_glob(self.pattern).match(path) is not None


def _builtin(kind: str, module: str, pattern: str, output: str | None, code_hash: str) -> Rule:
    return Rule(kind=kind, name=f"builtin:{module}.{'parse' if kind == 'parser' else 'write'}",
                pattern=pattern, output=output, builtin=module, code_hash=code_hash)


def builtin_rules(code_hash: str) -> list[Rule]:
    table = [("markdown", "**/*.md", "{dir}{stem}.html"),
             ("html", "**/*.html", "{path}"),
             ("text", "**/*.txt", "{path}"),
             ("copy", "**", "{path}")]
    rules = []
    for module, pattern, output in table:
        rules.append(_builtin("parser", module, pattern, None, code_hash))
        rules.append(_builtin("writer", module, pattern, output, code_hash))
    return rules


class OutputError(ValueError):
    """An output template that would write outside build/."""


def render_output(template: str, path: str) -> str:
    """Fill an output template for a source path, refusing paths that leave build/."""
    d, name = posixpath.split(path)
    stem, ext = posixpath.splitext(name)
    try:
        out = template.format(path=path, dir=f"{d}/" if d else "", name=name, stem=stem, ext=ext)
    except (KeyError, IndexError, ValueError) as e:
        raise OutputError(f"output template {template!r} is invalid: {e}") from e
    return check_output_path(out, template)


def check_output_path(out: str, template: str) -> str:
    norm = posixpath.normpath(out) if out else ""
    if not out or out.startswith("/") or norm == ".." or norm.startswith("../") or norm in (".", "") \
            or "\\" in out:
        raise OutputError(f"output {out!r} (from {template!r}) is outside build/")
    return norm


@dataclass(frozen=True)
class Assignment:
    parser: Rule | None            # None for command steps: they have no parse phase
    writer: Rule
    output: str | None             # None when the template failed
    output_error: str | None = None


class RuleSet:
    def __init__(self, user: Iterable[UserRule], fingerprints: dict[str, str], builtin_code_hash: str,
                 user_file: str = "build.py", commands: Iterable[CommandRule] = ()) -> None:
        self.parsers: list[Rule] = []
        self.writers: list[Rule] = []
        self.pages: list[Rule] = []
        # command rules of sqldom.yaml come first: they are the most explicit
        self.commands = [Rule(kind="command", name=f"sqldom.yaml:rules[{i}]", pattern=c.match, output=c.output,
                              command=c) for i, c in enumerate(commands)]
        for r in user:
            rule = Rule(kind=r.kind, name=f"{user_file}:{r.name}", pattern=r.pattern, output=r.output,
                        func=r.func, code_hash=fingerprints.get(r.name, hash_json(r.name)))
            {"parser": self.parsers, "writer": self.writers, "page": self.pages}[r.kind].append(rule)
        for rule in builtin_rules(builtin_code_hash):
            (self.parsers if rule.kind == "parser" else self.writers).append(rule)
        self.by_name = {r.name: r for r in self.commands + self.parsers + self.writers + self.pages}

    def code_hashes(self) -> dict[str, str]:
        return {name: r.code_hash for name, r in self.by_name.items()}

    def assign(self, path: str) -> Assignment:
        command = next((r for r in self.commands if r.matches(path)), None)
        if command is not None:
            assert command.output is not None
            try:
                return Assignment(None, command, render_output(command.output, path))
            except OutputError as e:
                return Assignment(None, command, None, str(e))
        parser = next(r for r in self.parsers if r.matches(path))
        writer = next(r for r in self.writers if r.matches(path))
        assert writer.output is not None
        try:
            return Assignment(parser, writer, render_output(writer.output, path))
        except OutputError as e:
            return Assignment(parser, writer, None, str(e))

    def page_outputs(self) -> list[tuple[Rule, str | None, str | None]]:
        out: list[tuple[Rule, str | None, str | None]] = []
        for rule in self.pages:
            try:
                out.append((rule, check_output_path(rule.pattern, rule.pattern), None))
            except OutputError as e:
                out.append((rule, None, str(e)))
        return out
