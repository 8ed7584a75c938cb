"""The Dagger workshop backend (``sqldom.workshop.dagger``). No Dagger engine can run here, so:

- ``*_on_a_fake_dagger_engine`` tests run the backend's real code against a
  scripted engine (``tests/executors/fake_dagger.py``) that validates every
  GraphQL query against the engine's real schema and never runs a container:
  they prove the pipelines are well-formed and their results read correctly,
  not that an image was built. Most go through ``DaggerChain`` and the SDK's
  real ``dagger.connection()`` over HTTP (``FakeEngine``); the rest call the
  async pipeline directly on a ``FakeSession``;
- ``test_dagger_chain_*_offline`` need no engine at all (archives, checks);
- ``test_dagger_chain_builds_a_step_on_a_real_engine`` runs only where an engine
  is reachable and is skipped with the reason elsewhere.
"""

from __future__ import annotations

import gzip
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sqldom.executors.base import ExecutorError
from sqldom.executors.dagger import CLI_ENV, INSTALL, RUNNER_ENV, engine_problem
from sqldom.workshop.backend import (
    BASE_DIGEST,
    BASE_NAME,
    Built,
    ChainBackend,
    FileCopy,
    Parent,
    Published,
    StepFailure,
    StepJob,
    short_digest,
)
from sqldom.workshop.dagger import DaggerChain, archive_digest, run_step
from tests.executors.conftest import DAGGER_IMAGE, skip_or_fail
from tests.executors.fake_dagger import FakeConnection, FakeEngine, Script, oci_archive, path_of

REPO = "registry.example:5000/workshops/intro"
PARENT_DIGEST = "sha256:" + "ab" * 32
ARCHIVE_DIGEST = "sha256:" + "cd" * 32
REGISTRY_DIGEST = "sha256:" + "ef" * 32
SECRET = "s3cr3t-Value-42"
PIPELINE = ("container", "from", "import", "withAnnotation", "withFile", "withDirectory", "withNewFile",
            "withEnvVariable", "withSecretVariable", "withExec", "withoutSecretVariable")


# ---- helpers ---------------------------------------------------------------------------------------

@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[DaggerChain, Script]]:
    """A ``DaggerChain`` attached, through the SDK's real connection code, to a fake engine over HTTP."""
    script = Script()
    for name in (CLI_ENV, RUNNER_ENV):
        monkeypatch.delenv(name, raising=False)
    with FakeEngine(script) as (port, token):
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(port))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", token)
        chain = DaggerChain(scratch_root=tmp_path / "scratch")
        try:
            yield chain, script
        finally:
            chain.close()
    assert not list((tmp_path / "scratch").glob("*")), "build_step left its scratch folder behind"


def run_offline(script: Script, job: StepJob, scratch: Path,
                on_output: Any = None) -> Built | StepFailure:
    """``run_step`` (the backend's own pipeline) on a ``FakeSession``: no engine, no HTTP."""
    import dagger
    client = dagger.Client.from_connection(FakeConnection(script))  # type: ignore[arg-type]
    scratch.mkdir(exist_ok=True)

    async def main() -> Built | StepFailure:
        return await run_step(client, job, scratch, on_output)

    return anyio.run(main)


def last_query_with(script: Script, leaf: str) -> list[tuple[str, dict[str, Any]]]:
    """The field chain of the last query that ends in ``leaf``."""
    for query in reversed(script.sent):
        fields = path_of(query)
        if fields[-1][0] == leaf:
            return fields
    raise AssertionError(f"no query ended in {leaf}: {script.sent}")


def pipeline(fields: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [f for f in fields if f[0] in PIPELINE]


def host_query_ids(script: Script) -> dict[tuple[str, str], int]:
    """Which host files/folders were resolved to ids: (kind, path) -> how many times."""
    seen: dict[tuple[str, str], int] = {}
    for query in script.sent:
        fields = path_of(query)
        if fields[0][0] == "host" and fields[-1][0] == "id":
            key = (fields[1][0], fields[1][1]["path"])
            seen[key] = seen.get(key, 0) + 1
    return seen


def full_job(tmp_path: Path, **kw: Any) -> StepJob:
    """A step with one of everything: host file, host folder, inline file, env, a secret, two commands."""
    src = tmp_path / "content"
    (src / "sql").mkdir(parents=True, exist_ok=True)
    (src / "app.py").write_text("print('hi')\n")
    (src / "sql" / "a.sql").write_text("select 1;\n")
    fields: dict[str, Any] = dict(
        step="step-2-build",
        parent=Parent(ref=f"{REPO}:step-1-setup", digest=PARENT_DIGEST, pushed=True, stable_name="intro/step-1"),
        files=(FileCopy("/workshop/app.py", source=src / "app.py"),
               FileCopy("/workshop/sql", source=src / "sql"),
               FileCopy("/workshop/NOTES", content="inline text: é\n".encode())),
        env=(("APP_ENV", "dev"), ("GREETING", "hello world")),
        secrets={"API_TOKEN": SECRET},
        commands=("python -m py_compile /workshop/app.py", "mkdir -p /workshop/dist && make dist"),
        outputs=("/workshop/dist", "/etc/app/version.txt"))
    fields.update(kw)
    return StepJob(**fields)


def outputs_script(script: Script) -> Script:
    script.dirs["/workshop/dist"] = {"a.txt": b"A\n", "sub/b.bin": b"\x00\x01"}
    script.files["/etc/app/version.txt"] = b"1.0\n"
    return script


# ---- build_step ------------------------------------------------------------------------------------

def test_step_pipeline_shape_from_a_pushed_parent_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script], tmp_path: Path) -> None:
    chain, script = engine
    outputs_script(script)
    job = full_job(tmp_path)
    assert isinstance(chain, ChainBackend)
    assert chain.check() is None
    built = chain.build_step(job)
    assert isinstance(built, Built), built
    assert built.image.startswith("fake-")                         # the container's id in this session
    assert built.outputs == {"workshop/dist/a.txt": b"A\n", "workshop/dist/sub/b.bin": b"\x00\x01",
                             "etc/app/version.txt": b"1.0\n"}
    steps = pipeline(last_query_with(script, "sync"))              # the whole image, as the engine evaluates it
    file_id, dir_id = steps[4][1]["source"], steps[5][1]["source"]
    secret_id = steps[9][1]["secret"]
    assert steps == [
        ("container", {}),
        ("from", {"address": f"{REPO}:step-1-setup@{PARENT_DIGEST}"}),
        ("withAnnotation", {"name": BASE_NAME, "value": "intro/step-1"}),
        ("withAnnotation", {"name": BASE_DIGEST, "value": PARENT_DIGEST}),
        ("withFile", {"path": "/workshop/app.py", "source": file_id, "permissions": 0o644}),   # mode normalised
        ("withDirectory", {"path": "/workshop/sql", "source": dir_id}),
        ("withNewFile", {"path": "/workshop/NOTES", "contents": "inline text: é\n"}),
        ("withEnvVariable", {"name": "APP_ENV", "value": "dev"}),
        ("withEnvVariable", {"name": "GREETING", "value": "hello world"}),
        ("withSecretVariable", {"name": "API_TOKEN", "secret": secret_id}),
        ("withExec", {"args": ["sh", "-c", "python -m py_compile /workshop/app.py"], "expect": "ANY"}),
        ("withExec", {"args": ["sh", "-c", "mkdir -p /workshop/dist && make dist"], "expect": "ANY"}),
        ("withoutSecretVariable", {"name": "API_TOKEN"}),
    ]
    assert all(str(i).startswith("fake-") for i in (file_id, dir_id, secret_id))
    hosts = host_query_ids(script)
    assert ("file", str(tmp_path / "content" / "app.py")) in hosts
    assert ("directory", str(tmp_path / "content" / "sql")) in hosts
    # each command's exit code is read right after it, in order
    exit_checks = [pipeline(path_of(q))[-1][1]["args"][-1] for q in script.sent if path_of(q)[-1][0] == "exitCode"]
    assert exit_checks == list(job.commands)
    # outputs: a folder and a file, each checked and exported from the image after the commands
    exists = [a for n, a in script.calls if n == "exists"]
    assert {"path": "/workshop/dist", "expectedType": "DIRECTORY_TYPE"} in exists
    assert {"path": "/etc/app/version.txt", "expectedType": "REGULAR_TYPE"} in exists
    export = last_query_with(script, "export")
    assert export[-2] == ("file", {"path": "/etc/app/version.txt"})
    assert pipeline(export)[-1] == ("withoutSecretVariable", {"name": "API_TOKEN"})


def test_step_secrets_reach_only_the_execs_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script], tmp_path: Path) -> None:
    chain, script = engine
    outputs_script(script)
    built = chain.build_step(full_job(tmp_path))
    assert isinstance(built, Built), built
    set_secret = [q for q in script.sent if path_of(q)[0][0] == "setSecret"]
    assert set_secret and all(path_of(q)[0][1]["plaintext"] == SECRET for q in set_secret)
    assert {path_of(q)[0][1]["name"] for q in set_secret} == {"sqldom/step-2-build/API_TOKEN"}
    leaks = [q for q in script.sent if SECRET in q and path_of(q)[0][0] != "setSecret"]
    assert leaks == [], "the secret's value travelled outside the setSecret call"
    assert all(SECRET not in str(a) and a.get("name") != "API_TOKEN"
               for n, a in script.calls if n in ("withEnvVariable", "withNewFile", "withAnnotation"))
    steps = [n for n, _ in pipeline(last_query_with(script, "sync"))]
    assert steps.index("withSecretVariable") < steps.index("withExec")
    assert steps[-1] == "withoutSecretVariable"          # the image keeps no reference to it


def test_step_parent_from_an_archive_or_by_name_on_a_fake_dagger_engine(tmp_path: Path) -> None:
    archive = tmp_path / "var" / "step-1.tar"
    cases = [
        (Parent(ref=f"{REPO}:step-1", digest=ARCHIVE_DIGEST, archive=archive), "import"),
        (Parent(ref=f"{REPO}:step-1", digest=PARENT_DIGEST, pushed=False), f"{REPO}:step-1"),
        (Parent(ref=f"{REPO}:step-1", pushed=True), f"{REPO}:step-1"),          # pushed, digest not known
        (Parent(ref="python:3.12-slim"), "python:3.12-slim"),
    ]
    for i, (parent, expected) in enumerate(cases):
        script = Script()
        built = run_offline(script, StepJob(step="s", parent=parent), tmp_path / f"scratch{i}")
        assert isinstance(built, Built), built
        steps = pipeline(last_query_with(script, "sync"))
        if expected == "import":
            assert steps[1] == ("import", {"source": steps[1][1]["source"]})
            assert ("file", str(archive)) in host_query_ids(script)
        else:
            assert steps[1] == ("from", {"address": expected})
        assert steps[2:] == [("withAnnotation", {"name": BASE_NAME, "value": parent.stable_name or parent.ref}),
                             ("withAnnotation", {"name": BASE_DIGEST, "value": parent.digest})]


def test_step_failing_command_stops_the_step_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script], tmp_path: Path) -> None:
    chain, script = engine
    job = full_job(tmp_path, commands=("echo one", "make test", "echo never"))
    script.commands["make test"] = (2, "running tests\n", f"FAILED: token {SECRET}\n")
    failure = chain.build_step(job)
    assert isinstance(failure, StepFailure), failure
    assert (failure.command, failure.exit_code, failure.stdout, failure.stderr, failure.missing_output) == \
        ("make test", 2, "running tests\n", f"FAILED: token {SECRET}\n", None)   # the chain redacts, not us
    ran = {a["args"][-1] for n, a in script.calls if n == "withExec"}
    assert ran == {"echo one", "make test"}                              # the third was never sent
    names = {n for n, _ in script.calls}
    assert not names & {"exists", "export", "sync", "publish"}


def test_step_command_killed_by_a_signal_is_a_step_failure_on_a_fake_dagger_engine(tmp_path: Path) -> None:
    script = Script(commands={"sleep 100": (137, "partial\n", "Killed\n")})
    job = StepJob(step="s", parent=Parent(ref="alpine"), commands=("sleep 100", "echo never"))
    failure = run_offline(script, job, tmp_path / "scratch")
    assert failure == StepFailure("sleep 100", 137, "partial\n", "Killed\n", failure.duration_ms)


def test_step_output_lines_are_passed_on_on_a_fake_dagger_engine(tmp_path: Path) -> None:
    script = Script(commands={"a": (0, "one\ntwo\n", ""), "b": (0, "", "warn\n")})
    lines: list[str] = []
    built = run_offline(script, StepJob(step="s", parent=Parent(ref="alpine"), commands=("a", "b")),
                        tmp_path / "scratch", lines.append)
    assert isinstance(built, Built)
    assert lines == ["one", "two", "warn"]


def test_step_missing_output_is_a_step_failure_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script], tmp_path: Path) -> None:
    chain, script = engine
    script.dirs["/workshop/dist"] = {"a.txt": b"A\n"}
    failure = chain.build_step(full_job(tmp_path))
    assert isinstance(failure, StepFailure), failure
    assert failure.missing_output == "/etc/app/version.txt"
    assert (failure.command, failure.exit_code, failure.stdout, failure.stderr) == ("", 0, "", "")
    assert {"path": "/etc/app/version.txt", "expectedType": "REGULAR_TYPE"} in \
        [a for n, a in script.calls if n == "exists"]


def test_step_engine_refusal_is_the_tools_failure_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script], tmp_path: Path) -> None:
    chain, script = engine
    script.query_error = "failed to resolve source metadata for registry.example:5000/x: not found"
    with pytest.raises(ExecutorError, match="the Dagger engine refused: failed to resolve") as info:
        chain.build_step(StepJob(step="s", parent=Parent(ref=f"{REPO}:step-1")))
    assert info.value.hint is not None and f"{REPO}:step-1" in info.value.hint
    assert "engine.json" not in info.value.hint
    with pytest.raises(ExecutorError) as insecure:         # a plain-HTTP registry: say how to configure the engine
        chain.build_step(StepJob(step="s", parent=Parent(ref=f"{REPO}:step-1", insecure=True)))
    assert insecure.value.hint is not None and "engine.json" in insecure.value.hint


def test_step_inline_content_must_be_text_offline(tmp_path: Path) -> None:
    job = StepJob(step="s", parent=Parent(ref="alpine"), files=(FileCopy("/bin/x", content=b"\xff\xfe"),))
    with pytest.raises(ExecutorError, match="not UTF-8"):
        run_offline(Script(), job, tmp_path / "scratch")


# ---- publish and present ---------------------------------------------------------------------------

def test_publish_to_an_oci_archive_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script], tmp_path: Path) -> None:
    chain, script = engine
    script.archive = oci_archive(ARCHIVE_DIGEST, ref_name="intro:step-2")
    var = tmp_path / "var" / "workshop"
    published = chain.publish("fake-node-id-7", REPO, "step-2", push=False, insecure=False, archive_dir=var)
    short = short_digest(ARCHIVE_DIGEST)
    assert published == Published(image_id=ARCHIVE_DIGEST, digest=ARCHIVE_DIGEST,
                                  tags=(f"{REPO}:step-2", f"{REPO}:step-2-{short}"), pushed=False,
                                  archive=var / "step-2.tar")
    export = last_query_with(script, "export")
    assert export[0] == ("node", {"id": "fake-node-id-7"})            # the built container, by its id
    assert export[-1] == ("export", {"path": export[-1][1]["path"], "forcedCompression": "Gzip"})
    assert (var / "step-2.tar").read_bytes() == script.archive
    assert [p.name for p in var.iterdir()] == ["step-2.tar"]         # written aside, then renamed
    assert "publish" not in {n for n, _ in script.calls}
    assert chain.present(published.image_id, published.digest, published.archive)


def test_publish_and_push_both_tags_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script], tmp_path: Path) -> None:
    chain, script = engine
    script.archive = oci_archive(ARCHIVE_DIGEST)
    script.registry_digest = REGISTRY_DIGEST
    var = tmp_path / "var"
    published = chain.publish("fake-node-id-7", REPO, "step-2", push=True, insecure=False, archive_dir=var)
    short = short_digest(REGISTRY_DIGEST)
    assert published == Published(image_id=ARCHIVE_DIGEST, digest=REGISTRY_DIGEST,
                                  tags=(f"{REPO}:step-2", f"{REPO}:step-2-{short}"), pushed=True,
                                  archive=var / "step-2.tar")
    pushes = [path_of(q) for q in script.sent if path_of(q)[-1][0] == "publish"]
    assert [p[0] for p in pushes] == [("node", {"id": "fake-node-id-7"})] * 2
    assert [p[-1][1] for p in pushes] == [{"address": f"{REPO}:step-2", "forcedCompression": "Gzip"},
                                          {"address": f"{REPO}:step-2-{short}", "forcedCompression": "Gzip"}]


def test_publish_a_recorded_archive_again_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script], tmp_path: Path) -> None:
    """Restoring an image recorded earlier: the archive is the image; it is imported to push it."""
    chain, script = engine
    var = tmp_path / "var"
    var.mkdir()
    (var / "step-1.tar").write_bytes(oci_archive(ARCHIVE_DIGEST))
    script.registry_digest = REGISTRY_DIGEST
    published = chain.publish(ARCHIVE_DIGEST, REPO, "step-1", push=True, insecure=False, archive_dir=var)
    assert (published.image_id, published.digest, published.pushed) == (ARCHIVE_DIGEST, REGISTRY_DIGEST, True)
    push = last_query_with(script, "publish")
    assert pipeline(push)[:2] == [("container", {}), ("import", {"source": pipeline(push)[1][1]["source"]})]
    assert ("file", str(var / "step-1.tar")) in host_query_ids(script)
    assert "export" not in {n for n, _ in script.calls}              # nothing re-exported
    local = chain.publish(ARCHIVE_DIGEST, REPO, "step-1", push=False, insecure=False, archive_dir=var)
    assert (local.image_id, local.digest, local.archive) == (ARCHIVE_DIGEST, ARCHIVE_DIGEST, var / "step-1.tar")
    with pytest.raises(ExecutorError, match="is not in .* any more"):
        chain.publish("sha256:" + "00" * 32, REPO, "step-1", push=False, insecure=False, archive_dir=var)


def test_publish_to_an_insecure_registry_says_how_to_configure_the_engine_offline(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="insecure registry") as info:
        DaggerChain().publish("fake-id", "127.0.0.1:5000/ws", "s1", push=True, insecure=True,
                              archive_dir=tmp_path)
    assert info.value.hint is not None and "engine.json" in info.value.hint and '"http": true' in info.value.hint


def test_present_reads_the_archive_digest_offline(tmp_path: Path) -> None:
    chain = DaggerChain()
    archive = tmp_path / "step-1.tar"
    assert not chain.present(ARCHIVE_DIGEST, ARCHIVE_DIGEST, archive)          # no file
    assert not chain.present(ARCHIVE_DIGEST, ARCHIVE_DIGEST, None)
    archive.write_bytes(oci_archive(ARCHIVE_DIGEST))
    assert archive_digest(archive) == ARCHIVE_DIGEST
    assert chain.present(ARCHIVE_DIGEST, REGISTRY_DIGEST, archive)
    assert chain.present(ARCHIVE_DIGEST, REGISTRY_DIGEST, archive, tag=f"{REPO}:step-1")
    assert not chain.present(REGISTRY_DIGEST, REGISTRY_DIGEST, archive)        # another image now
    archive.write_bytes(b"not a tar")
    assert not chain.present(ARCHIVE_DIGEST, ARCHIVE_DIGEST, archive)



def test_exported_outputs_skip_symlinks_like_podman_offline(tmp_path: Path) -> None:
    from sqldom.workshop.dagger import read_tree
    (tmp_path / "workshop" / "dist" / "sub").mkdir(parents=True)
    (tmp_path / "workshop" / "dist" / "a.txt").write_bytes(b"A")
    (tmp_path / "workshop" / "dist" / "sub" / "b.txt").write_bytes(b"B")
    (tmp_path / "workshop" / "dist" / "passwd").symlink_to("/etc/passwd")
    (tmp_path / "workshop" / "dist" / "alias").symlink_to("a.txt")
    assert read_tree(tmp_path) == {"workshop/dist/a.txt": b"A", "workshop/dist/sub/b.txt": b"B"}


# ---- base image, check ------------------------------------------------------------------------------

def test_base_identity_is_the_digest_the_engine_resolved_on_a_fake_dagger_engine(
        engine: tuple[DaggerChain, Script]) -> None:
    chain, script = engine
    script.image_ref = f"docker.io/library/python:3.12-slim@{PARENT_DIGEST}"
    assert chain.base_identity("python:3.12-slim") == PARENT_DIGEST
    assert pipeline(last_query_with(script, "imageRef")) == [("container", {}),
                                                             ("from", {"address": "python:3.12-slim"})]


def test_dagger_chain_check_without_an_engine_says_what_to_install_offline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN", CLI_ENV, RUNNER_ENV):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    started = time.monotonic()
    assert DaggerChain().check() == INSTALL
    assert time.monotonic() - started < 1.0
    with pytest.raises(ExecutorError, match="no Dagger engine is reachable") as info:
        DaggerChain().build_step(StepJob(step="s", parent=Parent(ref="alpine")))
    assert info.value.hint == INSTALL


# ---- a real engine, where there is one --------------------------------------------------------------

def _archive_bytes(path: Path) -> bytes:
    """Every blob of an OCI archive (index, manifests, config, layers gunzipped): to look for a leaked secret."""
    out = []
    with tarfile.open(path) as tf:
        for member in tf.getmembers():
            f = tf.extractfile(member)
            data = f.read() if f is not None else b""
            out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return b"\n".join(out)


def test_dagger_chain_builds_a_step_on_a_real_engine(tmp_path: Path) -> None:
    problem = engine_problem()
    if problem is not None:
        skip_or_fail("dagger", f"no Dagger engine reachable ({problem})")
    chain = DaggerChain(scratch_root=tmp_path / "scratch")
    var = tmp_path / "var"
    try:
        job = StepJob(step="s1", parent=Parent(ref=DAGGER_IMAGE),
                      files=(FileCopy("/w/NOTES", content=b"notes\n"),), env=(("GREETING", "hi"),),
                      secrets={"TOKEN": SECRET},
                      commands=('mkdir -p /w/dist && echo "$GREETING" > /w/dist/a.txt && test "$TOKEN" = '
                                f'"{SECRET}"',), outputs=("/w/dist",))
        built = chain.build_step(job)
        assert isinstance(built, Built), built
        assert built.outputs == {"w/dist/a.txt": b"hi\n"}
        first = chain.publish(built.image, "sqldom-test/ws", "s1", push=False, insecure=False, archive_dir=var)
        assert chain.present(first.image_id, first.digest, first.archive)
        assert first.archive is not None and SECRET.encode() not in _archive_bytes(first.archive)
        child = StepJob(step="s2", parent=Parent(ref="sqldom-test/ws:s1", digest=first.digest, archive=first.archive),
                        commands=("test -f /w/NOTES && test -z \"$TOKEN\"",))
        assert isinstance(chain.build_step(child), Built)
    finally:
        chain.close()
