"""``dagger``: build a workshop's step images on a Dagger engine (the ``dagger-io`` SDK).

One ``StepJob`` becomes one pipeline (``step_container`` + ``run_step``)::

    container.from(<parent ref>[@<digest>])  |  container.import(host.file(<parent>.tar))
      .withAnnotation(org.opencontainers.image.base.name, <stable name>)
      .withAnnotation(org.opencontainers.image.base.digest, <parent digest>)
      .withFile(T, host.file(S)) | .withDirectory(T, host.directory(S)) | .withNewFile(T, text)
      .withEnvVariable(K, V) ...                       # persisted in the image config
      .withSecretVariable(K, setSecret(...)) ...       # the execs' environment only
      .withExec(["sh", "-c", C1], expect: ANY)  -> exitCode (stop at the first non-zero)
      .withExec(["sh", "-c", C2], expect: ANY)  -> exitCode
      .withoutSecretVariable(K) ...                    # the image keeps no reference to them
    then per output: exists(DIRECTORY_TYPE | REGULAR_TYPE) + directory|file(P).export(<scratch>)
    and the image: sync, id

``publish`` loads that container back from its id (``node(id:)``), exports it as
an OCI archive ``<archive_dir>/<step>.tar`` (gzip layers, so the digest does not
depend on what the engine's cache happens to hold) whose ``index.json`` digest is
the image's durable identity here, and with ``push`` publishes both tags.

The SDK, the session and its event-loop thread are the command executor's
(``sqldom.executors.dagger``): one engine session per process, opened on first
use, so ``import dagger`` (about a second) only happens when a step is built.
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import tarfile
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar, TypeVar

from sqldom.executors.base import ExecutorError, OnOutput
from sqldom.executors.dagger import INSTALL, close_session, engine_problem, open_session
from sqldom.executors.streams import bounded, emit_lines
from sqldom.executors.workdir import remove_tree, scratch_dir
from sqldom.workshop.backend import (
    BASE_DIGEST,
    BASE_NAME,
    Built,
    Parent,
    Published,
    StepFailure,
    StepJob,
    file_mode,
    short_digest,
    stage_folder,
)

if TYPE_CHECKING:
    import dagger

NAME = "dagger"
T = TypeVar("T")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
INSECURE_HINT = ("Dagger 0.21 cannot be told per push that a registry is plain HTTP or self-signed: configure "
                 "the engine instead, in ~/.config/dagger/engine.json (or $XDG_CONFIG_HOME/dagger/engine.json) "
                 '{"registries": {"HOST:PORT": {"http": true, "insecure": true}}}, then recreate the engine '
                 "container; and remember that 127.0.0.1 inside the engine is not this machine")


# ---- OCI archives: read on the host, no SDK ------------------------------------------------------

def archive_path(archive_dir: Path, step: str) -> Path:
    return archive_dir / f"{step}.tar"


def archive_digest(path: Path) -> str | None:
    """The root digest of an OCI image-layout tar (``index.json`` ``manifests[0].digest``), or None.

    That is the digest a learner pulls once the archive is pushed as is, and
    what a push with the same compression gives (dagger-notes §3.3, §7.5).
    """
    try:
        with tarfile.open(path) as tf:
            member = tf.extractfile("index.json")
            if member is None:
                return None
            index = json.load(member)
        digest = index["manifests"][0]["digest"]
    except (OSError, tarfile.TarError, KeyError, IndexError, TypeError, ValueError):
        return None
    return digest if isinstance(digest, str) and DIGEST.fullmatch(digest) else None


def tags(repository: str, step: str, digest: str) -> tuple[str, str]:
    return f"{repository}:{step}", f"{repository}:{step}-{short_digest(digest)}"


def output_root(path: str) -> str:
    """Where an absolute output path lands under the step's build/ folder: ``/a/b`` -> ``a/b``."""
    return PurePosixPath("/", path).relative_to("/").as_posix()


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (exported outputs), keyed by its path relative to ``root``.

    Symlinks are skipped, as the podman backend does: one pointing out of the
    export would read a host file the step never produced.
    """
    found: dict[str, bytes] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if stat.S_ISREG(path.lstat().st_mode):
                found[path.relative_to(root).as_posix()] = path.read_bytes()
    return dict(sorted(found.items()))


def secret_name(step: str, name: str) -> str:
    """The engine-side name of a secret: one per step and variable, so two steps never share a value."""
    return f"sqldom/{step}/{name}"


# ---- the pipeline: pure builders (sending nothing; the SDK is lazy) ------------------------------

def parent_container(client: dagger.Client, parent: Parent) -> dagger.Container:
    """FROM the parent: its archive when there is one, else the registry by digest, else by name."""
    if parent.archive is not None:
        return client.container().import_(client.host().file(str(parent.archive)))
    if parent.pushed and parent.digest:
        return client.container().from_(f"{parent.ref}@{parent.digest}")
    return client.container().from_(parent.ref)


def step_container(client: dagger.Client, job: StepJob, staging: Path | None = None) -> dagger.Container:
    """The step before its commands: parent, stable base annotations, files, env, secrets.

    A folder with known ``members`` is staged under ``staging`` first (exactly
    those files, modes normalised), as the podman backend does.
    """
    parent = job.parent
    ctr = (parent_container(client, parent)
           .with_annotation(BASE_NAME, parent.stable_name or parent.ref)
           .with_annotation(BASE_DIGEST, parent.digest))
    for i, copy in enumerate(job.files):
        if copy.source is None:
            ctr = ctr.with_new_file(copy.target, _inline_text(job, copy.target, copy.content or b""))
        elif copy.members is not None and staging is not None:
            folder = stage_folder(copy, staging / f"files-{i}")
            ctr = ctr.with_directory(copy.target, client.host().directory(str(folder)))
        elif copy.source.is_dir():
            ctr = ctr.with_directory(copy.target, client.host().directory(str(copy.source)))
        else:
            ctr = ctr.with_file(copy.target, client.host().file(str(copy.source)),
                                permissions=file_mode(copy.executable))
    for name, value in job.env:
        ctr = ctr.with_env_variable(name, value)
    for name, value in sorted(job.secrets.items()):
        ctr = ctr.with_secret_variable(name, client.set_secret(secret_name(job.step, name), value))
    return ctr


def _inline_text(job: StepJob, target: str, content: bytes) -> str:
    """Inline ``content`` is text in the spec; the engine's withNewFile takes a string."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExecutorError(f"step {job.step}: the inline content for {target} is not UTF-8 text",
                            executor=NAME, hint="copy binary content from a file (`source:`)") from e


# ---- running it ----------------------------------------------------------------------------------

async def run_step(client: dagger.Client, job: StepJob, scratch: Path,
                   on_output: OnOutput | None = None, staging: Path | None = None) -> Built | StepFailure:
    """Build ``job`` on the engine behind ``client``; outputs are exported to ``scratch/out``.

    Folders are staged in ``staging`` (default ``scratch/files``): the backend
    passes one whose path is the same on every build of the step, so the host
    directory the engine sees differs only when its files do.
    """
    import dagger
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    ctr = step_container(client, job, staging or scratch / "files")
    for command in job.commands:
        ctr = ctr.with_exec(["sh", "-c", command], expect=dagger.ReturnType.ANY)
        code, stdout, stderr = await _exec_result(ctr, on_output)
        if code != 0:
            return StepFailure(command, code, bounded(stdout), bounded(stderr), elapsed())
    for name in sorted(job.secrets):
        ctr = ctr.without_secret_variable(name)
    for path in job.outputs:
        if not await export_output(ctr, path, scratch / "out"):
            return StepFailure("", 0, "", "", elapsed(), missing_output=path)   # as podman reports it
    ctr = await ctr.sync()           # a step with no commands or outputs is evaluated here, not at publish
    out = scratch / "out"
    return Built(image=await ctr.id(), outputs=read_tree(out) if out.is_dir() else {}, duration_ms=elapsed())


async def _exec_result(ctr: dagger.Container, on_output: OnOutput | None) -> tuple[int, str, str]:
    """The last exec's exit code, stdout and stderr (the output only when it is wanted)."""
    import dagger
    try:
        code = await ctr.exit_code()
        stdout = stderr = ""
        if code != 0 or on_output is not None:
            stdout = await ctr.stdout()
            stderr = await ctr.stderr()
    except dagger.ExecError as e:      # killed by a signal: expect=ANY covers exit codes only
        code, stdout, stderr = e.exit_code, e.stdout, e.stderr
    emit_lines(stdout, on_output)
    emit_lines(stderr, on_output)
    return code, stdout, stderr


async def export_output(ctr: dagger.Container, path: str, scratch: Path) -> bool:
    """Export the folder or file at ``path`` to ``scratch/<path without its leading />``; False if absent."""
    import dagger
    dest = scratch / output_root(path)
    if await ctr.exists(path, expected_type=dagger.ExistsType.DIRECTORY_TYPE):
        dest.mkdir(parents=True, exist_ok=True)
        await ctr.directory(path).export(str(dest))
        return True
    if await ctr.exists(path, expected_type=dagger.ExistsType.REGULAR_TYPE):
        dest.parent.mkdir(parents=True, exist_ok=True)
        await ctr.file(path).export(str(dest))
        return True
    return False


def load_container(client: dagger.Client, container_id: str) -> dagger.Container:
    """The container behind a ``Container.id`` of this session.

    ``Client.load_container_from_id`` selects ``loadContainerFromID``, which the
    v0.21 schema does not list; ``node(id:)`` is in it, and it is what the SDK
    itself sends after every ``sync()``. Its builder is SDK-private, hence pinned 0.21.x.
    """
    import dagger
    return dagger.Container(client._ctx.select_id("Container", container_id))


async def write_archive(ctr: dagger.Container, archive: Path) -> str:
    """Export ``ctr`` as an OCI archive at ``archive`` (atomically) and return its digest."""
    import dagger
    archive.parent.mkdir(parents=True, exist_ok=True)
    part = archive.with_name(f".{archive.name}.{uuid.uuid4().hex}.part")
    try:
        await ctr.export(str(part), forced_compression=dagger.ImageLayerCompression.Gzip)
        digest = archive_digest(part)
        if digest is None:
            raise ExecutorError(f"the Dagger engine wrote no readable OCI archive at {part}", executor=NAME,
                                hint="check the engine's log; the archive needs an index.json")
        os.replace(part, archive)
    finally:
        part.unlink(missing_ok=True)
    return digest


async def push_tags(ctr: dagger.Container, repository: str, step: str) -> str:
    """Publish ``<repository>:<step>`` and ``<repository>:<step>-<short>``; the registry's digest."""
    import dagger
    gzip = dagger.ImageLayerCompression.Gzip
    first = await ctr.publish(f"{repository}:{step}", forced_compression=gzip)
    digest = first.rsplit("@", 1)[-1]
    if not DIGEST.fullmatch(digest):
        raise ExecutorError(f"step {step}: the registry returned no digest for {repository}:{step} ({first})",
                            executor=NAME)
    second_tag = tags(repository, step, digest)[1]
    second = (await ctr.publish(second_tag, forced_compression=gzip)).rsplit("@", 1)[-1]
    if second != digest:
        raise ExecutorError(f"step {step}: pushing {second_tag} gave digest {second}, not {digest}",
                            executor=NAME, hint="the engine re-compressed the layers; push again")
    return digest


async def publish_image(client: dagger.Client, built_image: str, repository: str, step: str, *,
                        push: bool, archive_dir: Path | None) -> Published:
    """Archive (and with ``push``, push) a container built in this session, or a recorded archive."""
    archive = archive_path(archive_dir, step) if archive_dir is not None else None
    if DIGEST.fullmatch(built_image):                 # an image recorded earlier: its archive is the image
        if archive is None or archive_digest(archive) != built_image:
            raise ExecutorError(f"step {step}: the recorded image {built_image} is not in "
                                f"{archive or 'an archive'} any more", executor=NAME,
                                hint="rebuild the step (`--from-step`)")
        image_id = built_image
        ctr = client.container().import_(client.host().file(str(archive)))
    else:
        ctr = load_container(client, built_image)
        image_id = await write_archive(ctr, archive) if archive is not None else ""
    digest = await push_tags(ctr, repository, step) if push else image_id
    return Published(image_id=image_id or digest, digest=digest, tags=tags(repository, step, digest),
                     pushed=push, archive=archive)


async def base_ref(client: dagger.Client, image: str) -> str:
    """The base image as the engine resolved it: ``<name>@sha256:…`` (pulled if needed)."""
    return await client.container().from_(image).image_ref()


# ---- the backend ---------------------------------------------------------------------------------

class DaggerChain:
    """``ChainBackend`` on a Dagger engine (local, or remote via ``_EXPERIMENTAL_DAGGER_RUNNER_HOST``)."""

    name: ClassVar[str] = NAME

    def __init__(self, *, scratch_root: Path | None = None, connect_timeout: float = 10.0) -> None:
        self.scratch_root = scratch_root
        self.connect_timeout = connect_timeout

    def check(self) -> str | None:
        return engine_problem()

    def close(self) -> None:
        close_session()

    def present(self, image_id: str, digest: str, archive: Path | None, tag: str | None = None) -> bool:
        """The engine keeps no images between sessions: a step image exists here as its archive.

        ``tag`` changes nothing: the archive is named after the step, as the tag is,
        so the archive holding ``image_id`` is also what the tag names here.
        """
        return bool(image_id) and archive is not None and archive.is_file() and archive_digest(archive) == image_id

    def base_identity(self, image: str) -> str:
        """The base's digest as the engine pulled it (``sha256:…``); the whole ref if it has none."""
        ref = self._call(f"base image {image}", f"check the image name ({image}) and that the engine "
                         "can reach its registry", base_ref, image)
        return ref.rsplit("@", 1)[-1] if "@" in ref else ref

    def build_step(self, job: StepJob, *, on_output: OnOutput | None = None) -> Built | StepFailure:
        hint = (f"check the parent image ({job.parent.ref}), the files to copy and that the engine can reach "
                "its registry")
        if job.parent.insecure and job.parent.archive is None:
            hint += f"; {INSECURE_HINT}"
        scratch = scratch_dir(self.scratch_root, job.step)
        staging = (self.scratch_root or Path(tempfile.gettempdir())) / f"sqldom-files-{job.step}"
        remove_tree(staging)
        try:
            return self._call(f"step {job.step}", hint, run_step, job, scratch, on_output, staging)
        finally:
            remove_tree(scratch)
            remove_tree(staging)

    def publish(self, built_image: str, repository: str, step: str, *, push: bool, insecure: bool,
                archive_dir: Path | None) -> Published:
        if push and insecure:
            raise ExecutorError(f"step {step}: cannot push to the insecure registry of {repository} "
                                "from Dagger", executor=NAME, hint=INSECURE_HINT)
        if not push and archive_dir is None:
            raise ExecutorError(f"step {step}: Dagger keeps no images; it needs an archive folder or a push",
                                executor=NAME, hint="this is a bug in sqldom")
        hint = (f"check that the engine can push to {repository} (credentials, engine.json registries)"
                if push else "check the archive folder")
        return self._call(f"step {step}: publishing", hint,
                          functools.partial(publish_image, push=push, archive_dir=archive_dir),
                          built_image, repository, step)

    def _call(self, what: str, hint: str, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run ``fn(client, *args)`` on the session's event loop; engine errors become ExecutorError."""
        if (problem := self.check()) is not None:
            raise ExecutorError(f"{what}: no Dagger engine is reachable", executor=NAME, hint=problem)
        session = open_session(self.connect_timeout)
        import dagger
        try:
            return session.portal.call(fn, session.client, *args)
        except dagger.QueryError as e:
            raise ExecutorError(f"{what}: the Dagger engine refused: {_first_line(e)}", executor=NAME,
                                hint=hint) from e
        except dagger.DaggerError as e:
            raise ExecutorError(f"{what}: lost the Dagger engine: {_first_line(e)}", executor=NAME,
                                hint=INSTALL) from e


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
