"""sqldom.errors: a headline naming the file and line, then the message."""

from __future__ import annotations

import pytest

from sqldom.errors import ConfigError, DatabaseError, LockError, SqldomError, UsageError


def test_headline_with_path_and_line() -> None:
    e = ConfigError("unknown key 'comands'", path="sqldom.yaml", line=7, hint="did you mean 'commands'?")
    assert e.headline() == "sqldom.yaml:7: unknown key 'comands'"
    assert e.hint == "did you mean 'commands'?"
    assert str(e) == "unknown key 'comands'"


def test_headline_with_path_only() -> None:
    assert ConfigError("cannot read", path="build.py").headline() == "build.py: cannot read"


def test_headline_without_path() -> None:
    assert UsageError("no such step: x").headline() == "no such step: x"
    assert UsageError("no such step: x", line=3).headline() == "no such step: x"


@pytest.mark.parametrize("cls", [UsageError, ConfigError, DatabaseError, LockError])
def test_tree_and_exit_codes(cls: type[SqldomError]) -> None:
    e = cls("m", path="p", line=1)
    assert isinstance(e, SqldomError) and isinstance(e, Exception)
    assert e.exit_code == 2
    assert (e.message, e.path, e.line, e.hint) == ("m", "p", 1, None)
