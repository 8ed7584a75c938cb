"""sqldom.config: sqldom.yaml -> Config; every mistake names the file, the line and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqldom.config import CONFIG_FILE, Config, load_config, suggest
from sqldom.errors import ConfigError


def _load(tmp_path: Path, text: str | bytes) -> Config:
    p = tmp_path / CONFIG_FILE
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return load_config(tmp_path)


def _error(tmp_path: Path, text: str | bytes) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, text)
    assert ei.value.path == "sqldom.yaml"
    assert ei.value.exit_code == 2
    return ei.value


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path) == Config(build_py="build.py", executor="auto")


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file_gives_defaults(tmp_path: Path, text: str) -> None:
    assert _load(tmp_path, text) == Config()


def test_valid_config(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "# my project\nbuild_py: tools/site_build.py\nexecutor: local\n")
    assert cfg == Config(build_py="tools/site_build.py", executor="local")


@pytest.mark.parametrize("executor", ["auto", "dagger", "podman", "local"])
def test_every_executor(tmp_path: Path, executor: str) -> None:
    assert _load(tmp_path, f"executor: {executor}\n").executor == executor


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    e = _error(tmp_path, "executor: auto\nbuild_py: x.py\n  nested: oops\n")
    assert e.line == 3
    assert "YAML" in e.message
    assert e.headline().startswith("sqldom.yaml:3: ")


def test_invalid_yaml_unclosed_quote(tmp_path: Path) -> None:
    e = _error(tmp_path, 'executor: auto\nbuild_py: "unterminated\n')
    assert e.line in (2, 3)


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    e = _error(tmp_path, "build_py: build.py\nexecuter: auto\n")
    assert e.line == 2
    assert "executer" in e.message and "unknown key" in e.message
    assert e.hint is not None and "did you mean" in e.hint and "'executor'" in e.hint


def test_unknown_key_suggestion_for_build_py(tmp_path: Path) -> None:
    e = _error(tmp_path, "\n\nbuild-py: x.py\n")
    assert e.line == 3
    assert e.hint is not None and "did you mean 'build_py'?" in e.hint


def test_unknown_key_without_a_close_match_lists_known_keys(tmp_path: Path) -> None:
    e = _error(tmp_path, "zzzzzz: 1\n")
    assert e.hint is not None and "build_py" in e.hint and "executor" in e.hint


def test_wrong_executor_value(tmp_path: Path) -> None:
    e = _error(tmp_path, "build_py: b.py\nexecutor: podmn\n")
    assert e.line == 2
    assert "podmn" in e.message
    assert e.hint is not None and "'podman'" in e.hint


@pytest.mark.parametrize("text", ["executor: 3\n", "executor: ''\n", "executor: [local]\n", "build_py: null\n",
                                  "build_py: 12\n"])
def test_wrong_types(tmp_path: Path, text: str) -> None:
    e = _error(tmp_path, text)
    assert e.line == 1


@pytest.mark.parametrize("value", ["../build.py", "/etc/build.py", "tools/../../x.py"])
def test_build_py_escaping_the_project(tmp_path: Path, value: str) -> None:
    e = _error(tmp_path, f"executor: auto\nbuild_py: {value}\n")
    assert e.line == 2
    assert "inside the project" in e.message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    e = _error(tmp_path, "- a\n- b\n")
    assert e.line == 1


def test_not_utf8(tmp_path: Path) -> None:
    e = _error(tmp_path, b"executor: auto\n# caf\xe9\n")
    assert "UTF-8" in e.message


def test_suggest() -> None:
    assert suggest("exector", ["executor", "build_py"]) == "did you mean 'executor'?"
    assert suggest("qqq", ["executor", "build_py"]) is None
