"""The contract between the workshop chain (``workshop/chain.py``) and the engines that build images.

The chain decides which steps are due, in order, and hands each one to a
backend as a ``StepJob``: FROM which parent, which files to copy in, which env
to set, which commands to run (with which secrets), which paths to export.
A backend builds one immutable image per job and says what it got. It never
touches the database or build/, so each backend is tested on its own (podman
with real containers; Dagger against the engine's schema, offline).

As with command steps, two kinds of failure are kept apart:

- a command that exits non-zero is the user's failure, a value: ``build_step``
  returns ``StepFailure`` with the command, exit code, stdout and stderr;
- the tool's failure (no podman, an image that cannot be pulled, a registry
  that refuses a push) raises ``ExecutorError`` with what to fix.

Secrets travel in ``StepJob.secrets`` (name -> value) and must reach only the
commands' environment: never an image's config, history or layers, never a
file a backend leaves behind. Backends redact nothing; the chain redacts the
values from stdout/stderr before anything is shown or stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from sqldom.executors.base import OnOutput

# Manifest annotations that would otherwise hold the parent's local name and digest, which differ
# between a chain built in one store and a step rebuilt FROM a pulled parent (dagger-notes §7.5).
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


@dataclass(frozen=True)
class Parent:
    """What a step builds FROM.

    ``ref``: an image reference the backend can resolve (the base image, or the
    previous step's tag ``<workshop.image>:<step-id>``). ``digest``: the digest
    recorded for it (``sha256:…``), or "" for a base image not yet known.
    ``archive``: an OCI archive of the previous step (Dagger without a registry),
    else None. ``pushed``: True when ``ref@digest`` can be pulled from a registry.
    """

    ref: str
    digest: str = ""
    archive: Path | None = None
    pushed: bool = False
    stable_name: str = ""          # written to BASE_NAME: the same however the parent was reached
    insecure: bool = False         # the registry holding ``ref`` speaks plain HTTP / self-signed TLS


@dataclass(frozen=True)
class FileCopy:
    """One ``files[]`` entry, resolved: a host file or folder, or inline bytes, to an absolute target.

    What lands in the image is exactly what the step's key covers: a folder
    contributes only ``members`` (the sources sqldom scanned under it: no empty
    folders, dotfiles or editor backups), and every file gets mode 0755 when
    executable, else 0644, whatever else the host's modes say.
    """

    target: str                     # absolute path in the image; a folder source lands *as* this folder
    source: Path | None = None      # host path (file or folder), or None for inline content
    content: bytes | None = None
    members: tuple[tuple[str, bool], ...] | None = None   # folder: (path relative to it, executable) per file
    executable: bool = False        # file source: mode 0755 (else 0644)


def file_mode(executable: bool) -> int:
    return 0o755 if executable else 0o644


def stage_folder(copy: FileCopy, dest: Path) -> Path:
    """A copy of the folder ``copy.source`` at ``dest`` holding exactly its ``members``, modes normalised.

    Backends copy this instead of the folder itself, so an empty folder, an
    ignored file or a mode the key does not record never reaches a layer.
    """
    import os
    import shutil
    assert copy.source is not None and copy.members is not None
    dest.mkdir(parents=True, exist_ok=True)
    for rel, executable in copy.members:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copy.source / rel, target)
        target.chmod(file_mode(executable))
        os.utime(target, (0, 0))      # a fixed mtime: the copy is the same on every build
    return dest


@dataclass(frozen=True)
class StepJob:
    step: str                                   # the step id, for messages and streamed lines
    parent: Parent
    files: tuple[FileCopy, ...] = ()
    env: tuple[tuple[str, str], ...] = ()       # persisted in the image config, in this order
    secrets: Mapping[str, str] = field(default_factory=dict)   # name -> value: the commands' environment only
    commands: tuple[str, ...] = ()              # each run as ``sh -c COMMAND``, in order; the first failure stops
    outputs: tuple[str, ...] = ()               # absolute paths in the image to export after the commands
    network: bool = True                        # False: commands run without a network


@dataclass(frozen=True)
class Built:
    """An image built and committed (not yet tagged with its final names).

    ``image``: what identifies it to the backend in this process (podman: the
    image ID; Dagger: a container ID of the session). ``outputs``: each exported
    file as a path relative to its output's root in build/ (``workshop/dist/a.txt``
    for ``/workshop/dist``) -> bytes.
    """

    image: str
    outputs: Mapping[str, bytes]
    duration_ms: int = 0


@dataclass(frozen=True)
class StepFailure:
    """A command of the step failed; nothing was committed."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int = 0
    missing_output: str | None = None   # set instead when the commands succeeded but an output is absent


@dataclass(frozen=True)
class Published:
    """The step image under its names: the digest recorded is the one a learner would pull."""

    image_id: str          # the backend's durable identity (podman: image ID; Dagger: the archive's digest)
    digest: str            # manifest digest, ``sha256:…``: from the registry, or what a push would give
    tags: tuple[str, ...]  # ``<image>:<step-id>``, ``<image>:<step-id>-<short-digest>``
    pushed: bool
    archive: Path | None = None


@runtime_checkable
class ChainBackend(Protocol):
    name: ClassVar[str]

    def check(self) -> str | None:
        """``None`` when usable here, else one line saying what to install. Cheap."""
        ...

    def base_identity(self, image: str) -> str:
        """The identity of the base image (pulling it when absent); raises ExecutorError if unavailable."""
        ...

    def present(self, image_id: str, digest: str, archive: Path | None, tag: str | None = None) -> bool:
        """Whether a step image recorded earlier still exists where this backend keeps images.

        With ``tag``: and is still reachable under that name (podman: the tag names that
        image ID), so a step whose tag was removed or moved is noticed and re-tagged.
        """
        ...

    def build_step(self, job: StepJob, *, on_output: OnOutput | None = None) -> Built | StepFailure:
        """Build one step image FROM ``job.parent``; reproducible where the backend allows."""
        ...

    def publish(self, built_image: str, repository: str, step: str, *, push: bool, insecure: bool,
                archive_dir: Path | None) -> Published:
        """Give a built (or recorded) image its two tags; push both when ``push``.

        ``archive_dir``: where a backend without a local store (Dagger) writes
        ``<step>.tar`` (var/workshop/); podman ignores it.
        """
        ...

    def close(self) -> None:
        ...


def short_digest(digest: str) -> str:
    """The 12 hex digits of ``sha256:…`` used in the second tag."""
    return digest.split(":", 1)[-1][:12]
