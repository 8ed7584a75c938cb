"""A stand-in for the Dagger engine, for tests that cannot have a real one.

It checks every query it receives against the engine's real GraphQL schema
(``schema.graphqls`` of dagger v0.21.8, kept outside this repository in
``../shared/dagger/``, or ``$SQLDOM_DAGGER_SCHEMA``) and answers from a script:
it never runs a container. Two ways in, both verified in dagger-notes §4:

- ``FakeSession``: plugged into ``dagger.Client.from_connection`` (no I/O);
- ``FakeEngine``: an HTTP server speaking the engine's protocol, so the SDK's
  real ``dagger.connection()`` attaches to it via ``DAGGER_SESSION_PORT``; it
  serves any number of sessions, one after another or at once (e.g. several
  ``sqldom build`` subprocesses), all answering from the one script.

By default every ``id`` is a fresh counter value and ``Container.export`` writes
``Script.archive``. With ``Script(content_ids=True)`` the fake behaves like the
engine's content-addressed cache instead: an object's id is a hash of the
fields that made it (ids it was given stand for the chains behind them, a host
file or folder also for its bytes, a secret for its name, not its value), so
the same pipeline on the same inputs gets the same id; exporting a whole
container writes an OCI archive whose digest is derived from its id, and
``Script.images`` maps that digest back to the fields that built the image.
"""

from __future__ import annotations

import base64
import hashlib
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
    dirs: dict[str, dict[str, bytes]] = field(default_factory=dict)   # container folder -> {relative path: bytes}
    commands: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # `sh -c` command -> code, out, err
    archive: bytes | None = None                              # what Container.export writes (an OCI tar)
    registry_digest: str = ""                                 # what Container.publish returns after the "@"
    image_ref: str = ""                                       # what Container.imageRef returns
    exec_error: dict[str, Any] | None = None                  # extensions of an EXEC_ERROR on sync
    query_error: str | None = None                            # a plain (non-exec) error on sync
    sync_delay: float = 0.0
    content_ids: bool = False                                 # ids and archive digests from content (see above)
    sent: list[str] = field(default_factory=list)             # every query, printed
    made: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)   # content id -> its fields
    images: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # archive digest -> fields
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
        if name == "id" and script.content_ids:
            return _content_id(script, path[:-1])
        if name == "id":
            counter[0] += 1
            return f"fake-{path[-2].name.value if len(path) > 1 else 'obj'}-id-{counter[0]}"
        if name == "sync":
            if script.exec_error is not None:
                raise _Answer([{"message": "process did not complete successfully",
                                "extensions": {"_type": "EXEC_ERROR", **script.exec_error}}])
            if script.query_error is not None:
                raise _Answer([{"message": script.query_error}])
            return _content_id(script, path[:-1]) if script.content_ids else "fake-container-id"
        if name in ("exitCode", "stdout", "stderr"):
            code, stdout, stderr = _exec_result(script, path)
            return {"exitCode": code, "stdout": stdout, "stderr": stderr}[name]
        if name == "version":
            return "v0.21.11"
        if name == "exists":
            is_file, is_dir = args["path"] in script.files, args["path"] in script.dirs
            return {"REGULAR_TYPE": is_file, "DIRECTORY_TYPE": is_dir}.get(args.get("expectedType", ""),
                                                                          is_file or is_dir)
        if name == "export":
            return _export(script, path, args["path"])
        if name == "publish":
            assert script.registry_digest, "the script has no registry digest to answer publish with"
            return f"{args['address']}@{script.registry_digest}"
        if name == "imageRef":
            assert script.image_ref, "the script has no imageRef"
            return script.image_ref
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


def _exec_result(script: Script, path: list[graphql.FieldNode]) -> tuple[int, str, str]:
    """The last exec's result: from ``script.commands`` by its ``sh -c`` command, else the script's default.

    A code from 128 to 191 is a signal: like the engine with ``expect: ANY``, the
    fake answers with an EXEC_ERROR rather than an exit code.
    """
    execs = [p for p in path if p.name.value == "withExec"]
    command = _args(execs[-1])["args"][-1] if execs else None
    if command not in script.commands:
        return script.exit_code, script.stdout, script.stderr
    code, stdout, stderr = script.commands[command]
    if 128 <= code <= 191:
        raise _Answer([{"message": f"process \"sh -c {command}\" did not complete successfully: exit code: {code}",
                        "extensions": {"_type": "EXEC_ERROR", "cmd": ["sh", "-c", command], "exitCode": code,
                                       "stdout": stdout, "stderr": stderr}}])
    return code, stdout, stderr


def _export(script: Script, path: list[graphql.FieldNode], dest: str) -> str:
    """``export`` of a container's file, folder (written to ``dest``) or whole image (an OCI tar)."""
    kind = path[-2].name.value if len(path) > 1 else ""
    if kind == "file":
        Path(dest).write_bytes(script.files[_args(path[-2])["path"]])
    elif kind == "directory":
        for rel, data in script.dirs[_args(path[-2])["path"]].items():
            target = Path(dest, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    elif script.archive is None and script.content_ids:
        ident = _content_id(script, path[:-1])
        digest = "sha256:" + hashlib.sha256(ident.encode()).hexdigest()
        script.images[digest] = script.made.get(ident, [])
        Path(dest).write_bytes(oci_archive(digest))
    else:
        assert script.archive is not None, "the script has no OCI archive for Container.export"
        Path(dest).write_bytes(script.archive)
    return dest


def _content_id(script: Script, fields: list[graphql.FieldNode]) -> str:
    """The id of the object ``fields`` select, from what made it (``content_ids``); recorded in ``script.made``.

    ``node(id: X)`` stands for the fields that made X, so loading an object and
    asking its id gives X back. A secret's plaintext is left out: the id names it.
    """
    chain: list[tuple[str, dict[str, Any]]] = []
    for i, node in enumerate(fields):
        name, args = node.name.value, _args(node)
        if i == 0 and name == "node":
            if len(fields) == 1:
                return str(args["id"])
            chain = list(script.made.get(args["id"], [("node", args)]))
            continue
        args.pop("plaintext", None)
        if i > 0 and fields[i - 1].name.value == "host" and name in ("file", "directory"):
            args["content"] = _host_hash(Path(args["path"]))
        chain.append((name, args))
    ident = "fake-id-" + hashlib.sha256(json.dumps(chain, sort_keys=True).encode()).hexdigest()
    script.made.setdefault(ident, chain)
    return ident


def _host_hash(path: Path) -> str:
    """What a host file or folder holds, as the engine would cache it: its bytes (a folder: every file's)."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        files = sorted((p.relative_to(path).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                       for p in path.rglob("*") if p.is_file())
        return hashlib.sha256(json.dumps(files).encode()).hexdigest()
    return "absent"


def oci_archive(digest: str, ref_name: str = "") -> bytes:
    """A minimal OCI image-layout tar (``oci-layout`` and ``index.json``), as ``Container.export`` writes."""
    import io
    import tarfile
    manifest: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "digest": digest, "size": 1234}
    if ref_name:
        manifest["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    members = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
               "index.json": json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


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


def path_of(query: str) -> list[tuple[str, dict[str, Any]]]:
    """The chain of fields a query selects, root first (one field per level, fragments skipped)."""
    op = graphql.parse(query).definitions[0]
    assert isinstance(op, graphql.OperationDefinitionNode)
    selection_set: graphql.SelectionSetNode | None = op.selection_set
    fields: list[tuple[str, dict[str, Any]]] = []
    while selection_set is not None:
        node = selection_set.selections[0]
        if isinstance(node, graphql.InlineFragmentNode):
            selection_set = node.selection_set
            continue
        assert isinstance(node, graphql.FieldNode)
        fields.append((node.name.value, {a.name.value: graphql.value_from_ast_untyped(a.value)
                                         for a in node.arguments or ()}))
        selection_set = node.selection_set
    return fields
