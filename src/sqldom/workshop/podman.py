"""The workshop chain on the local machine: buildah builds, podman's store keeps the images.

One step, after dagger-notes §7.4 (every flag verified on these machines)::

    buildah from --pull=false PARENT                      # base image, or the previous step's tag
    buildah config --annotation base.name=… --annotation base.digest=…   # stable, for reproducible digests
    buildah copy CTR SRC TARGET                           # files[]: host file or folder, inline text
    buildah config --env K=V CTR                          # env: persisted in the image config
    buildah run --network host [-e SECRET=…] CTR -- sh -c CMD      # each command; secrets: this run only
    buildah commit --timestamp 0 --omit-history --identity-label=false CTR   # -> image ID
    podman create IMAGE; podman cp CTR:/out …             # outputs, read from the committed image

``publish`` tags the image ``<repo>:<step>`` and ``<repo>:<step>-<short digest>``.
The digest recorded is the one a learner would pull: the registry's, from
``buildah push --digestfile``, or without a registry the digest of the same
push into an OCI archive (equal to the registry's, §7.5), written to a
temporary file and deleted.

Reproducible: ``--timestamp 0`` also stamps every file in the layer,
``--omit-history`` keeps the parent's name out of the config, and the base
annotations are set to the parent's step tag and recorded digest, so an
unchanged step rebuilt (even FROM a pulled parent) gets the same digest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from sqldom.executors.base import ExecutorError, OnOutput
from sqldom.executors.podman import (
    COMMAND_TIMEOUT,
    INSTALL,
    PULL_TIMEOUT,
    RUNTIMES,
    Storage,
    _last_line,
    _run,
)
from sqldom.executors.streams import StreamReader
from sqldom.workshop.backend import (
    BASE_DIGEST,
    BASE_NAME,
    Built,
    FileCopy,
    Published,
    StepFailure,
    StepJob,
    file_mode,
    short_digest,
    stage_folder,
)

NAME = "podman"
PUSH_TIMEOUT = 900.0
COMMIT = ["--quiet", "--rm", "--timestamp", "0", "--omit-history", "--identity-label=false"]


def _full_id(raw: str) -> str:
    raw = raw.strip()
    return raw if raw.startswith("sha256:") else f"sha256:{raw}"


class PodmanChain:
    name: ClassVar[str] = NAME

    def __init__(self, *, storage_root: Path | None = None, scratch_root: Path | None = None) -> None:
        self.storage = Storage(storage_root)
        self.scratch_root = scratch_root
        self._tags: dict[str, set[str]] | None = None     # image ID -> its tags, listed once

    # ---- the protocol ---------------------------------------------------------------------

    def check(self) -> str | None:
        if any(shutil.which(tool) is None for tool in ("buildah", "podman")):
            return INSTALL
        if not any(shutil.which(r) for r in RUNTIMES):
            return "install an OCI runtime for buildah (Debian: apt-get install runc)"
        return None

    def close(self) -> None:
        pass

    def base_identity(self, image: str) -> str:
        found = self._image_id(image)
        if found is None:
            proc = _run([*self.storage.podman(), "pull", "--quiet", image], timeout=PULL_TIMEOUT)
            if proc.returncode != 0:
                raise ExecutorError(f"base image {image} is not in podman's store and cannot be pulled: "
                                    f"{_last_line(proc.stderr)}", executor=NAME,
                                    hint="build or pull it first, or fix base.image (a fully qualified name "
                                         "like docker.io/library/alpine:3.20 needs no search registries)")
            found = self._image_id(image)
            if found is None:
                raise ExecutorError(f"base image {image} was pulled but cannot be inspected", executor=NAME)
        return found

    def present(self, image_id: str, digest: str, archive: Path | None, tag: str | None = None) -> bool:
        """The image is in the store (and, given ``tag``, that tag still names it). One listing per build."""
        if self._tags is None:
            proc = _run([*self.storage.podman(), "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
                        timeout=COMMAND_TIMEOUT)
            if proc.returncode != 0:
                raise ExecutorError(f"podman cannot list its images: {_last_line(proc.stderr)}", executor=NAME)
            self._tags = {}
            for line in proc.stdout.splitlines():
                ident, _, ref = line.strip().partition(" ")
                if ident:
                    self._tags.setdefault(_full_id(ident), set()).add(ref)
        refs = self._tags.get(_full_id(image_id))
        return refs is not None and (tag is None or tag in refs)

    def build_step(self, job: StepJob, *, on_output: OnOutput | None = None) -> Built | StepFailure:
        started = time.monotonic()
        buildah = self.storage.buildah()
        from_cmd = [*buildah, "from", "--quiet", "--pull=false"]
        if job.parent.insecure:
            from_cmd.append("--tls-verify=false")
        ref = f"{job.parent.ref}@{job.parent.digest}" if job.parent.pushed and job.parent.digest else job.parent.ref
        proc = _run([*from_cmd, ref], timeout=PULL_TIMEOUT)
        if proc.returncode != 0 and ref != job.parent.ref:
            proc = _run([*from_cmd, job.parent.ref], timeout=PULL_TIMEOUT)
        if proc.returncode != 0:
            raise ExecutorError(f"step {job.step}: cannot start FROM {job.parent.ref}: {_last_line(proc.stderr)}",
                                executor=NAME)
        ctr = proc.stdout.strip().splitlines()[-1]
        scratch = Path(tempfile.mkdtemp(prefix=f"sqldom-{job.step[:40]}-", dir=self._scratch()))
        try:
            self._buildah([*buildah, "config", "--annotation", f"{BASE_NAME}={job.parent.stable_name or job.parent.ref}",
                           "--annotation", f"{BASE_DIGEST}={job.parent.digest}", ctr], job, "annotate")
            for i, f in enumerate(job.files):
                self._copy(ctr, f, scratch / f"inline-{i}", job)
            if job.env:
                env_args = [a for k, v in job.env for a in ("--env", f"{k}={v}")]
                self._buildah([*buildah, "config", *env_args, ctr], job, "set env")
            for command in job.commands:
                failure = self._run_command(ctr, command, job, on_output)
                if failure is not None:
                    return failure
            proc = _run([*buildah, "commit", *COMMIT, ctr], timeout=COMMAND_TIMEOUT)
            if proc.returncode != 0:
                raise ExecutorError(f"step {job.step}: buildah commit failed: {_last_line(proc.stderr)}",
                                    executor=NAME)
            ctr = ""
            image = _full_id(proc.stdout.strip().splitlines()[-1])
            outputs, missing = self._export(image, job.outputs, scratch / "out")
            ms = int((time.monotonic() - started) * 1000)
            if missing is not None:
                _run([*buildah, "rmi", image], timeout=COMMAND_TIMEOUT)
                return StepFailure(command="", exit_code=0, stdout="", stderr="", duration_ms=ms,
                                   missing_output=missing)
            return Built(image=image, outputs=outputs, duration_ms=ms)
        finally:
            if ctr:
                _run([*buildah, "rm", ctr], timeout=COMMAND_TIMEOUT)
            shutil.rmtree(scratch, ignore_errors=True)

    def publish(self, built_image: str, repository: str, step: str, *, push: bool, insecure: bool,
                archive_dir: Path | None) -> Published:
        image = _full_id(built_image)
        first = f"{repository}:{step}"
        digest = self._digest(image, first, push=push, insecure=insecure)
        second = f"{first}-{short_digest(digest)}"
        proc = _run([*self.storage.buildah(), "tag", image, first, second], timeout=COMMAND_TIMEOUT)
        if proc.returncode != 0:
            raise ExecutorError(f"cannot tag {image} as {first}: {_last_line(proc.stderr)}", executor=NAME,
                                hint=f"is {repository} a valid image repository name?")
        if push:
            self._push(image, second, insecure=insecure)
        if self._tags is not None:
            self._tags.setdefault(image, set()).update((first, second))
        return Published(image_id=image, digest=digest, tags=(first, second), pushed=push)

    # ---- helpers ----------------------------------------------------------------------------

    def _scratch(self) -> str | None:
        if self.scratch_root is None:
            return None
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        return str(self.scratch_root)

    def _image_id(self, image: str) -> str | None:
        proc = _run([*self.storage.podman(), "image", "inspect", "--format", "{{.Id}}", image],
                    timeout=COMMAND_TIMEOUT)
        return _full_id(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None

    def _buildah(self, cmd: list[str], job: StepJob, what: str) -> None:
        proc = _run(cmd, timeout=COMMAND_TIMEOUT)
        if proc.returncode != 0:
            raise ExecutorError(f"step {job.step}: buildah could not {what}: {_last_line(proc.stderr)}",
                                executor=NAME)

    def _copy(self, ctr: str, f: FileCopy, staging: Path, job: StepJob) -> None:
        cmd = [*self.storage.buildah(), "copy", "--quiet"]
        if f.members is not None:
            src = f"{stage_folder(f, staging)}/"       # the folder's contents land as the target folder
        elif f.source is not None:
            cmd += ["--chmod", f"{file_mode(f.executable):04o}"]
            src = str(f.source)
        else:
            staging.write_bytes(f.content or b"")
            cmd += ["--chmod", "0644"]
            src = str(staging)
        self._buildah([*cmd, ctr, src, f.target], job, f"copy {f.source or 'inline content'} to {f.target}")

    def _run_command(self, ctr: str, command: str, job: StepJob, on_output: OnOutput | None) -> StepFailure | None:
        cmd = [*self.storage.buildah(), "run"]
        if shutil.which("runc"):
            cmd += ["--runtime", "runc"]    # crun fails on cgroup v1/v2 hybrid hosts (dagger-notes §7.2)
        cmd += ["--network", "host" if job.network else "none"]
        for name, value in job.secrets.items():
            cmd += ["--env", f"{name}={value}"]
        cmd += [ctr, "--", "sh", "-c", command]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        assert proc.stdout is not None and proc.stderr is not None
        reader = StreamReader(proc.stdout, proc.stderr, on_output)
        code = proc.wait()
        stdout, stderr = reader.join()
        if code == 0:
            return None
        # buildah appends its own line about the runtime's exit status; the user's output is what matters
        stderr = "\n".join(ln for ln in stderr.splitlines() if not ln.startswith("Error: while running runtime:"))
        return StepFailure(command=command, exit_code=code if code > 0 else 128 - code, stdout=stdout,
                           stderr=stderr + ("\n" if stderr else ""),
                           duration_ms=int((time.monotonic() - started) * 1000))

    def _export(self, image: str, outputs: tuple[str, ...], dest: Path) -> tuple[dict[str, bytes], str | None]:
        """Copy each output path out of the committed image; (files, the first missing output)."""
        if not outputs:
            return {}, None
        podman = self.storage.podman()
        name = f"sqldom-export-{uuid.uuid4().hex[:12]}"
        proc = _run([*podman, "create", "--name", name, "--pull=never", image, "true"], timeout=COMMAND_TIMEOUT)
        if proc.returncode != 0:
            raise ExecutorError(f"podman cannot create a container to export outputs: {_last_line(proc.stderr)}",
                                executor=NAME)
        try:
            files: dict[str, bytes] = {}
            for out in outputs:
                rel = out.lstrip("/")
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                proc = _run([*podman, "cp", f"{name}:{out}", str(target)], timeout=COMMAND_TIMEOUT)
                if proc.returncode != 0:
                    text = proc.stderr.lower()
                    if "no such file" in text or "could not be found" in text or "not exist" in text:
                        return {}, out
                    raise ExecutorError(f"podman cannot copy {out} out of the image: {_last_line(proc.stderr)}",
                                        executor=NAME)
                files.update(_read_tree(target, rel))
            return files, None
        finally:
            _run([*podman, "rm", "--force", name], timeout=COMMAND_TIMEOUT)

    def _digest(self, image: str, ref: str, *, push: bool, insecure: bool) -> str:
        with tempfile.TemporaryDirectory(prefix="sqldom-digest-", dir=self._scratch()) as tmp:
            digestfile = Path(tmp) / "digest"
            if push:
                self._push(image, ref, insecure=insecure, digestfile=digestfile)
            else:
                dest = f"oci-archive:{Path(tmp) / 'image.tar'}:{ref}"
                proc = _run([*self.storage.buildah(), "push", "--quiet", "--digestfile", str(digestfile), image, dest],
                            timeout=PUSH_TIMEOUT)
                if proc.returncode != 0:
                    raise ExecutorError(f"cannot compute the digest of {ref}: {_last_line(proc.stderr)}",
                                        executor=NAME)
            return digestfile.read_text().strip()

    def _push(self, image: str, ref: str, *, insecure: bool, digestfile: Path | None = None) -> None:
        cmd = [*self.storage.buildah(), "push", "--quiet", "--retry", "1"]
        if insecure:
            cmd.append("--tls-verify=false")
        if digestfile is not None:
            cmd += ["--digestfile", str(digestfile)]
        proc = _run([*cmd, image, f"docker://{ref}"], timeout=PUSH_TIMEOUT)
        if proc.returncode != 0:
            hint = ("set workshop.insecure: true for a plain-HTTP registry" if "HTTP response to HTTPS" in proc.stderr
                    else "check that the registry is reachable and that you are logged in (podman login)")
            raise ExecutorError(f"cannot push {ref}: {_last_line(proc.stderr)}", executor=NAME, hint=hint)


def _read_tree(path: Path, rel: str) -> Mapping[str, bytes]:
    """Regular files under ``path`` (a file or a folder), keyed by their path under ``rel``."""
    if path.is_file() and not path.is_symlink():
        return {rel: path.read_bytes()}
    out: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(path):
        for n in sorted(names):
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                out[f"{rel}/{p.relative_to(path).as_posix()}"] = p.read_bytes()
    return out
