"""The workshop part of ``sqldom.yaml`` -> a validated ``Workshop``, before anything executes.

Every mistake is a ``ConfigError`` naming sqldom.yaml, the line, and a fix
(exit 2). Pure apart from ``check_sources``, which looks at the disk: every
``files[].source`` and ``doc`` must exist inside content/, and every secret's
source must be readable before the chain starts, so it never stops half-way for a typo.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from sqldom.errors import ConfigError

CONFIG_FILE = "sqldom.yaml"
WORKSHOP_KEYS = {
    "image": "repository of the step images (tag prefix), e.g. registry.example:5000/workshops/intro",
    "name": "the workshop's name in the database (default: the last part of image)",
    "push": "true: push every step image to image's registry",
    "insecure": "true: the registry speaks plain HTTP or has a self-signed certificate",
}
BASE_KEYS = {"image": "the image step 1 builds FROM"}
STEP_KEYS = {
    "id": "URL-safe unique id; also the image tag",
    "doc": "Markdown page under content/ whose title and text describe the step",
    "files": "files copied into the image: {source: path under content/, target: /abs} or {content: text, target}",
    "env": "environment variables set in the image",
    "secrets": "NAME: env:VAR or file:PATH, given to the commands only",
    "commands": "shell commands run in order",
    "outputs": "absolute paths in the image exported to build/<step-id>/",
}
FILE_KEYS = {"source": "a file or folder under content/", "content": "inline text", "target": "absolute path"}
# URL-safe (RFC 3986 unreserved, minus '~' which tags refuse) and a valid tag once "-<12 hex>" is added
STEP_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,114}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# an image repository: [host[:port]/]path, lower-case path components, no tag or digest
REPOSITORY = re.compile(r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


@dataclass(frozen=True)
class FileSpec:
    target: str
    source: str | None = None        # relative to content/
    content: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Secret:
    name: str
    kind: str                        # env | file
    ref: str                         # the variable name, or the file path as written
    line: int | None = None


@dataclass(frozen=True)
class StepSpec:
    id: str
    doc: str | None = None
    files: tuple[FileSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[Secret, ...] = ()
    commands: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    line: int | None = None

    def recipe(self) -> dict[str, Any]:
        """What the image depends on besides file bytes and the parent: the step's key, as data.

        Secret *names* only; the doc is metadata and stays out.
        """
        return {"files": [[f.target, f.source, f.content] for f in self.files], "env": [list(e) for e in self.env],
                "secrets": sorted(s.name for s in self.secrets), "commands": list(self.commands),
                "outputs": list(self.outputs)}


@dataclass(frozen=True)
class Workshop:
    image: str
    name: str
    base_image: str
    steps: tuple[StepSpec, ...]
    push: bool = False
    insecure: bool = False

    def index(self, step_id: str) -> int:
        for i, s in enumerate(self.steps):
            if s.id == step_id:
                return i
        raise KeyError(step_id)


def suggest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _fail(message: str, line: int | None, hint: str | None = None) -> ConfigError:
    return ConfigError(message, path=CONFIG_FILE, line=line, hint=hint)


def _lines(node: yaml.MappingNode) -> dict[str, int]:
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return v
    return None


def _mapping(raw: Any, node: yaml.Node | None, where: str, known: Mapping[str, str],
             line: int | None) -> dict[str, int]:
    """Check ``raw`` is a mapping with only ``known`` keys; return key -> line."""
    if not isinstance(raw, dict) or not isinstance(node, yaml.MappingNode):
        raise _fail(f"{where} must be a mapping", line,
                    hint="keys: " + ", ".join(known))
    lines = _lines(node)
    for key in raw:
        if key not in known:
            raise _fail(f"unknown key '{key}' in {where}", lines.get(str(key), line),
                        hint=suggest(str(key), list(known)) or f"known keys: {', '.join(known)}")
    return lines


def _string(raw: dict[str, Any], key: str, where: str, lines: dict[str, int], line: int | None,
            required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        what = "is missing" if key not in raw else "must be a non-empty string"
        raise _fail(f"{where}.{key} {what}", lines.get(key, line), hint=STEP_KEYS.get(key) or WORKSHOP_KEYS.get(key))
    return value


def _bool(raw: dict[str, Any], key: str, where: str, lines: dict[str, int]) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise _fail(f"{where}.{key} must be true or false, not {value!r}", lines.get(key))
    return value


def parse_workshop(data: dict[str, Any], node: yaml.MappingNode, executor: str) -> Workshop | None:
    """The workshop of a loaded sqldom.yaml, or None when it declares none."""
    top = _lines(node)
    present = [k for k in ("workshop", "base", "steps") if k in data]
    if not present:
        return None
    for key in ("workshop", "base", "steps"):
        if key not in data:
            raise _fail(f"'{present[0]}' needs '{key}' too: a workshop is workshop:, base: and steps:",
                        top.get(present[0]), hint=f"add `{key}:` (see the workshops guide)")
    if executor == "local":
        raise _fail("workshop steps build images and need a container executor, not 'local'", top.get("executor"),
                    hint="use executor: auto, podman or dagger")
    ws_raw, ws_node = data["workshop"], _child(node, "workshop")
    ws_lines = _mapping(ws_raw, ws_node, "workshop", WORKSHOP_KEYS, top["workshop"])
    image = _string(ws_raw, "image", "workshop", ws_lines, top["workshop"])
    assert image is not None
    if not REPOSITORY.fullmatch(image):
        hint = "drop the tag: sqldom tags each step itself (<image>:<step-id>)" if re.search(r":[^/]*$|@", image) \
            else "lower-case letters, digits and . _ - / (host[:port]/path)"
        raise _fail(f"workshop.image '{image}' is not an image repository", ws_lines["image"], hint=hint)
    name = _string(ws_raw, "name", "workshop", ws_lines, top["workshop"], required=False) or image.rsplit("/", 1)[-1]
    base_raw = data["base"]
    base_lines = _mapping(base_raw, _child(node, "base"), "base", BASE_KEYS, top["base"])
    base_image = _string(base_raw, "image", "base", base_lines, top["base"])
    assert base_image is not None
    steps = _steps(data["steps"], _child(node, "steps"), top["steps"])
    return Workshop(image=image, name=name, base_image=base_image, steps=steps,
                    push=_bool(ws_raw, "push", "workshop", ws_lines),
                    insecure=_bool(ws_raw, "insecure", "workshop", ws_lines))


def _steps(raw: Any, node: yaml.Node | None, line: int) -> tuple[StepSpec, ...]:
    if not isinstance(raw, list) or not isinstance(node, yaml.SequenceNode):
        raise _fail("'steps' must be a list of steps", line, hint="steps:\n  - id: step-1\n    commands: [...]")
    if not raw:
        raise _fail("a workshop needs at least one step", line, hint="add a step with an id")
    out: list[StepSpec] = []
    seen: dict[str, int] = {}
    for i, (entry, item) in enumerate(zip(raw, node.value, strict=True)):
        at = item.start_mark.line + 1
        lines = _mapping(entry, item, f"steps[{i}]", STEP_KEYS, at)
        sid = _string(entry, "id", f"steps[{i}]", lines, at)
        assert sid is not None
        if not STEP_ID.fullmatch(sid):
            fixed = re.sub(r"[^A-Za-z0-9_.-]+", "-", sid).strip("-.") or "step-1"
            raise _fail(f"step id '{sid}' is not URL-safe", lines["id"],
                        hint=f"use letters, digits, '-', '_' and '.', at most 115 characters, e.g. '{fixed[:115]}'")
        if sid in seen:
            raise _fail(f"step id '{sid}' is used twice (first on line {seen[sid]})", lines["id"],
                        hint="every step needs its own id: it names its image tag")
        seen[sid] = lines["id"]
        where = f"step '{sid}'"
        doc = _string(entry, "doc", where, lines, at, required=False)
        if doc is not None:
            doc = _content_path(doc, f"{where}: doc", lines["doc"])
        out.append(StepSpec(
            id=sid, doc=doc, files=_files(entry.get("files"), _child(item, "files"), where, lines.get("files", at)),
            env=_env(entry.get("env"), where, lines.get("env", at)),
            secrets=_secrets(entry.get("secrets"), _child(item, "secrets"), where, lines.get("secrets", at)),
            commands=_string_list(entry.get("commands"), _child(item, "commands"), f"{where}: commands",
                                  lines.get("commands", at)),
            outputs=tuple(_absolute(p, f"{where}: output", ln) for p, ln in _string_items(
                entry.get("outputs"), _child(item, "outputs"), f"{where}: outputs", lines.get("outputs", at))),
            line=at))
        names = {e for e, _ in out[-1].env} & {s.name for s in out[-1].secrets}
        if names:
            raise _fail(f"{where}: {', '.join(sorted(names))} is both in env and in secrets", lines.get("secrets"),
                        hint="a secret must not also be an env variable (env values are stored in the image)")
    return tuple(out)


def _content_path(path: str, what: str, line: int | None) -> str:
    """A path relative to content/ that stays inside it, normalised."""
    p = PurePosixPath(path)
    parts = [x for x in p.parts if x not in ("", ".")]
    if p.is_absolute() or ".." in parts or "\\" in path or not parts:
        raise _fail(f"{what} '{path}' must be a path inside content/", line,
                    hint="write it relative to content/, without '..' or a leading '/'")
    return "/".join(parts)


def _absolute(path: str, what: str, line: int | None) -> str:
    p = PurePosixPath(path)
    if not p.is_absolute() or ".." in p.parts or str(p) == "/":
        raise _fail(f"{what} '{path}' must be an absolute path in the image (not / itself), without '..'", line,
                    hint="e.g. /workshop/app.py")
    return str(p)


def _string_items(raw: Any, node: yaml.Node | None, where: str, line: int) -> list[tuple[str, int]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not isinstance(node, yaml.SequenceNode):
        raise _fail(f"{where} must be a list of strings", line)
    out = []
    for value, item in zip(raw, node.value, strict=True):
        if not isinstance(value, str) or not value.strip():
            raise _fail(f"{where}: every entry must be a non-empty string, not {value!r}", item.start_mark.line + 1)
        out.append((value, item.start_mark.line + 1))
    return out


def _string_list(raw: Any, node: yaml.Node | None, where: str, line: int) -> tuple[str, ...]:
    return tuple(v for v, _ in _string_items(raw, node, where, line))


def _env(raw: Any, where: str, line: int) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise _fail(f"{where}: env must map names to values", line, hint="env: {APP_ENV: dev}")
    out = []
    for k, v in raw.items():
        if not isinstance(k, str) or not ENV_NAME.fullmatch(k):
            raise _fail(f"{where}: env name {k!r} is not a valid variable name", line,
                        hint="letters, digits and '_', not starting with a digit")
        if isinstance(v, dict | list):
            raise _fail(f"{where}: env {k} must be a plain value, not a {type(v).__name__}", line)
        out.append((k, "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))))
    return tuple(out)


def _secrets(raw: Any, node: yaml.Node | None, where: str, line: int) -> tuple[Secret, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not isinstance(node, yaml.MappingNode):
        raise _fail(f"{where}: secrets must map names to env:VAR or file:PATH", line,
                    hint="secrets: {API_TOKEN: env:API_TOKEN}")
    lines = _lines(node)
    out = []
    for k, v in raw.items():
        at = lines.get(str(k), line)
        if not isinstance(k, str) or not ENV_NAME.fullmatch(k):
            raise _fail(f"{where}: secret name {k!r} is not a valid variable name", at)
        kind, _, ref = v.partition(":") if isinstance(v, str) else ("", "", "")
        if kind not in ("env", "file") or not ref:
            raise _fail(f"{where}: secret {k} must be 'env:VAR' or 'file:PATH', not {v!r}", at,
                        hint=f"e.g. {k}: env:{k}")
        out.append(Secret(k, kind, ref, at))
    return tuple(out)


def _files(raw: Any, node: yaml.Node | None, where: str, line: int) -> tuple[FileSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not isinstance(node, yaml.SequenceNode):
        raise _fail(f"{where}: files must be a list", line,
                    hint="files:\n  - {source: code/app.py, target: /workshop/app.py}")
    out = []
    for i, (entry, item) in enumerate(zip(raw, node.value, strict=True)):
        at = item.start_mark.line + 1
        what = f"{where}: files[{i}]"
        lines = _mapping(entry, item, what, FILE_KEYS, at)
        target = entry.get("target")
        if not isinstance(target, str) or not target:
            raise _fail(f"{what} needs a target (an absolute path in the image)", lines.get("target", at),
                        hint="target: /workshop/app.py")
        target = _absolute(target, f"{what}: target", lines.get("target", at))
        has_source, has_content = "source" in entry, "content" in entry
        if has_source == has_content:
            raise _fail(f"{what} needs exactly one of source (a file under content/) or content (inline text)",
                        at, hint="{source: code/app.py, target: /workshop/app.py}")
        if has_source:
            src = entry["source"]
            if not isinstance(src, str) or not src:
                raise _fail(f"{what}: source must be a path under content/", lines["source"])
            out.append(FileSpec(target, source=_content_path(src, f"{what}: source", lines["source"]), line=at))
        else:
            content = entry["content"]
            if content is None or isinstance(content, dict | list):
                raise _fail(f"{what}: content must be text", lines["content"])
            out.append(FileSpec(target, content=str(content), line=at))
    return tuple(out)


def check_sources(ws: Workshop, root: Path) -> None:
    """Every ``files[].source`` and ``doc`` exists inside content/.

    Secrets are checked by ``check_secrets`` only when a step that uses them is
    due, so a build with nothing to rebuild needs no token in its environment.
    """
    content = (root / "content").resolve()
    for step in ws.steps:
        paths = [(f.source, f.line, f"files source '{f.source}'") for f in step.files if f.source is not None]
        if step.doc is not None:
            paths.append((step.doc, step.line, f"doc '{step.doc}'"))
        for rel, line, what in paths:
            assert rel is not None
            target = content / rel
            try:
                real = target.resolve()
            except OSError:
                real = target
            if not real.is_relative_to(content):
                raise _fail(f"step '{step.id}': {what} leads outside content/ (through a symlink)", line,
                            hint="copy the file into content/")
            if not target.exists():
                near = _near(content, rel)
                raise _fail(f"step '{step.id}': {what} does not exist (content/{rel})", line,
                            hint=f"did you mean '{near}'?" if near else "create it, or fix the path (relative to "
                                                                        "content/)")
            if step.doc is not None and rel == step.doc and not target.is_file():
                raise _fail(f"step '{step.id}': doc '{rel}' must be a file", line)


def _near(content: Path, rel: str) -> str | None:
    parent = (content / rel).parent
    try:
        names = [p.name for p in parent.iterdir()]
    except OSError:
        return None
    close = difflib.get_close_matches(PurePosixPath(rel).name, names, n=1, cutoff=0.6)
    if not close:
        return None
    head = str(PurePosixPath(rel).parent)
    return close[0] if head == "." else f"{head}/{close[0]}"


def secret_file(secret: Secret, root: Path) -> Path:
    path = Path(os.path.expanduser(secret.ref))
    return path if path.is_absolute() else root / path


def check_secrets(steps: tuple[StepSpec, ...] | list[StepSpec], root: Path) -> None:
    """Every secret of ``steps`` can be read now (before the first of them runs)."""
    for step in steps:
        for secret in step.secrets:
            _check_secret(secret, step.id, root)


def _check_secret(secret: Secret, step: str, root: Path) -> None:
    if secret.kind == "env":
        if secret.ref not in os.environ:
            raise _fail(f"step '{step}': secret {secret.name} reads ${secret.ref}, which is not set", secret.line,
                        hint=f"export {secret.ref}=... before building")
        return
    path = secret_file(secret, root)
    content = (root / "content").resolve()
    if path.resolve().is_relative_to(content):
        raise _fail(f"step '{step}': secret file {secret.ref} is inside content/, where it would be published",
                    secret.line, hint="move it outside content/ (e.g. next to sqldom.yaml, and out of git)")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise _fail(f"step '{step}': secret {secret.name} reads {secret.ref}, which is not a readable file",
                    secret.line, hint="create it, or fix the path (relative to the project folder)")


def secret_values(step: StepSpec, root: Path) -> dict[str, str]:
    """The secrets' values, read when the step runs (never stored)."""
    out = {}
    for s in step.secrets:
        if s.kind == "env":
            out[s.name] = os.environ.get(s.ref, "")
        else:
            out[s.name] = secret_file(s, root).read_text(encoding="utf-8").rstrip("\n")
    return out
