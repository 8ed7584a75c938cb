"""A stand-in for the Dagger engine, for tests that cannot have a real one.

It checks every query it receives against the engine's real GraphQL schema
(``schema.graphqls`` of dagger v0.21.8, kept outside this repository in
``../shared/dagger/``, or ``$SQLDOM_DAGGER_SCHEMA``) and answers from a script:
it never runs a container. Two ways in, both verified in dagger-notes §4:

- ``FakeSession``: plugged into ``dagger.Client.from_connection`` (no I/O);
- ``FakeEngine``: an HTTP server speaking the engine's protocol, so the SDK's
  real ``dagger.connection()`` attaches to it via ``DAGGER_SESSION_PORT``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import graphql
import pytest

SCHEMA_PATH = Path(os.environ.get("SQLDOM_DAGGER_SCHEMA",
                                  Path(__file__).resolve().parents[3] / "shared" / "dagger" / "schema.graphqls"))
_schema: graphql.GraphQLSchema | None = None


def schema() -> graphql.GraphQLSchema:
    global _schema
    if _schema is None:
        if not SCHEMA_PATH.is_file():
            pytest.fail(f"the Dagger schema is needed to validate queries offline: no file {SCHEMA_PATH} "
                        "(dagger/dagger docs/docs-graphql/schema.graphqls at v0.21.x; or set SQLDOM_DAGGER_SCHEMA)")
        _schema = graphql.build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    return _schema


def validate(document: graphql.DocumentNode) -> None:
    errors = graphql.validate(schema(), document)
    assert not errors, f"query does not validate against the Dagger schema: {errors}\n{graphql.print_ast(document)}"


@dataclass
class Script:
    """What the fake engine answers."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    files: dict[str, bytes] = field(default_factory=dict)     # container path -> bytes (what exists)
    exec_error: dict[str, Any] | None = None                  # extensions of an EXEC_ERROR on sync
    query_error: str | None = None                            # a plain (non-exec) error on sync
    sync_delay: float = 0.0
    sent: list[str] = field(default_factory=list)             # every query, printed
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)   # every field selected, with args


class _Answer(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


def _args(node: graphql.FieldNode) -> dict[str, Any]:
    return {a.name.value: graphql.value_from_ast_untyped(a.value) for a in node.arguments or ()}


def answer(script: Script, document: graphql.DocumentNode) -> dict[str, Any]:
    """Data for a query: the nested selection path, with a scripted value at each leaf."""
    validate(document)
    script.sent.append(graphql.print_ast(document))
    counter = [0]

    def leaf(node: graphql.FieldNode, path: list[graphql.FieldNode]) -> Any:
        name = node.name.value
        args = _args(node)
        if name == "id":
            counter[0] += 1
            return f"fake-{path[-2].name.value if len(path) > 1 else 'obj'}-id-{counter[0]}"
        if name == "sync":
            if script.exec_error is not None:
                raise _Answer([{"message": "process did not complete successfully",
                                "extensions": {"_type": "EXEC_ERROR", **script.exec_error}}])
            if script.query_error is not None:
                raise _Answer([{"message": script.query_error}])
            return "fake-container-id"
        if name == "exitCode":
            return script.exit_code
        if name in ("stdout", "stderr"):
            return getattr(script, name)
        if name == "version":
            return "v0.21.11"
        if name == "exists":
            return args["path"] in script.files
        if name == "export":
            source = next(p for p in reversed(path[:-1]) if p.name.value == "file")
            Path(args["path"]).write_bytes(script.files[_args(source)["path"]])
            return args["path"]
        raise AssertionError(f"the fake engine has no answer for {name}")

    def walk(selection_set: graphql.SelectionSetNode, path: list[graphql.FieldNode]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sel in selection_set.selections:
            if isinstance(sel, graphql.InlineFragmentNode):
                out.update(walk(sel.selection_set, path))
                continue
            assert isinstance(sel, graphql.FieldNode)
            script.calls.append((sel.name.value, _args(sel)))
            key = sel.alias.value if sel.alias else sel.name.value
            if sel.selection_set is not None:
                out[key] = walk(sel.selection_set, [*path, sel])
            else:
                out[key] = leaf(sel, [*path, sel])
        return out

    op = document.definitions[0]
    assert isinstance(op, graphql.OperationDefinitionNode)
    return walk(op.selection_set, [])


class FakeSession:
    """Duck-types the SDK's client session (``get_schema``, ``execute``)."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def get_schema(self) -> graphql.GraphQLSchema:
        return schema()

    async def execute(self, request: Any) -> dict[str, Any]:
        from gql.transport.exceptions import TransportQueryError
        if self.script.sync_delay and "sync" in graphql.print_ast(request.document):
            import anyio
            await anyio.sleep(self.script.sync_delay)
        try:
            return answer(self.script, request.document)
        except _Answer as e:
            raise TransportQueryError(str(e), errors=e.errors) from None


class FakeConnection:
    def __init__(self, script: Script) -> None:
        self.session = FakeSession(script)


class FakeEngine:
    """``with FakeEngine(script) as (port, token):`` an HTTP engine on 127.0.0.1."""

    def __init__(self, script: Script, token: str = "fake-token") -> None:
        self.script = script
        self.token = token
        self.auth_ok = True

    def __enter__(self) -> tuple[int, str]:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                expected = "Basic " + base64.b64encode(f"{engine.token}:".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    engine.auth_ok = False
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                query = body["query"]
                if "__schema" in query:
                    result = graphql.graphql_sync(schema(), query)
                    payload: dict[str, Any] = {"data": result.data}
                else:
                    try:
                        payload = {"data": answer(engine.script, graphql.parse(query))}
                    except _Answer as e:
                        payload = {"data": None, "errors": e.errors}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.server.server_address[1], self.token

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
