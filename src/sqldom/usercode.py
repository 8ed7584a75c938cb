"""Load ``build.py`` and fingerprint each function with the helpers and constants it uses.

The fingerprint is static: the AST of the function plus, transitively, every
top-level definition (function, class, assignment, import) whose name it
mentions. Comments and blank lines do not count; editing a helper changes the
fingerprint of exactly the functions that use it. Dynamic lookups
(``globals()[name]``) are invisible to it; the docs say so.
"""

from __future__ import annotations

import ast
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from sqldom import api
from sqldom.errors import ConfigError
from sqldom.hashing import hash_text


@dataclass
class UserCode:
    path: str                                   # as shown to the user, e.g. "build.py"
    rules: list[api.UserRule] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)  # function name -> hash


def _top_level_definitions(tree: ast.Module) -> dict[str, list[ast.AST]]:
    defs: dict[str, list[ast.AST]] = {}

    def add(name: str, node: ast.AST) -> None:
        defs.setdefault(name, []).append(node)

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            add(node.name, node)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        add(n.id, node)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                add((alias.asname or alias.name).split(".")[0], node)
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            # definitions under a top-level if/try count as a whole
            for n in ast.walk(node):
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    add(n.name, node)
                elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    add(n.id, node)
    return defs


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def fingerprint_functions(tree: ast.Module) -> dict[str, str]:
    """Fingerprint every top-level function: its own AST plus the closure of what it uses."""
    defs = _top_level_definitions(tree)
    dumps: dict[int, str] = {}

    def dump(node: ast.AST) -> str:
        key = id(node)
        if key not in dumps:
            dumps[key] = ast.dump(node, include_attributes=False)
        return dumps[key]

    out: dict[str, str] = {}
    for name, nodes in defs.items():
        if not any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in nodes):
            continue
        seen_names: set[str] = set()
        seen_nodes: dict[int, ast.AST] = {}
        todo = [name]
        while todo:
            cur = todo.pop()
            if cur in seen_names or cur not in defs:
                continue
            seen_names.add(cur)
            for node in defs[cur]:
                if id(node) not in seen_nodes:
                    seen_nodes[id(node)] = node
                    todo.extend(_names_used(node) - seen_names)
        parts = sorted(dump(n) for n in seen_nodes.values())
        out[name] = hash_text("\n".join(parts))
    return out


def load(path: Path, shown: str) -> UserCode:
    """Execute build.py and collect its rules; a syntax error or import failure is a ConfigError."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path=shown) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad_line = raw[: e.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", path=shown, line=bad_line) from e
    try:
        tree = ast.parse(text, filename=shown)
        code = compile(tree, str(path), "exec")
    except SyntaxError as e:
        raise ConfigError(f"syntax error: {e.msg}", path=shown, line=e.lineno,
                          hint="fix build.py; nothing was built") from e

    module = types.ModuleType("sqldom_build")
    module.__file__ = str(path)
    collected: list[api.UserRule] = []
    previous_collector, previous_module = api._collector, sys.modules.get("sqldom_build")
    api._collector = collected
    sys.modules["sqldom_build"] = module
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as e:
        line = _user_line(e, str(path))
        raise ConfigError(f"loading failed: {type(e).__name__}: {e}", path=shown, line=line,
                          hint="fix build.py; nothing was built") from e
    finally:
        api._collector = previous_collector
        if previous_module is None:
            sys.modules.pop("sqldom_build", None)
        else:
            sys.modules["sqldom_build"] = previous_module
    return UserCode(path=shown, rules=collected, fingerprints=fingerprint_functions(tree))


def _user_line(exc: BaseException, filename: str) -> int | None:
    line: int | None = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line


def format_user_traceback(exc: BaseException, filename: str, shown: str | None = None) -> tuple[str, int | None]:
    """The frames of a traceback that are in the user's file, and the last of their lines."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    line = frames[-1].lineno if frames else None
    text = "".join(traceback.format_list(frames)).rstrip()
    if shown is not None:   # paths in messages are the project's, relative (SPEC §2)
        text = text.replace(f'File "{filename}"', f'File "{shown}"')
    return text, line
