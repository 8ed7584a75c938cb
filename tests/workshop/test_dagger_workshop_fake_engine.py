"""The example workshop (examples/workshop) with ``executor: dagger``, end to end through the CLI, on a FAKE engine.

No Dagger engine runs here. Each ``sqldom build --json`` is a real subprocess
with a real SQLite file and real files; it attaches, through the SDK's real
``dagger.connection()``, to ``FakeEngine`` (tests/executors/fake_dagger.py)
served over HTTP by this process (``DAGGER_SESSION_PORT``/``DAGGER_SESSION_TOKEN``).
The fake validates every query against the engine's real GraphQL schema and
answers from a script; it runs no container. With ``content_ids`` its ids and
the OCI archives it writes are derived from the pipeline and the host files it
was given, as the engine's cache would be: the same step on the same inputs
gives the same digest, a changed input another one.

So these tests prove what sqldom sends, in which order, what it records and
shows; not that a real engine builds these images (see test_dagger_chain.py's
real-engine test, and test_podman_workshop.py for real images).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sqldom.executors.dagger import CLI_ENV, RUNNER_ENV
from tests.executors.fake_dagger import FakeEngine, Script, path_of
from tests.support.project import Project, Result

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workshop"
IMAGE = "localhost/sqldom-example/shell-workshop"
BASE = "localhost/sqldom-example/busybox:1"
BASE_DIGEST = "sha256:" + hashlib.sha256(b"fake busybox").hexdigest()
TOKEN = "tok-7d41e0c9b2a64f15"
STEPS = ("step-1-setup", "step-2-data", "step-3-secret")
COMMANDS = {
    "step-1-setup": ["chmod +x /workshop/greet.sh", "/workshop/greet.sh world > /workshop/hello.txt"],
    "step-2-data": ["mkdir -p /workshop/report", "wc -l /workshop/data/*.csv > /workshop/report/lines.txt",
                    "/workshop/greet.sh data > /workshop/report/greeting.txt"],
    "step-3-secret": ['test -n "$API_TOKEN"', 'echo "the token has ${#API_TOKEN} characters" > '
                      "/workshop/token-check.txt"],
}
HELLO = b"Hello, world!\n"
LINES = b"  3 /workshop/data/cities.csv\n  4 /workshop/data/rivers.csv\n  7 total\n"
GREETING = b"Hello, data!\n"
TOKEN_CHECK = f"the token has {len(TOKEN)} characters\n".encode()

Fields = list[tuple[str, dict[str, Any]]]


# ---- fixtures and helpers --------------------------------------------------------------------------

@dataclass
class Fake:
    """The project and the fake engine its builds attach to."""

    project: Project
    script: Script
    engine: FakeEngine

    @property
    def root(self) -> Path:
        return self.project.root

    def archive(self, step: str) -> Path:
        return self.root / "var" / "workshop" / f"{step}.tar"

    def build(self, *args: str) -> tuple[Result, list[str]]:
        """``sqldom build --json ARGS`` in a subprocess, and the queries the fake engine received meanwhile."""
        start = len(self.script.sent)
        r = self.project.build(*args)
        return r, self.script.sent[start:]

    def row(self, step: str) -> dict[str, Any]:
        con = self.project.db()
        con.row_factory = sqlite3.Row
        try:
            row = con.execute("select * from steps where id = ?", (step,)).fetchone()
        finally:
            con.close()
        assert row is not None, f"no steps row for {step}"
        return dict(row)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    """The example copied, switched to ``executor: dagger``, and a fake engine over HTTP for its builds."""
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build", "var"))
    yaml = (root / "sqldom.yaml").read_text()
    assert "executor: podman\n" in yaml
    (root / "sqldom.yaml").write_text(yaml.replace("executor: podman\n", "executor: dagger\n"))
    script = Script(content_ids=True, image_ref=f"{BASE}@{BASE_DIGEST}",
                    files={"/workshop/hello.txt": HELLO, "/workshop/token-check.txt": TOKEN_CHECK},
                    dirs={"/workshop/report": {"lines.txt": LINES, "greeting.txt": GREETING}})
    for name in (CLI_ENV, RUNNER_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKSHOP_API_TOKEN", TOKEN)
    engine = FakeEngine(script, token="fake-session-token-91c2")
    with engine as (port, token):
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(port))       # inherited by the CLI subprocess
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", token)
        yield Fake(Project(root), script, engine)
    assert engine.auth_ok, "a request reached the fake engine without the session token"


def ok(r: Result) -> Result:
    assert r.code == 0, (r.problems, r.stderr)
    return r


def execs(sent: list[str]) -> list[str]:
    """The ``sh -c`` command of every exec whose result was asked for, in the order asked."""
    out = []
    for q in sent:
        fields = path_of(q)
        if fields[-1][0] == "exitCode":
            out.append([a for n, a in fields if n == "withExec"][-1]["args"][-1])
    return out


def step_pipelines(sent: list[str]) -> list[Fields]:
    """The whole pipeline of each step evaluated (its ``sync`` query), in order, without the leaf."""
    return [path_of(q)[:-1] for q in sent if path_of(q)[-1][0] == "sync"]


def index_digest(archive: Path) -> str:
    """``index.json`` ``manifests[0].digest`` of an OCI archive, read here independently of sqldom."""
    with tarfile.open(archive) as tf:
        member = tf.extractfile("index.json")
        assert member is not None
        digest = json.load(member)["manifests"][0]["digest"]
    assert isinstance(digest, str)
    return digest


def digests(fake: Fake) -> dict[str, str]:
    return {s: str(fake.row(s)["image_digest"]) for s in STEPS}


def built_steps(r: Result) -> dict[str, str]:
    return {s: st for s, st in r.steps.items() if s in STEPS}


def host_file(script: Script, source_id: str) -> dict[str, Any]:
    """The host file behind an id the fake engine handed out (its path, and a hash of its bytes)."""
    made = script.made[source_id]
    assert [n for n, _ in made] == ["host", "file"], made
    return made[1][1]


# ---- 1. the first build --------------------------------------------------------------------------------

def test_the_example_builds_its_chain_of_archives_through_the_cli_on_a_fake_dagger_engine(fake: Fake) -> None:
    r, sent = fake.build()
    ok(r)
    # what the user sees: the three container steps, built in order, each naming its image
    events = [e for e in r.events if e["event"] == "step" and e["id"] in STEPS]
    assert [(e["id"], e["status"], e["kind"]) for e in events] == [(s, "built", "container") for s in STEPS]
    for e in events:
        assert e["image"] == f"{IMAGE}:{e['id']}" and e["digest"] == fake.row(e["id"])["image_digest"]
    # the commands ran in order, each one's exit code read before the next was sent
    assert execs(sent) == [c for s in STEPS for c in COMMANDS[s]]

    pipelines = step_pipelines(sent)
    assert len(pipelines) == 3
    first, second, third = pipelines
    # step 1: FROM the base image, as named in sqldom.yaml
    assert first[:2] == [("container", {}), ("from", {"address": BASE})]
    assert first[2:4] == [("withAnnotation", {"name": "org.opencontainers.image.base.name", "value": BASE}),
                          ("withAnnotation", {"name": "org.opencontainers.image.base.digest", "value": ""})]
    names = [n for n, _ in first]
    assert names[4:] == ["withFile", "withNewFile", "withEnvVariable", "withExec", "withExec"]
    assert first[4][1]["path"] == "/workshop/greet.sh"
    assert host_file(fake.script, first[4][1]["source"])["path"] == str(fake.root / "content" / "code" / "greet.sh")
    assert first[5][1] == {"path": "/workshop/NOTES", "contents": "Everything for this workshop lives in /workshop.\n"}
    assert first[6][1] == {"name": "GREETING", "value": "Hello"}
    # steps 2 and 3: FROM the previous step's OCI archive (no registry configured: nothing pushed)
    for prev, pipe in zip(STEPS[:2], (second, third), strict=True):
        assert [n for n, _ in pipe[:2]] == ["container", "import"], pipe
        source = host_file(fake.script, pipe[1][1]["source"])
        assert source["path"] == str(fake.archive(prev))
        # the bytes imported are the archive this build wrote for the previous step
        assert source["content"] == hashlib.sha256(fake.archive(prev).read_bytes()).hexdigest()
        assert pipe[2:4] == [
            ("withAnnotation", {"name": "org.opencontainers.image.base.name", "value": f"{IMAGE}:{prev}"}),
            ("withAnnotation", {"name": "org.opencontainers.image.base.digest", "value": digests(fake)[prev]})]
    assert [n for n, _ in second[4:]] == ["withDirectory", "withExec", "withExec", "withExec"]
    assert second[4][1]["path"] == "/workshop/data"
    data_dir = fake.script.made[second[4][1]["source"]]
    assert [n for n, _ in data_dir] == ["host", "directory"]
    # the folder is staged (exactly its sources, modes normalised) at a path that is the same every build
    assert data_dir[1][1]["path"] == str(fake.root / "var" / "tmp" / "sqldom-files-step-2-data" / "files-0")
    assert [n for n, _ in third[4:]] == ["withSecretVariable", "withExec", "withExec", "withoutSecretVariable"]
    assert third[4][1]["name"] == "API_TOKEN" and third[-1] == ("withoutSecretVariable", {"name": "API_TOKEN"})
    assert fake.script.made[third[4][1]["secret"]] == [("setSecret", {"name": "sqldom/step-3-secret/API_TOKEN"})]
    assert "publish" not in {n for n, _ in fake.script.calls}

    # each step's archive, its digest recorded in sqlite, and its tag
    for step, pipe in zip(STEPS, pipelines, strict=True):
        row = fake.row(step)
        archive = fake.archive(step)
        assert archive.is_file(), step
        assert row["image_digest"] == row["image_id"] == index_digest(archive)
        assert row["image_tag"] == f"{IMAGE}:{step}"
        assert (row["kind"], row["status"], row["image_pushed"]) == ("container", "built", None)
        # the archive is the export of the very pipeline the step evaluated
        assert fake.script.images[row["image_digest"]] == pipe
    assert len(set(digests(fake).values())) == 3
    assert sorted(p.name for p in (fake.root / "var" / "workshop").iterdir()) == [f"{s}.tar" for s in STEPS]
    assert fake.project.query("select name, image, base_image, executor, base_id, steps from workshop") == [
        ("shell-workshop", IMAGE, BASE, "dagger", BASE_DIGEST, 3)]

    # the declared outputs, with the bytes the fake engine was scripted to return
    p = fake.project
    assert p.output("step-1-setup/workshop/hello.txt") == HELLO
    assert p.output("step-2-data/workshop/report/lines.txt") == LINES
    assert p.output("step-2-data/workshop/report/greeting.txt") == GREETING
    assert p.output("step-3-secret/workshop/token-check.txt") == TOKEN_CHECK
    assert {path: step for path, step in p.query("select path, step from build") if step in STEPS} == {
        "step-1-setup/workshop/hello.txt": "step-1-setup",
        "step-2-data/workshop/report/greeting.txt": "step-2-data",
        "step-2-data/workshop/report/lines.txt": "step-2-data",
        "step-3-secret/workshop/token-check.txt": "step-3-secret"}
    scratch = fake.root / "var" / "tmp"
    assert not scratch.exists() or not any(scratch.iterdir()), "a step left its scratch folder behind"

    # the secret: only in the setSecret call, named per step; nowhere sqldom writes or prints
    set_secret = [path_of(q)[0][1] for q in sent if path_of(q)[0][0] == "setSecret"]
    assert set_secret and all(a == {"name": "sqldom/step-3-secret/API_TOKEN", "plaintext": TOKEN}
                              for a in set_secret)
    assert [q for q in sent if TOKEN in q and path_of(q)[0][0] != "setSecret"] == []
    for f in (fake.root / "var").rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
    assert TOKEN not in r.stdout + r.stderr


# ---- 2. nothing changed ----------------------------------------------------------------------------------

def test_a_second_build_executes_no_step_on_a_fake_dagger_engine(fake: Fake) -> None:
    ok(fake.build()[0])
    before = digests(fake)
    archives = {s: fake.archive(s).read_bytes() for s in STEPS}
    r, sent = fake.build()
    ok(r)
    assert built_steps(r) == {}
    assert execs(sent) == [] and not any("withExec" in q for q in sent)
    # what was asked: the SDK's version handshake and the base image's identity; the step images are
    # checked on disk, in var/workshop
    assert {tuple(n for n, _ in path_of(q)) for q in sent} == {("version",), ("container", "from", "imageRef")}
    assert digests(fake) == before
    assert {s: fake.archive(s).read_bytes() for s in STEPS} == archives
    assert [(s, fake.row(s)["status"]) for s in STEPS] == [(s, "built") for s in STEPS]


# ---- 3. an input of step 2 changed ------------------------------------------------------------------------

def test_editing_step_2s_data_rebuilds_steps_2_and_3_but_not_1_on_a_fake_dagger_engine(fake: Fake) -> None:
    ok(fake.build()[0])
    before = digests(fake)
    step_1_archive = fake.archive("step-1-setup").read_bytes()
    fake.project.write("code/data/cities.csv", "city,country\nLisbon,Portugal\nOslo,Norway\nRome,Italy\n")
    new_lines = b"  4 /workshop/data/cities.csv\n  4 /workshop/data/rivers.csv\n  8 total\n"
    fake.script.dirs["/workshop/report"] = {"lines.txt": new_lines, "greeting.txt": GREETING}
    r, sent = fake.build()
    ok(r)
    assert built_steps(r) == {"step-2-data": "built", "step-3-secret": "built"}
    reasons = {e["id"]: e["reason"] for e in r.events if e["event"] == "step"}
    assert reasons["step-2-data"] == "files under code/data changed"
    assert reasons["step-3-secret"].startswith("parent step-2-data changed")
    assert execs(sent) == COMMANDS["step-2-data"] + COMMANDS["step-3-secret"]
    second, third = step_pipelines(sent)
    # step 2 is built FROM step 1's archive, untouched; step 3 FROM step 2's new one
    assert host_file(fake.script, second[1][1]["source"]) == {
        "path": str(fake.archive("step-1-setup")), "content": hashlib.sha256(step_1_archive).hexdigest()}
    assert second[3] == ("withAnnotation", {"name": "org.opencontainers.image.base.digest",
                                            "value": before["step-1-setup"]})
    assert host_file(fake.script, third[1][1]["source"])["path"] == str(fake.archive("step-2-data"))
    after = digests(fake)
    assert after["step-1-setup"] == before["step-1-setup"]
    assert fake.archive("step-1-setup").read_bytes() == step_1_archive
    assert after["step-2-data"] != before["step-2-data"] and after["step-3-secret"] != before["step-3-secret"]
    for step in STEPS:
        assert index_digest(fake.archive(step)) == after[step]
    assert fake.project.output("step-2-data/workshop/report/lines.txt") == new_lines
    why = fake.project.query("select reason from executions where step = 'step-2-data' order by run desc limit 1")
    assert "code/data" in why[0][0]


def test_a_deleted_archive_rebuilds_its_step_and_an_identical_result_stops_there_on_a_fake_dagger_engine(
        fake: Fake) -> None:
    """Dagger keeps no images between sessions: the archive is the image. Rebuilt bit-identical
    (as the content-addressed fake gives it back), the step keeps its digest and step 3 stays clean."""
    ok(fake.build()[0])
    before = digests(fake)
    fake.archive("step-2-data").unlink()
    r, sent = fake.build()
    ok(r)
    assert built_steps(r) == {"step-2-data": "built"}
    reason = next(e["reason"] for e in r.events if e["event"] == "step" and e["id"] == "step-2-data")
    assert reason.startswith("image ") and reason.endswith("is gone from dagger")
    assert execs(sent) == COMMANDS["step-2-data"]
    assert digests(fake) == before
    assert index_digest(fake.archive("step-2-data")) == before["step-2-data"]


# ---- 4. --from-step ---------------------------------------------------------------------------------------

def test_from_step_rebuilds_that_step_and_the_ones_after_it_on_a_fake_dagger_engine(fake: Fake) -> None:
    ok(fake.build()[0])
    before = digests(fake)
    r, sent = fake.build("--from-step", "step-2-data")
    ok(r)
    assert built_steps(r) == {"step-2-data": "built", "step-3-secret": "built"}
    assert {e["id"]: e["reason"] for e in r.events if e["event"] == "step" and e["id"] in STEPS} == {
        "step-2-data": "--from-step step-2-data", "step-3-secret": "--from-step step-2-data"}
    assert execs(sent) == COMMANDS["step-2-data"] + COMMANDS["step-3-secret"]
    # same pipeline on the same inputs: the (content-addressed) fake engine gives the same images back
    assert digests(fake) == before
    first, second, third = (fake.row(s)["last_run"] for s in STEPS)
    assert first < second == third                # step 1 kept the run that built it


# ---- 5. a failing command ---------------------------------------------------------------------------------

def test_a_failing_command_fails_its_step_and_blocks_the_next_on_a_fake_dagger_engine(fake: Fake) -> None:
    failing = COMMANDS["step-2-data"][1]
    fake.script.commands[failing] = (2, "some output\n", "wc: /workshop/data/*.csv: No such file\n")
    r, sent = fake.build()
    assert r.code == 1, (r.problems, r.stderr)
    assert built_steps(r) == {"step-1-setup": "built", "step-2-data": "failed"}
    # the commands after the failing one, and step 3, were never sent
    assert execs(sent) == COMMANDS["step-1-setup"] + COMMANDS["step-2-data"][:2]
    assert len(step_pipelines(sent)) == 1
    problems = [e for e in r.problems if e.get("step") == "step-2-data"]
    assert len(problems) == 1, r.problems
    message = problems[0]["message"]
    assert f"command exited with code 2: {failing}" in message
    assert "some output" in message and "No such file" in message
    assert "not built because of this: step-3-secret" in message
    assert fake.archive("step-1-setup").is_file()
    assert not fake.archive("step-2-data").exists() and not fake.archive("step-3-secret").exists()
    assert fake.row("step-2-data")["status"] == "failed"
    assert fake.row("step-3-secret")["status"] == "blocked" and fake.row("step-3-secret")["image_digest"] is None
    assert fake.project.output("step-3-secret/workshop/token-check.txt") is None
    assert fake.project.output("step-2-data/workshop/report/lines.txt") is None
    stored = fake.project.query("select message from problems where step = 'step-2-data'")
    assert stored and "exited with code 2" in stored[0][0]
    # once the command passes, --from-step builds the rest of the chain
    del fake.script.commands[failing]
    r2, sent2 = fake.build("--from-step", "step-2-data")
    ok(r2)
    assert built_steps(r2) == {"step-2-data": "built", "step-3-secret": "built"}
    assert fake.project.output("step-3-secret/workshop/token-check.txt") == TOKEN_CHECK
    assert host_file(fake.script, step_pipelines(sent2)[0][1][1]["source"])["path"] == str(fake.archive("step-1-setup"))


def test_a_failing_step_with_a_secret_shows_its_output_redacted_on_a_fake_dagger_engine(fake: Fake) -> None:
    failing = COMMANDS["step-3-secret"][0]
    fake.script.commands[failing] = (1, f"token is {TOKEN}\n", f"rejected {TOKEN}\n")
    r, _sent = fake.build()
    assert r.code == 1, (r.problems, r.stderr)
    assert built_steps(r) == {"step-1-setup": "built", "step-2-data": "built", "step-3-secret": "failed"}
    message = next(e["message"] for e in r.problems if e.get("step") == "step-3-secret")
    assert f"command exited with code 1: {failing}" in message
    assert "token is ***" in message and "rejected ***" in message
    assert TOKEN not in r.stdout + r.stderr
    for f in (fake.root / "var").rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
