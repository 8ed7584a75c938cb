"""Decorators that ``build.py`` uses to register transforms.

They only record what they decorate; ``usercode.load`` collects the records
while it executes ``build.py``, so importing sqldom has no global side effects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

F = Callable[..., Any]


@dataclass(frozen=True)
class UserRule:
    """One decorated function of build.py."""

    kind: str              # parser | writer | page
    pattern: str           # glob for parser/writer, output path for page
    output: str | None     # writer output template
    func: F

    @property
    def name(self) -> str:
        return getattr(self.func, "__name__", "<lambda>")


_collector: list[UserRule] | None = None


def _register(rule: UserRule) -> None:
    if _collector is not None:
        _collector.append(rule)


def _check_pattern(what: str, pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise TypeError(f"sqldom.{what}() needs a non-empty pattern string, got {pattern!r}")
    return pattern


def parser(pattern: str) -> Callable[[F], F]:
    """Register ``func(source) -> dict`` as the parser of sources matching ``pattern``."""
    _check_pattern("parser", pattern)

    def deco(func: F) -> F:
        _register(UserRule("parser", pattern, None, func))
        return func
    return deco


def writer(pattern: str, output: str = "{path}") -> Callable[[F], F]:
    """Register ``func(doc, site) -> str | bytes`` as the writer of sources matching ``pattern``.

    ``output`` is a template: ``{path}``, ``{dir}`` (with trailing slash), ``{stem}``,
    ``{name}``, ``{ext}``.
    """
    _check_pattern("writer", pattern)

    def deco(func: F) -> F:
        _register(UserRule("writer", pattern, output, func))
        return func
    return deco


def page(output: str) -> Callable[[F], F]:
    """Register ``func(site) -> str | bytes`` as the producer of one output not tied to a source."""
    _check_pattern("page", output)

    def deco(func: F) -> F:
        _register(UserRule("page", output, output, func))
        return func
    return deco
