"""``sqldom.yaml`` -> a validated ``Config``. Every mistake names the file, the line and a fix.

PyYAML, the workshop's schema and difflib are imported only when there is a
``sqldom.yaml`` to read (or a suggestion to make): a project without one, like
most, does not pay a fifth of a build's imports for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqldom.errors import ConfigError

if TYPE_CHECKING:
    import yaml

    from sqldom.workshop.spec import Workshop

CONFIG_FILE = "sqldom.yaml"

KNOWN_KEYS = {
    "build_py": "the file holding your transforms (default build.py)",
    "executor": "auto | dagger | podman | local",
    "rules": "command rules",
    "workshop": "container workshop",
    "base": "workshop base image",
    "steps": "workshop steps",
}
RULE_KEYS = {
    "match": "glob of the sources this rule runs on",
    "run": "the command, with {input} and {output}",
    "output": "output path template ({dir}{stem}.css)",
    "image": "container image (omit to run on the host with the local executor)",
    "env": "environment variables for the command",
    "executor": "auto | dagger | podman | local",
    "timeout": "seconds before the command is stopped",
}
EXECUTORS = ("auto", "dagger", "podman", "local")


@dataclass(frozen=True)
class CommandRule:
    """One entry of ``rules:``: a command run per matching source."""

    match: str
    run: str
    output: str
    image: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    executor: str = "auto"
    timeout: float | None = None
    line: int | None = None

    @property
    def name(self) -> str:
        return f"sqldom.yaml:rules[{self.match}]"

    @property
    def executor_name(self) -> str:
        """The executor to use: ``local`` when no image is given, else the rule's (or auto)."""
        if self.image is None:
            return "local"
        return self.executor


@dataclass(frozen=True)
class Config:
    build_py: str = "build.py"
    executor: str = "auto"
    rules: tuple[CommandRule, ...] = ()
    workshop: Workshop | None = None


def suggest(word: str, choices: list[str]) -> str | None:
    import difflib
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
    import yaml

    from sqldom.workshop.spec import check_sources, parse_workshop
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
    build_py = _str(data, "build_py", "build.py", lines)
    if Path(build_py).is_absolute() or ".." in Path(build_py).parts:
        raise ConfigError(f"build_py '{build_py}' must be a file inside the project", path=CONFIG_FILE,
                          line=lines.get("build_py"))
    executor = _str(data, "executor", "auto", lines)
    if executor not in EXECUTORS:
        raise ConfigError(f"executor '{executor}' is not one of {', '.join(EXECUTORS)}", path=CONFIG_FILE,
                          line=lines.get("executor"), hint=suggest(executor, list(EXECUTORS)))
    rules = _rules(data.get("rules"), _value_node(node, "rules"), executor, lines.get("rules"))
    workshop = parse_workshop(data, node, executor)
    if workshop is not None:
        check_sources(workshop, root)
    return Config(build_py=build_py, executor=executor, rules=rules, workshop=workshop)


def _value_node(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    for k, v in node.value:
        if k.value == key:
            return v
    return None


def _rules(raw: Any, node: yaml.Node | None, default_executor: str, line: int | None) -> tuple[CommandRule, ...]:
    if raw is None:
        return ()
    import yaml
    if not isinstance(raw, list) or not isinstance(node, yaml.SequenceNode):
        raise ConfigError("'rules' must be a list of command rules", path=CONFIG_FILE, line=line,
                          hint="rules:\n  - match: \"**/*.scss\"\n    run: \"sassc {input} {output}\"\n"
                               "    output: \"{dir}{stem}.css\"")
    out = []
    for i, (entry, item) in enumerate(zip(raw, node.value, strict=True)):
        at = item.start_mark.line + 1
        where = f"rules[{i}]"
        if not isinstance(entry, dict) or not isinstance(item, yaml.MappingNode):
            raise ConfigError(f"{where} must be a mapping with match, run and output", path=CONFIG_FILE, line=at)
        keys = {str(k.value): k.start_mark.line + 1 for k, _ in item.value}
        for key in entry:
            if key not in RULE_KEYS:
                raise ConfigError(f"unknown key '{key}' in {where}", path=CONFIG_FILE, line=keys.get(str(key)),
                                  hint=suggest(str(key), list(RULE_KEYS)) or
                                  f"known keys: {', '.join(sorted(RULE_KEYS))}")
        for key in ("match", "run", "output"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f"{where} needs '{key}' ({RULE_KEYS[key]}) as a non-empty string",
                                  path=CONFIG_FILE, line=keys.get(key, at))
        image = entry.get("image")
        if image is not None and (not isinstance(image, str) or not image):
            raise ConfigError(f"{where}: 'image' must be a non-empty string", path=CONFIG_FILE,
                              line=keys.get("image"))
        env = entry.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
            raise ConfigError(f"{where}: 'env' must map names to values", path=CONFIG_FILE, line=keys.get("env"))
        rule_executor = entry.get("executor", default_executor)
        if rule_executor not in EXECUTORS:
            raise ConfigError(f"{where}: executor '{rule_executor}' is not one of {', '.join(EXECUTORS)}",
                              path=CONFIG_FILE, line=keys.get("executor"),
                              hint=suggest(str(rule_executor), list(EXECUTORS)))
        if rule_executor in ("dagger", "podman") and image is None:
            raise ConfigError(f"{where}: executor '{rule_executor}' needs an 'image'", path=CONFIG_FILE,
                              line=keys.get("executor"), hint="add image: ..., or use executor: local")
        timeout = entry.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                    or timeout <= 0):
            raise ConfigError(f"{where}: 'timeout' must be a positive number of seconds", path=CONFIG_FILE,
                              line=keys.get("timeout"))
        out.append(CommandRule(match=entry["match"], run=entry["run"], output=entry["output"], image=image,
                               env=tuple(sorted((str(k), "" if v is None else str(v)) for k, v in env.items())),
                               executor=rule_executor if image is not None else "local",
                               timeout=float(timeout) if timeout is not None else None, line=at))
    return tuple(out)


def _str(data: dict[str, Any], key: str, default: str, lines: dict[str, int]) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"'{key}' must be a non-empty string", path=CONFIG_FILE, line=lines.get(key))
    return value
