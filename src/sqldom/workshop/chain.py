"""Build a workshop's chain of images: only the steps whose key changed, in order, recorded in one batch.

A step's key is what it read, recorded as ``deps`` rows of phase ``image``:

    spec    step          the step's recipe: files' targets, env, commands, secret *names*, outputs
    source  <path>        each file copied in (a folder: one ``tree`` read over its files and hashes)
    tree    <folder>
    image   <base image>  step 1: the base image's identity in the engine (its image ID)
    parent  <step id>     step N: the digest of step N-1's image

A step is due when one of those changed, when its image is gone from the
engine (pruned), or when ``--full`` / ``--from-step`` forces it. Because
commits are reproducible, a rebuilt step whose result is bit-identical keeps
its digest, and the steps after it stay clean (early cutoff along the chain).
A due step whose exact inputs were built before, and whose image still exists,
is restored by re-tagging it (``traces``), not rebuilt.

The doc of a step (title and Markdown) is metadata: it updates the ``steps``
row and never rebuilds an image. A failing command fails its step (its reads
are recorded, so it is not retried until an input changes) and the steps after
it are ``blocked``: not built, their rows and images left as they were.

Secrets' values are read just before the step runs, passed to the backend,
and removed from anything the step printed before it is shown or stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqldom import stop
from sqldom.db.batch import Batch
from sqldom.db.store import BuildUpsert, ContainerRow, Execution, OutputRow, Store
from sqldom.events import ContainerStepEvent, OutputEvent, Sink
from sqldom.executors.base import ExecutorError
from sqldom.hashing import ABSENT, canonical_json, hash_bytes, hash_json
from sqldom.model import BUILT, FAILED, RESTORED, Problem, Read
from sqldom.packing import reads_json
from sqldom.plan import change_reason, short
from sqldom.workshop.backend import Built, ChainBackend, FileCopy, Parent, Published, StepFailure, StepJob
from sqldom.workshop.spec import FileSpec, StepSpec, Workshop, check_secrets, secret_values

KIND = "container"
PHASE = "image"
BLOCKED = "blocked"
REDACTED = "***"


@dataclass
class ChainOptions:
    full: bool = False
    from_step: str | None = None
    push: bool = False
    verbose: bool = False


@dataclass
class ChainInputs:
    """What the chain reads from the build it is part of."""

    root: Path
    workshop: Workshop | None
    source_hash: Callable[[str], str | None]
    source_paths: Callable[[], list[str]]
    source_text: Callable[[str], str]
    title_of: Callable[[str], str | None]
    is_executable: Callable[[str], bool]              # content path -> has an executable bit
    outputs_before: Mapping[str, OutputRow]
    other_outputs: Callable[[str], str | None]       # build path -> the document step that writes it, if any
    add_blob: Callable[[str, bytes], None]
    restorable: Callable[[str], bool]


@dataclass
class ChainResult:
    events: list[ContainerStepEvent] = field(default_factory=list)
    built: int = 0
    restored: int = 0
    failed: int = 0
    unchanged: int = 0
    deleted: list[tuple[str, str]] = field(default_factory=list)    # (output path, step)


def redact(text: str, secrets: Mapping[str, str]) -> str:
    for value in sorted((v for v in secrets.values() if v), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def folder_members(folder: str, inputs: ChainInputs) -> list[str]:
    """The sources under ``folder`` (content paths), as the scan saw them: what a folder copy takes."""
    prefix = folder + "/"
    return [p for p in inputs.source_paths() if p.startswith(prefix)]


def step_reads(step: StepSpec, ws: Workshop, inputs: ChainInputs, parent: Read) -> list[Read]:
    """The step's key as reads: everything that decides the image's bytes, and nothing else.

    A file's executable bit is part of it (the copy is 0755 or 0644); a folder
    is one ``tree`` read over its sources' paths, hashes and executable bits.
    """
    reads = [Read("spec", "step", "", hash_json({"recipe": step.recipe(), "repository": ws.image})), parent]
    for f in step.files:
        if f.source is None:
            continue
        h = inputs.source_hash(f.source)
        if h is not None:
            reads.append(Read("source", f.source, "", h))
            reads.append(Read("mode", f.source, "", "755" if inputs.is_executable(f.source) else "644"))
            continue
        tree = [(p, inputs.source_hash(p), inputs.is_executable(p)) for p in folder_members(f.source, inputs)]
        reads.append(Read("tree", f.source, "", hash_json(tree) if tree else ABSENT))
    return reads


def describe_change(read: Read, now: str) -> str:
    if read.kind == "spec":
        return "step changed in sqldom.yaml"
    if read.kind == "parent":
        return f"parent {read.target} changed (digest {short(read.hash.split(':')[-1])} -> {short(now.split(':')[-1])})"
    if read.kind == "image":
        return f"base image {read.target} changed"
    if read.kind == "tree":
        return f"files under {read.target} changed"
    if read.kind == "mode":
        return f"mode of {read.target} changed"
    return change_reason(read, now)


def first_change(old: list[Read], now: list[Read]) -> tuple[str, str] | None:
    current = {(r.kind, r.target, r.key): r.hash for r in now}
    for r in old:
        value = current.get((r.kind, r.target, r.key), ABSENT)
        if value != r.hash:
            reason = describe_change(r, value)
            return reason, f"{reason} ({short(r.hash)} -> {short(value)})"
    old_keys = {(r.kind, r.target, r.key) for r in old}
    for r in now:
        if (r.kind, r.target, r.key) not in old_keys:
            return f"{r.kind} {r.target} added", f"{r.kind} {r.target} added"
    return None


class Chain:
    """One build's pass over the workshop (``run``), writing into the build's ``Batch``."""

    def __init__(self, inputs: ChainInputs, store: Store, batch: Batch, options: ChainOptions, sink: Sink,
                 backend_factory: Callable[[], ChainBackend]) -> None:
        self.inputs = inputs
        self.store = store
        self.batch = batch
        self.opts = options
        self.sink = sink
        self._factory = backend_factory
        self._backend: ChainBackend | ExecutorError | None = None
        self.result = ChainResult()
        self.sizes: dict[str, int] = {}

    def backend(self) -> ChainBackend:
        if self._backend is None:
            try:
                self._backend = self._factory()
            except ExecutorError as e:
                self._backend = e
        if isinstance(self._backend, ExecutorError):
            raise self._backend
        return self._backend

    def close(self) -> None:
        if self._backend is not None and not isinstance(self._backend, ExecutorError):
            self._backend.close()

    # ---- the pass ---------------------------------------------------------------------------

    def run(self) -> ChainResult:
        ws = self.inputs.workshop
        recorded = self.store.containers()
        wanted = {s.id for s in ws.steps} if ws is not None else set()
        for sid in sorted(set(recorded) - wanted):
            self.remove(sid)
        known = self.store.workshops()
        gone = [n for n in known if ws is None or n != ws.name]
        self.batch.workshop_delete.extend(gone)
        if ws is None:
            return self.result
        if self.opts.from_step is not None and self.opts.from_step not in wanted:
            from sqldom.errors import UsageError
            raise UsageError(f"--from-step {self.opts.from_step}: no such workshop step",
                             hint="steps: " + ", ".join(s.id for s in ws.steps))
        deps = self.store.deps_of(list(recorded)) if recorded else {}
        try:
            self.walk(ws, recorded, deps, first_time=ws.name not in known)
        finally:
            self.close()
        return self.result

    def pending(self) -> list[tuple[str, str]]:
        """(step, reason) for each step the next build would execute, executing nothing (``status``).

        After the first due step the later ones are listed as depending on it: whether
        they rebuild depends on the digest it gets (an identical image keeps them).
        """
        ws = self.inputs.workshop
        if ws is None:
            return []
        recorded = self.store.containers()
        deps = self.store.deps_of(list(recorded)) if recorded else {}
        forced = ws.index(self.opts.from_step) if self.opts.from_step in {s.id for s in ws.steps} else None
        out: list[tuple[str, str]] = []
        parent_digest = ""
        first_due: str | None = None
        try:
            for i, step in enumerate(ws.steps):
                rec = recorded.get(step.id)
                if first_due is not None:
                    out.append((step.id, f"if {first_due} gets a new digest"))
                    continue
                if i == 0:
                    parent = Read("image", ws.base_image, self.backend().name, self.backend().base_identity(ws.base_image))
                else:
                    parent = Read("parent", ws.steps[i - 1].id, "", parent_digest or ABSENT)
                why = self.due(step, i, rec, deps.get((step.id, PHASE)), step_reads(step, ws, self.inputs, parent),
                               forced)
                if why is None and rec is not None and rec.status == FAILED:
                    break     # it failed on these inputs and is not retried; the rest stays blocked
                if why is not None:
                    out.append((step.id, why[0]))
                    first_due = step.id
                parent_digest = rec.image_digest or "" if rec is not None else ""
        except ExecutorError as e:
            out.append(("workshop", f"cannot check the images: {e.message}"))
        finally:
            self.close()
        return out

    def walk(self, ws: Workshop, recorded: dict[str, ContainerRow], deps: dict[tuple[str, str], list[Read]],
             first_time: bool) -> None:
        forced = ws.index(self.opts.from_step) if self.opts.from_step is not None else None
        parent = Parent(ref=ws.base_image, stable_name=ws.base_image, insecure=ws.insecure)
        blocked_by: str | None = None
        secrets_checked = False
        changed_any = first_time
        base_id = ""
        for i, step in enumerate(ws.steps):
            stop.check()
            rec = recorded.get(step.id)
            meta = self.metadata(step, i)
            if blocked_by is not None:
                self.keep(step, rec, meta, status=BLOCKED, reason=f"step {blocked_by} failed")
                continue
            try:
                if i == 0:
                    base_id = self.backend().base_identity(ws.base_image)
                    parent_read = Read("image", ws.base_image, self.backend().name, base_id)
                else:
                    parent_read = Read("parent", ws.steps[i - 1].id, "", parent.digest or ABSENT)
            except ExecutorError as e:
                self.tool_failure(step, rec, meta, e)
                blocked_by = step.id
                changed_any = True
                continue
            reads = step_reads(step, ws, self.inputs, parent_read)
            why = self.due(step, i, rec, deps.get((step.id, PHASE)), reads, forced)
            if why is None and rec is not None and rec.status == FAILED:
                self.keep(step, rec, meta, status=FAILED, reason=rec.reason or "failed")
                blocked_by = step.id
                continue
            if why is None and rec is not None:
                pushed = self.push_if_asked(ws, step, rec)
                self.keep(step, rec, meta, status=rec.status if rec.status != BLOCKED else BUILT,
                          reason=rec.reason or "", pushed=pushed)
                parent = self.parent_of(ws, step, rec.image_tag or "", rec.image_digest or "",
                                        bool(rec.image_pushed))
                continue
            assert why is not None
            changed_any = True
            if not secrets_checked:
                check_secrets(ws.steps[i:], self.inputs.root)
                secrets_checked = True
            published = self.execute(ws, step, i, rec, meta, parent, reads, why)
            if published is None:
                blocked_by = step.id
                continue
            parent = self.parent_of(ws, step, published.tags[0], published.digest, published.pushed)
        if changed_any or first_time:
            self.batch.workshop_upsert.append({
                "name": ws.name, "image": ws.image, "base_image": ws.base_image, "updated_run": self.batch.run,
                "executor": self.backend_name(), "base_id": base_id or None, "steps": len(ws.steps)})

    def backend_name(self) -> str | None:
        return None if self._backend is None or isinstance(self._backend, ExecutorError) else self._backend.name

    def parent_of(self, ws: Workshop, step: StepSpec, tag: str, digest: str, pushed: bool) -> Parent:
        """The next step's FROM. Dagger keeps no local store: unpushed steps are read from their OCI archive."""
        archive = self.archive(step.id) if self.backend_name() == "dagger" and not pushed else None
        return Parent(ref=tag or f"{ws.image}:{step.id}", digest=digest, stable_name=f"{ws.image}:{step.id}",
                      pushed=pushed, insecure=ws.insecure, archive=archive)

    def due(self, step: StepSpec, i: int, rec: ContainerRow | None, old: list[Read] | None, reads: list[Read],
            forced: int | None) -> tuple[str, str] | None:
        if self.opts.full:
            return "--full", "--full"
        if forced is not None and i >= forced:
            return f"--from-step {self.opts.from_step}", f"--from-step {self.opts.from_step}"
        if rec is None or not old:
            return ("new step", "new step") if rec is None else ("not built yet", "not built yet")
        why = first_change(old, reads)
        if why is not None:
            return why
        if rec.status in (FAILED,):
            return None
        backend, archive = self.backend(), self.archive(step.id)
        if not rec.image_id or not backend.present(rec.image_id, rec.image_digest or "", archive):
            what = f"image {short((rec.image_id or ABSENT).split(':')[-1])} is gone from {backend.name}"
            return what, what
        if not backend.present(rec.image_id, rec.image_digest or "", archive, tag=rec.image_tag):
            what = f"tag {rec.image_tag} no longer names image {short(rec.image_id.split(':')[-1])}"
            return what, what
        return None

    def archive(self, step_id: str) -> Path:
        return self.inputs.root / "var" / "workshop" / f"{step_id}.tar"

    # ---- one due step -----------------------------------------------------------------------

    def execute(self, ws: Workshop, step: StepSpec, i: int, rec: ContainerRow | None, meta: dict[str, Any],
                parent: Parent, reads: list[Read], why: tuple[str, str]) -> Published | None:
        t = time.perf_counter()
        try:
            backend = self.backend()
            forced = self.opts.full or why[0].startswith("--from-step")
            restored = None if forced else self.restore(ws, step, reads)
            if restored is not None:
                published, outputs = restored
                status = RESTORED
            else:
                secrets = secret_values(step, self.inputs.root)
                built = backend.build_step(self.job(step, parent, secrets), on_output=self.echo(step.id, secrets))
                if isinstance(built, StepFailure):
                    self.failed(step, rec, meta, reads, why, built, secrets, time.perf_counter() - t)
                    return None
                published = backend.publish(built.image, ws.image, step.id, push=self.opts.push or ws.push,
                                            insecure=ws.insecure, archive_dir=self.archive(step.id).parent)
                outputs = self.store_outputs(built)
                status = BUILT
        except ExecutorError as e:
            self.tool_failure(step, rec, meta, e, why)
            return None
        clash = self.output_clash(step.id, outputs)
        if clash is not None:
            self.failed_message(step, rec, meta, reads, why, clash, time.perf_counter() - t)
            return None
        self.write_outputs(step.id, outputs)
        rj = reads_json(reads)
        self.batch.traces.append((
            step.id, PHASE, rj,
            canonical_json({"image_id": published.image_id, "digest": published.digest, "outputs": outputs}),
            canonical_json(sorted(set(outputs.values()))), self.batch.run))
        self.batch.deps[(step.id, PHASE)] = rj
        self.batch.problems[(step.id, PHASE)] = []
        self.row(step, meta, status=status, reason=why[0], published=published)
        self.executed(step.id, status, why, time.perf_counter() - t, published, outputs)
        return published

    def job(self, step: StepSpec, parent: Parent, secrets: Mapping[str, str]) -> StepJob:
        content = self.inputs.root / "content"
        files = tuple(self.copy_of(f, content) for f in step.files)
        return StepJob(step=step.id, parent=parent, files=files, env=step.env, secrets=dict(secrets),
                       commands=step.commands, outputs=step.outputs)

    def copy_of(self, f: FileSpec, content: Path) -> FileCopy:
        if f.source is None:
            return FileCopy(f.target, content=(f.content or "").encode("utf-8"))
        if self.inputs.source_hash(f.source) is not None:
            return FileCopy(f.target, source=content / f.source, executable=self.inputs.is_executable(f.source))
        prefix = len(f.source) + 1
        members = tuple((p[prefix:], self.inputs.is_executable(p)) for p in folder_members(f.source, self.inputs))
        return FileCopy(f.target, source=content / f.source, members=members)

    def echo(self, step_id: str, secrets: Mapping[str, str]) -> Callable[[str], None] | None:
        if not self.opts.verbose:
            return None
        return lambda line: self.sink.emit(OutputEvent(id=step_id, line=redact(line, secrets)))

    def restore(self, ws: Workshop, step: StepSpec, reads: list[Read]) -> tuple[Published, dict[str, str]] | None:
        """An earlier build of exactly these inputs whose image still exists: re-tag it instead of rebuilding."""
        want = {(r.kind, r.target, r.key, r.hash) for r in reads}
        for tr in self.store.traces_of([step.id], PHASE).get(step.id, []):
            if {(r.kind, r.target, r.key, r.hash) for r in tr.reads} != want:
                continue
            image_id, outputs = tr.results.get("image_id"), tr.results.get("outputs", {})
            if not image_id or not all(self.inputs.restorable(h) for h in outputs.values()):
                continue
            if not self.backend().present(image_id, tr.results.get("digest", ""), self.archive(step.id)):
                continue
            published = self.backend().publish(image_id, ws.image, step.id, push=self.opts.push or ws.push,
                                               insecure=ws.insecure, archive_dir=self.archive(step.id).parent)
            return published, dict(outputs)
        return None

    def store_outputs(self, built: Built) -> dict[str, str]:
        """Exported files -> blobs; returns path under build/<step>/ -> hash."""
        out = {}
        for rel, data in sorted(built.outputs.items()):
            h = hash_bytes(bytes(data))
            self.inputs.add_blob(h, bytes(data))
            self.sizes[h] = len(data)
            out[rel] = h
        return out

    def output_clash(self, step_id: str, outputs: Mapping[str, str]) -> str | None:
        for rel in outputs:
            path = f"{step_id}/{rel}"
            owner = self.inputs.other_outputs(path)
            if owner is not None:
                return f"output {path} is also written by {owner}; rename the step or the document"
        return None

    def write_outputs(self, step_id: str, outputs: Mapping[str, str]) -> None:
        new = {f"{step_id}/{rel}": h for rel, h in outputs.items()}
        for path, h in sorted(new.items()):
            self.batch.build_upsert.append(BuildUpsert(path, h, step_id, self.size(h)))
        self.drop_outputs(step_id, keep=set(new))

    def size(self, h: str) -> int:
        if h not in self.sizes:
            self.sizes[h] = self.store.blob_size(h) or 0
        return self.sizes[h]

    def drop_outputs(self, step_id: str, keep: set[str] | None = None) -> None:
        for path, row in self.inputs.outputs_before.items():
            if row.step == step_id and (keep is None or path not in keep):
                self.batch.build_delete.append(path)
                self.result.deleted.append((path, step_id))

    # ---- outcomes ---------------------------------------------------------------------------

    def metadata(self, step: StepSpec, i: int) -> dict[str, Any]:
        title = text = None
        if step.doc is not None:
            title = self.inputs.title_of(step.doc)
            try:
                text = self.inputs.source_text(step.doc)
            except (KeyError, OSError, UnicodeDecodeError):
                text = None
        return {"position": i + 1, "title": title, "doc": step.doc, "text": text}

    def row(self, step: StepSpec, meta: dict[str, Any], *, status: str, reason: str,
            published: Published | None = None, rec: ContainerRow | None = None, pushed: str | None = None) -> None:
        if published is not None:
            image = {"image_tag": published.tags[0], "image_digest": published.digest,
                     "image_id": published.image_id, "image_pushed": published.digest if published.pushed else None}
            last_run: int | None = self.batch.run
        else:
            image = {"image_tag": rec.image_tag if rec else None, "image_digest": rec.image_digest if rec else None,
                     "image_id": rec.image_id if rec else None,
                     "image_pushed": pushed or (rec.image_pushed if rec else None)}
            last_run = rec.last_run if rec and status not in (FAILED,) else self.batch.run
        self.batch.containers_upsert.append({
            "id": step.id, "kind": KIND, "status": status, "last_run": last_run, "reason": reason,
            "parser": None, "writer": None, "output": None, **image, **meta})

    def keep(self, step: StepSpec, rec: ContainerRow | None, meta: dict[str, Any], *, status: str, reason: str,
             pushed: str | None = None) -> None:
        """A step that did not execute: its row changes only if its metadata, status or push did."""
        self.result.unchanged += 1
        if rec is not None and rec.status == status and not pushed and all(
                getattr(rec, k) == v for k, v in meta.items()):
            return
        self.row(step, meta, status=status, reason=reason, rec=rec, pushed=pushed)

    def push_if_asked(self, ws: Workshop, step: StepSpec, rec: ContainerRow) -> str | None:
        """``--push`` (or ``push: true``) on a clean step not pushed yet: push it, rebuild nothing."""
        if not (self.opts.push or ws.push) or not rec.image_id or rec.image_pushed == rec.image_digest:
            return None
        t = time.perf_counter()
        published = self.backend().publish(rec.image_id, ws.image, step.id, push=True, insecure=ws.insecure,
                                           archive_dir=self.archive(step.id).parent)
        self.batch.executions.append(Execution(self.batch.run, step.id, "pushed",
                                               f"pushed {published.tags[0]}@{published.digest}",
                                               round((time.perf_counter() - t) * 1000, 3)))
        return published.digest

    def executed(self, step_id: str, status: str, why: tuple[str, str], seconds: float,
                 published: Published | None, outputs: Mapping[str, str] | None = None) -> None:
        if status == BUILT:
            self.result.built += 1
        elif status == RESTORED:
            self.result.restored += 1
        else:
            self.result.failed += 1
        self.batch.executions.append(Execution(self.batch.run, step_id, status, why[1], round(seconds * 1000, 3)))
        self.result.events.append(ContainerStepEvent(
            id=step_id, kind=KIND, status=status, reason=why[0],
            outputs=sorted(f"{step_id}/{rel}" for rel in (outputs or {})),
            image=published.tags[0] if published else "", digest=published.digest if published else ""))

    def failed(self, step: StepSpec, rec: ContainerRow | None, meta: dict[str, Any], reads: list[Read],
               why: tuple[str, str], failure: StepFailure, secrets: Mapping[str, str], seconds: float) -> None:
        if failure.missing_output is not None:
            message = f"declared output {failure.missing_output} does not exist in the image after the commands"
        else:
            parts = [f"command exited with code {failure.exit_code}: {redact(failure.command, secrets)}"]
            if failure.stdout.strip():
                parts.append("--- stdout ---\n" + redact(failure.stdout, secrets).rstrip())
            if failure.stderr.strip():
                parts.append("--- stderr ---\n" + redact(failure.stderr, secrets).rstrip())
            message = "\n".join(parts)
        self.failed_message(step, rec, meta, reads, why, message, seconds)

    def failed_message(self, step: StepSpec, rec: ContainerRow | None, meta: dict[str, Any], reads: list[Read],
                       why: tuple[str, str], message: str, seconds: float) -> None:
        ws = self.inputs.workshop
        assert ws is not None
        later = [s.id for s in ws.steps[ws.index(step.id) + 1:]]
        if later:
            message += f"\n(not built because of this: {', '.join(later)})"
        self.batch.deps[(step.id, PHASE)] = reads_json(reads)
        self.batch.problems[(step.id, PHASE)] = [Problem(step=step.id, phase=PHASE, path="../sqldom.yaml",
                                                         line=step.line, message=f"step {step.id}: {message}")]
        self.drop_outputs(step.id)
        self.row(step, meta, status=FAILED, reason=why[0], rec=rec)
        self.executed(step.id, FAILED, why, seconds, None)

    def tool_failure(self, step: StepSpec, rec: ContainerRow | None, meta: dict[str, Any], err: ExecutorError,
                     why: tuple[str, str] | None = None) -> None:
        """sqldom could not build the step (no podman, a base image that cannot be pulled): retried next build."""
        message = f"step {step.id}: cannot build the image: {err.message}" + (f" ({err.hint})" if err.hint else "")
        self.batch.deps[(step.id, PHASE)] = "[]"
        self.batch.problems[(step.id, PHASE)] = [Problem(step=step.id, phase=PHASE, path="../sqldom.yaml",
                                                         line=step.line, message=message)]
        self.row(step, meta, status=FAILED, reason="cannot build", rec=rec)
        self.executed(step.id, FAILED, why or ("cannot build", err.message), 0.0, None)

    def remove(self, step_id: str) -> None:
        """A step no longer in the workshop: its row, reads and outputs go (its images stay in the store)."""
        self.batch.steps_delete.append(step_id)
        self.drop_outputs(step_id)
        self.batch.executions.append(Execution(self.batch.run, step_id, "deleted", "step removed from the workshop",
                                               0.0))
