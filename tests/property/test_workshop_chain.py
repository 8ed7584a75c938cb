"""A workshop chain on real podman: after any sequence of edits, an incremental build equals a clean
build, exactly the affected steps execute, and a following build executes nothing.

The workshop has three steps on a busybox base image built FROM scratch (no registry):

    s1  copies code/input.txt, keeps only its first line      -> /w/first.txt
    s2  copies the folder code/data, sets env MODE            -> /w/list.txt
    s3  runs one of a few commands                            -> /w/out.txt     (output)

Edits (one or two per build) change s1's file (some keep its first line: an identical image),
add/change/delete a file under code/data, change s2's env, pick s3's command (``printf`` and
``echo`` write the same bytes: an identical image), retitle a step's doc (metadata only), write
a file's own bytes again (no change), or go back to an earlier state; a build may be
``--from-step``. Each example gets its own image repository; all its images are removed after.

The oracle for "affected" does not look at the chain code's keys. Step i is due iff

    its own inputs changed since the last build (the model's value for that step: s1's file,
    s2's folder and env, s3's command), or
    its parent's digest in a clean build differs from the one recorded before this build
    (``steps.image_digest`` read before the build), or
    ``--from-step`` names it or a step before it.

So a step after a due step whose digest came out the same must not execute (early cutoff),
and a doc title edit executes no container step.

The clean build of a given tree (sqldom.yaml and content/, byte for byte and folder for
folder) is made once per example and reused when the same tree comes back (a revert, a
no-op edit): it is a build from scratch in a fresh copy, in the same podman store.

``SQLDOM_WORKSHOP_EXAMPLES`` sets the number of examples (default: ``SQLDOM_PROPERTY_EXAMPLES``
/ 6, i.e. 6); each runs a first build and up to ``SQLDOM_WORKSHOP_ROUNDS`` (default 3) rounds of
edits and a build: 10 to 40 seconds an example (a clean build of the chain takes ~7 s), about two
minutes in all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, given, note, settings

from tests.support.project import Project, Result
from tests.workshop.conftest import podman_usable, remove_images  # noqa: F401  (podman_usable: a fixture)

EXAMPLES = int(os.environ.get("SQLDOM_WORKSHOP_EXAMPLES")
               or max(1, int(os.environ.get("SQLDOM_PROPERTY_EXAMPLES", "40")) // 6))
ROUNDS = int(os.environ.get("SQLDOM_WORKSHOP_ROUNDS", "3"))

STEPS = ("s1", "s2", "s3")
CONTAINER_RAN = ("built", "restored")

# ---- the model: what the project holds -----------------------------------------------------------

INPUTS = ("alpha\n", "alpha\nmore\n", "alpha\nless\n", "beta\n")    # s1 keeps the first line only
DATA_NAMES = ("a.txt", "b.txt", "sub/c.txt")                         # a.txt is never deleted
DATA_TEXTS = ("one\n", "two\n")
MODES = ("red", "blue")
COMMANDS = {
    "printf": "printf 'done\\n' > /w/out.txt",
    "echo": "echo done > /w/out.txt",               # the same bytes as printf: an identical image
    "mode": 'echo "$MODE" > /w/out.txt',            # reads s2's env
    "first": "cat /w/first.txt > /w/out.txt",       # reads s1's result
}
TITLES = ("Start", "Data", "Finish", "Extra")


@dataclass(frozen=True)
class State:
    input: str = INPUTS[0]
    data: tuple[tuple[str, str], ...] = (("a.txt", "one\n"),)
    mode: str = MODES[0]
    command: str = "printf"
    titles: tuple[str, str, str] = ("Start", "Data", "Finish")

    def own_inputs(self, step: str) -> tuple[Any, ...]:
        """What a step reads itself (its part of sqldom.yaml and its files); the doc is not part of it."""
        return {"s1": (self.input,), "s2": (self.data, self.mode), "s3": (self.command,)}[step]


# ---- edits ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetInput:
    text: str

    def apply(self, s: State, history: list[State]) -> State:
        return replace(s, input=self.text)


@dataclass(frozen=True)
class PutData:
    name: str
    text: str

    def apply(self, s: State, history: list[State]) -> State:
        return replace(s, data=tuple(sorted({**dict(s.data), self.name: self.text}.items())))


@dataclass(frozen=True)
class DeleteData:
    name: str

    def apply(self, s: State, history: list[State]) -> State:
        return replace(s, data=tuple((n, t) for n, t in s.data if n != self.name))


@dataclass(frozen=True)
class SetMode:
    mode: str

    def apply(self, s: State, history: list[State]) -> State:
        return replace(s, mode=self.mode)


@dataclass(frozen=True)
class SetCommand:
    command: str

    def apply(self, s: State, history: list[State]) -> State:
        return replace(s, command=self.command)


@dataclass(frozen=True)
class SetTitle:
    step: str
    title: str

    def apply(self, s: State, history: list[State]) -> State:
        titles = list(s.titles)
        titles[STEPS.index(self.step)] = self.title
        return replace(s, titles=(titles[0], titles[1], titles[2]))


@dataclass(frozen=True)
class Rewrite:
    """Write a file's own bytes again: a new mtime, nothing changed."""

    path: str

    def apply(self, s: State, history: list[State]) -> State:
        return s


@dataclass(frozen=True)
class Revert:
    """Back to the state of ``back`` builds ago (the first one at most)."""

    back: int

    def apply(self, s: State, history: list[State]) -> State:
        return history[max(0, len(history) - 1 - self.back)]


Change = SetInput | PutData | DeleteData | SetMode | SetCommand | SetTitle | Rewrite | Revert


@dataclass(frozen=True)
class Round:
    changes: tuple[Change, ...]
    from_step: str | None


CHANGES: st.SearchStrategy[Change] = st.one_of(
    st.builds(SetInput, st.sampled_from(INPUTS)),
    st.builds(PutData, st.sampled_from(DATA_NAMES), st.sampled_from(DATA_TEXTS)),
    st.builds(DeleteData, st.sampled_from(DATA_NAMES[1:])),
    st.builds(SetMode, st.sampled_from(MODES)),
    st.builds(SetCommand, st.sampled_from(sorted(COMMANDS))),
    st.builds(SetTitle, st.sampled_from(STEPS), st.sampled_from(TITLES)),
    st.builds(Rewrite, st.sampled_from(("sqldom.yaml", "content/code/input.txt", "content/code/data/a.txt",
                                        "content/steps/s2.md"))),
    st.builds(Revert, st.integers(min_value=1, max_value=3)),
)
ROUND_STRATEGY = st.builds(Round, changes=st.lists(CHANGES, min_size=1, max_size=2).map(tuple),
                           from_step=st.sampled_from((None, None, None, None, None, *STEPS)))


# ---- the project on disk ------------------------------------------------------------------------

S1 = "mkdir -p /w && head -n 1 /tmp/input.txt > /w/first.txt && rm /tmp/input.txt"
S2 = "find /w/data -type f | sort > /w/list.txt && echo \"$MODE\" >> /w/list.txt"


def sqldom_yaml(s: State, repository: str, base: str) -> str:
    q = json.dumps       # a JSON string is a YAML scalar
    return f"""executor: podman
workshop:
  image: {repository}
base:
  image: {base}
steps:
  - id: s1
    doc: steps/s1.md
    files:
      - {{source: code/input.txt, target: /tmp/input.txt}}
    commands: [{q(S1)}]
  - id: s2
    doc: steps/s2.md
    files:
      - {{source: code/data, target: /w/data}}
    env: {{MODE: {q(s.mode)}}}
    commands: [{q(S2)}]
  - id: s3
    doc: steps/s3.md
    commands: [{q(COMMANDS[s.command])}]
    outputs: [/w/out.txt]
"""


def project_files(s: State, repository: str, base: str) -> dict[str, bytes]:
    """Root-relative path -> bytes of every file of the project in state ``s``."""
    files = {"sqldom.yaml": sqldom_yaml(s, repository, base), "content/code/input.txt": s.input}
    files.update({f"content/code/data/{n}": t for n, t in s.data})
    for step, title in zip(STEPS, s.titles, strict=True):
        files[f"content/steps/{step}.md"] = f"---\ntitle: {title}\n---\n\n# {title}\n\nWhat {step} does.\n"
    return {p: t.encode() for p, t in files.items()}


Tree = tuple[tuple[str, int, bytes | None], ...]


def tree(root: Path) -> Tree:
    """sqldom.yaml and content/ as they are on disk: every file and folder, its mode, a file's bytes."""
    paths = [root / "sqldom.yaml", *sorted((root / "content").rglob("*"))]
    return tuple((p.relative_to(root).as_posix(), p.lstat().st_mode, p.read_bytes() if p.is_file() else None)
                 for p in paths)


@dataclass(frozen=True)
class Snapshot:
    digests: dict[str, str]
    titles: dict[str, str | None]
    files: dict[str, bytes]                       # build/, path -> bytes
    build: list[tuple[Any, ...]]                  # the build table: path, hash, step
    workshop: list[tuple[Any, ...]]               # the workshop row


def snapshot(p: Project) -> Snapshot:
    rows = p.query("select id, image_digest, title from steps where kind = 'container'")
    return Snapshot({r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}, p.outputs(),
                    sorted(p.query("select path, hash, step from build")),
                    p.query("select name, image, base_image, executor, base_id, steps from workshop"))


def container_steps(r: Result) -> dict[str, str]:
    return {s: status for s, status in r.steps.items() if s in STEPS}


def ok(r: Result, what: str) -> Result:
    assert r.code == 0, f"{what}: exit {r.code}\n{r.problems}\n{r.stderr}"
    return r


# ---- the oracle ---------------------------------------------------------------------------------

def expected_due(before: State, after: State, digests_before: dict[str, str], clean: dict[str, str],
                 from_step: str | None) -> set[str]:
    due = set()
    for i, step in enumerate(STEPS):
        forced = from_step is not None and i >= STEPS.index(from_step)
        own = before.own_inputs(step) != after.own_inputs(step)
        parent_moved = i > 0 and clean[STEPS[i - 1]] != digests_before[STEPS[i - 1]]
        if forced or own or parent_moved:
            due.add(step)
    return due


# ---- one example ------------------------------------------------------------------------------------

class Run:
    def __init__(self, base: str) -> None:
        self.base = base
        self.prefix = f"localhost/sqldom-wsprop-{uuid.uuid4().hex[:12]}"
        self.repository = f"{self.prefix}/chain"
        self.tmp = Path(tempfile.mkdtemp(prefix="sqldom-wsprop-"))
        self.proj = Project(self.tmp / "inc")
        self.state = State()
        self.history: list[State] = []
        self.clean_builds: dict[Tree, Snapshot] = {}

    def close(self) -> None:
        remove_images(self.prefix)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def files(self, s: State) -> dict[str, bytes]:
        return project_files(s, self.repository, self.base)

    def write(self, before: State, after: State, rewrite: list[str]) -> None:
        """Bring the project from ``before`` to ``after``: write what changed, delete what went (leaving
        emptied folders behind, as ``rm`` does), write ``rewrite`` again."""
        old, new = self.files(before), self.files(after)
        for rel in sorted(set(old) - set(new)):
            path = self.proj.root / rel
            path.unlink()
        for rel, data in sorted(new.items()):
            path = self.proj.root / rel
            if rel in rewrite or not path.is_file() or path.read_bytes() != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)

    def digests(self) -> dict[str, str]:
        return dict(self.proj.query("select id, image_digest from steps where kind = 'container'"))

    def check_tags(self, snap: Snapshot) -> None:
        """Both tags of every step name the image its row records."""
        out = subprocess.run(["podman", "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
                             capture_output=True, text=True, check=True).stdout
        tags = {ref: ident if ident.startswith("sha256:") else f"sha256:{ident}"
                for ident, ref in (line.split(" ", 1) for line in out.splitlines() if line.strip())}
        for step, image_id in self.proj.query("select id, image_id from steps where kind = 'container'"):
            short = snap.digests[step].removeprefix("sha256:")[:12]
            for tag in (f"{self.repository}:{step}", f"{self.repository}:{step}-{short}"):
                assert tags.get(tag) == image_id, f"{tag} names {tags.get(tag)}, the row says {image_id}"

    def clean(self) -> Snapshot:
        """A fresh copy of sqldom.yaml and content/ built from scratch (once per distinct tree)."""
        key = tree(self.proj.root)
        if key not in self.clean_builds:
            root = self.tmp / f"clean-{len(self.clean_builds)}"
            root.mkdir()
            shutil.copy2(self.proj.root / "sqldom.yaml", root / "sqldom.yaml")
            shutil.copytree(self.proj.root / "content", root / "content")
            clean = Project(root)
            r = ok(clean.build(), "clean build")
            assert set(container_steps(r).values()) == {"built"}, r.steps
            self.clean_builds[key] = snapshot(clean)
            shutil.rmtree(root)
        return self.clean_builds[key]

    def no_op(self) -> None:
        again = ok(self.proj.build(), "no-op build")
        assert again.steps == {}, f"a build after the build executed {again.steps}"

    def first(self) -> None:
        self.write(State(), State(), rewrite=list(self.files(self.state)))
        r = ok(self.proj.build(), "first build")
        assert container_steps(r) == dict.fromkeys(STEPS, "built")
        snap = snapshot(self.proj)
        self.check_tags(snap)
        assert snap.titles == dict(zip(STEPS, self.state.titles, strict=True))
        self.clean_builds[tree(self.proj.root)] = snap       # a first build is a clean build
        self.history.append(self.state)
        self.no_op()

    def round(self, rnd: Round) -> None:
        before, after = self.state, self.state
        for change in rnd.changes:
            after = change.apply(after, self.history)
        self.write(before, after, rewrite=[c.path for c in rnd.changes if isinstance(c, Rewrite)])
        assert {rel: (self.proj.root / rel).read_bytes() for rel in self.files(after)} == self.files(after)
        digests_before = self.digests()

        r = ok(self.proj.build(*(("--from-step", rnd.from_step) if rnd.from_step else ())), f"build {rnd}")
        ran = container_steps(r)
        assert set(ran.values()) <= set(CONTAINER_RAN), ran
        inc = snapshot(self.proj)
        self.check_tags(inc)

        # 1. equal to a clean build
        clean = self.clean()
        assert inc.digests == clean.digests, "image digests differ from a clean build"
        assert inc.files == clean.files, "build/ differs from a clean build: " + ", ".join(
            sorted(p for p in set(inc.files) | set(clean.files) if inc.files.get(p) != clean.files.get(p)))
        assert inc.titles == clean.titles == dict(zip(STEPS, after.titles, strict=True))
        assert (inc.build, inc.workshop) == (clean.build, clean.workshop)

        # 2. exactly the affected steps executed (built, or restored from an earlier build)
        due = expected_due(before, after, digests_before, clean.digests, rnd.from_step)
        assert set(ran) == due, f"executed {ran}, expected {sorted(due)}"
        if rnd.from_step is not None:      # forced steps are built again, not restored
            assert all(ran[s] == "built" for s in STEPS[STEPS.index(rnd.from_step):]), ran
        for step in due:
            if inc.digests[step] == digests_before[step]:
                event("a due step kept its digest")
        for i, step in enumerate(STEPS[:-1]):
            if step in due and STEPS[i + 1] not in due:
                event("early cutoff: the step after a due step did not execute")
        if after.titles != before.titles and not due:
            event("title edit only")
        if any(status == "restored" for status in ran.values()):
            event("restored from an earlier build")

        # 3. the next build executes nothing
        self.no_op()
        self.state = after
        self.history.append(after)


@pytest.fixture(scope="module")
def base_image(request: pytest.FixtureRequest) -> Iterator[str]:
    """busybox FROM scratch under a private name (the same image ID as every other busybox built here)."""
    request.getfixturevalue("podman_usable")
    from sqldom.executors.podman import build_busybox_image
    prefix = f"localhost/sqldom-wsprop-base-{uuid.uuid4().hex[:10]}"
    try:
        build_busybox_image(f"{prefix}/busybox:1")
        yield f"{prefix}/busybox:1"
    finally:
        remove_images(prefix)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds=st.lists(ROUND_STRATEGY, min_size=1, max_size=ROUNDS))
def test_workshop_chain_incremental_builds_equal_clean_builds(base_image: str, rounds: list[Round]) -> None:
    run = Run(base_image)
    try:
        run.first()
        for i, rnd in enumerate(rounds):
            note(f"round {i + 1}: {rnd}")
            run.round(rnd)
    finally:
        run.close()


# ---- a known gap, found by the property above ----------------------------------------------------

ONE_STEP = """executor: podman
workshop:
  image: {repository}
base:
  image: {base}
steps:
  - id: copy
    files:
      - {{source: code/data, target: /w/data}}
"""


def test_a_folder_copy_is_a_function_of_the_steps_key(base_image: str, tmp_path: Path) -> None:
    """A folder copy takes exactly its sources, with modes normalised: an empty folder or an ignored file
    changes neither the key nor the image, and a new mode changes both, so the image equals a clean
    build's. (Found by the property: a delete that left its folder behind used to leave an image that
    differed from a clean build's, since buildah copied the empty folder.)"""
    prefix = f"localhost/sqldom-wsprop-{uuid.uuid4().hex[:12]}"
    try:
        inc = Project(tmp_path / "inc")
        inc.write_root("sqldom.yaml", ONE_STEP.format(repository=f"{prefix}/gap", base=base_image))
        inc.write("code/data/a.txt", "one\n")
        ok(inc.build(), "first build")
        (inc.root / "content" / "code" / "data" / "empty").mkdir()           # an empty folder
        inc.write("code/data/.notes", "a dotfile\n")                          # not a source (sqldom.fs.ignored)
        os.chmod(inc.root / "content" / "code" / "data" / "a.txt", 0o755)    # same bytes, another mode
        ok(inc.build(), "build")
        clean = Project(tmp_path / "clean")
        shutil.copy2(inc.root / "sqldom.yaml", clean.root / "sqldom.yaml")
        shutil.copytree(inc.root / "content", clean.root / "content", dirs_exist_ok=True)
        ok(clean.build(), "clean build")
        assert snapshot(inc).digests == snapshot(clean).digests
    finally:
        remove_images(prefix)
