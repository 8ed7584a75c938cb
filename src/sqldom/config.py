"""``sqldom.yaml`` -> a validated ``Config``. Every mistake names the file, the line and a fix."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sqldom.errors import ConfigError

CONFIG_FILE = "sqldom.yaml"

KNOWN_KEYS = {
    "build_py": "the file holding your transforms (default build.py)",
    "executor": "auto | dagger | podman | local",
    "rules": "command rules",
    "workshop": "container workshop",
    "base": "workshop base image",
    "steps": "workshop steps",
}
NOT_YET = {"rules", "workshop", "base", "steps"}
EXECUTORS = ("auto", "dagger", "podman", "local")


@dataclass(frozen=True)
class Config:
    build_py: str = "build.py"
    executor: str = "auto"


def suggest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def load_config(root: Path) -> Config:
    path = root / CONFIG_FILE
    if not path.exists():
        return Config()
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("not valid UTF-8", path=CONFIG_FILE) from e
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path=CONFIG_FILE) from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(e, 'problem', None) or e}", path=CONFIG_FILE,
                          line=mark.line + 1 if mark else None) from e
    if data is None:
        return Config()
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError("the top level must be a mapping of keys to values", path=CONFIG_FILE, line=1)
    lines: dict[str, int] = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    for key in data:
        if key not in KNOWN_KEYS:
            raise ConfigError(f"unknown key '{key}'", path=CONFIG_FILE, line=lines.get(str(key)),
                              hint=suggest(str(key), list(KNOWN_KEYS)) or
                              f"known keys: {', '.join(sorted(KNOWN_KEYS))}")
    for key in NOT_YET & set(data):
        raise ConfigError(f"'{key}' ({KNOWN_KEYS[key]}) is not supported by this version of sqldom yet",
                          path=CONFIG_FILE, line=lines.get(key),
                          hint="remove it; document steps build without it")
    build_py = _str(data, "build_py", "build.py", lines)
    if Path(build_py).is_absolute() or ".." in Path(build_py).parts:
        raise ConfigError(f"build_py '{build_py}' must be a file inside the project", path=CONFIG_FILE,
                          line=lines.get("build_py"))
    executor = _str(data, "executor", "auto", lines)
    if executor not in EXECUTORS:
        raise ConfigError(f"executor '{executor}' is not one of {', '.join(EXECUTORS)}", path=CONFIG_FILE,
                          line=lines.get("executor"), hint=suggest(executor, list(EXECUTORS)))
    return Config(build_py=build_py, executor=executor)


def _str(data: dict[str, Any], key: str, default: str, lines: dict[str, int]) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"'{key}' must be a non-empty string", path=CONFIG_FILE, line=lines.get(key))
    return value
