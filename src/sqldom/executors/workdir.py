"""A job's working directory on the host: inputs in, outputs out.

Shared by ``local`` (the command runs in it) and ``podman`` (it is copied into
the container and the outputs are copied back into it).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from sqldom.executors.base import CommandJob, ExecutorError

INPUT_MODE = 0o644   # inputs are plain files: their bytes are what the step records, not their mode


def scratch_dir(parent: Path | None, step: str) -> Path:
    """A fresh private directory; ``parent`` None means the system's temp folder."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in step)[:40]
    return Path(tempfile.mkdtemp(prefix=f"sqldom-{slug}-", dir=parent))


def stage_inputs(job: CommandJob, workdir: Path) -> None:
    """Write exactly the declared inputs (and the outputs' parent folders) under ``workdir``."""
    for rel, data in job.inputs.items():
        dest = workdir / rel
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                shutil.copyfile(data, dest)       # streamed, never whole in memory
            else:
                dest.write_bytes(data)
            os.chmod(dest, INPUT_MODE)
        except OSError as e:                      # a source that vanished, or 'a' and 'a/b' both inputs
            raise ExecutorError(f"step {job.step}: cannot place input {rel} in the working directory: "
                                f"{e.strerror or e}") from e
    for rel in job.output_dirs():
        try:
            (workdir / rel).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ExecutorError(f"step {job.step}: cannot make folder {rel} for an output: "
                                f"{e.strerror or e}") from e


def collect_outputs(job: CommandJob, workdir: Path) -> tuple[dict[str, bytes], tuple[str, ...]]:
    """Read the declared outputs back: (found, missing).

    Only regular files count. A symlink is followed only while it stays inside
    ``workdir``: a link out to the host reads something the step never recorded.
    """
    found: dict[str, bytes] = {}
    missing: list[str] = []
    root = workdir.resolve()
    for rel in job.outputs:
        try:
            real = (workdir / rel).resolve(strict=True)
            real.relative_to(root)
            if not stat.S_ISREG(real.stat().st_mode):
                raise ValueError(rel)
            found[rel] = real.read_bytes()
        except (OSError, ValueError, RuntimeError):
            missing.append(rel)
    return found, tuple(missing)


def remove_tree(path: Path) -> None:
    """Remove a scratch tree even if the command made folders in it read-only."""
    try:
        shutil.rmtree(path)
        return
    except OSError:
        pass
    for root, dirs, _files in os.walk(path):     # top-down: fix each folder before entering it
        for d in [root, *(os.path.join(root, d) for d in dirs)]:
            if not os.path.islink(d):            # never chmod through a link to somewhere else
                try:
                    os.chmod(d, 0o700)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)
