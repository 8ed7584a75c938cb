"""``podman``: run a command rule in a container, with buildah/podman from the distribution.

One job is one throw-away container::

    podman create --name sqldom-<step>-<rand> --network none --workdir /sqldom/work
                  --entrypoint sh [--env K=V ...] [flags this machine needs] IMAGE -c CMD
    podman cp <scratch>/sqldom NAME:/          # exactly the declared inputs
    podman start --attach NAME                 # streamed; exit code = the command's
    podman cp NAME:/sqldom/work/<output> ...   # each declared output
    podman rm --force --time 0 NAME            # always; also how a timeout kills it

Copies, not bind mounts: they work rootless and as root, need no SELinux
relabelling, and the inputs get the image user's ownership.

**Machines differ**, and we detect rather than hard-code: the first container
run in a process tries podman's defaults, then the other installed OCI runtime
(``crun`` fails on cgroup v1/v2 hybrid hosts, ``runc`` works), then ulimits
lowered to what this process may grant (root without CAP_SYS_RESOURCE cannot
raise rlimits to podman's defaults). The first combination that runs a
container is kept for the rest of the process (``probe``).

Images come from podman's store. ``pull="missing"`` (the default) pulls an
image that is absent; ``pull="never"`` refuses, which tests use so that nothing
ever reaches a registry. ``build_busybox_image`` makes a tiny base image from
scratch with the host's static busybox, for tests and examples.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sqldom.executors.base import TIMEOUT_EXIT_CODE, CommandJob, CommandResult, ExecutorError, OnOutput
from sqldom.executors.local import kill_group, wait_exited
from sqldom.executors.streams import StreamReader
from sqldom.executors.workdir import collect_outputs, remove_tree, scratch_dir, stage_inputs

NAME = "podman"
WORKDIR = "/sqldom/work"
INSTALL = "install buildah and podman (Debian: apt-get install buildah podman runc)"
BUSYBOX_TAG = "localhost/sqldom-test/busybox:1"
RUNTIMES = ("crun", "runc")
COMMAND_TIMEOUT = 120.0          # podman's own bookkeeping commands (create, cp, rm, inspect)
PULL_TIMEOUT = 900.0


@dataclass(frozen=True)
class Storage:
    """Where images and containers live. ``root`` None: podman's default store.

    Tests pass a private ``root`` so that nothing touches /var/lib/containers.
    """

    root: Path | None = None

    def args(self) -> list[str]:
        if self.root is None:
            return []
        # no --storage-driver: containers/storage picks one that works on this filesystem
        # (overlay on ext4/xfs, vfs where overlay cannot stack, e.g. inside another container)
        return ["--root", str(self.root / "storage"), "--runroot", str(self.root / "run")]

    def podman(self) -> list[str]:
        return ["podman", "--log-level=error", *self.args()]

    def buildah(self) -> list[str]:
        return ["buildah", *self.args()]


@dataclass(frozen=True)
class Setup:
    """What running a container needs on this machine, found by ``probe``."""

    runtime: str | None = None                 # None: podman's configured default
    ulimits: tuple[str, ...] = ()              # e.g. ("nofile=20000:20000", "nproc=32768:32768")

    def flags(self) -> list[str]:
        out = ["--runtime", self.runtime] if self.runtime else []
        for u in self.ulimits:
            out += ["--ulimit", u]
        return out

    def describe(self) -> str:
        parts = [f"runtime {self.runtime}" if self.runtime else "default runtime"]
        if self.ulimits:
            parts.append("ulimits " + " ".join(self.ulimits))
        return f"podman: {', '.join(parts)}"


def lowered_ulimits(hard_nofile: int | None = None, hard_nproc: int | None = None,
                    pid_max: int | None = None) -> tuple[str, ...]:
    """Ulimits this process can grant a container: its own hard limits.

    nproc is also capped by ``kernel.pid_max``: podman lowers its own limit to that
    before starting conmon, so asking for more fails even below our hard limit.
    """
    if hard_nofile is None:
        hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard_nproc is None:
        hard_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if pid_max is None:
        try:
            pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        except (OSError, ValueError):
            pid_max = 32768
    limits = []
    if hard_nofile != resource.RLIM_INFINITY:
        limits.append(f"nofile={hard_nofile}:{hard_nofile}")
    nproc = pid_max if hard_nproc == resource.RLIM_INFINITY else min(hard_nproc, pid_max)
    limits.append(f"nproc={nproc}:{nproc}")
    return tuple(limits)


def candidate_setups(installed: Sequence[str] | None = None) -> list[Setup]:
    """What to try, fewest flags first."""
    if installed is None:
        installed = [r for r in RUNTIMES if shutil.which(r)]
    runtimes: list[str | None] = [None, *installed]
    lowered = lowered_ulimits()
    return [Setup(rt, ul) for ul in ((), lowered) for rt in runtimes]


@dataclass(frozen=True)
class Attempt:
    setup: Setup
    error: str            # empty when it worked


_probe_lock = threading.Lock()
_probed: dict[tuple[str, ...], Setup] = {}
probe_log: list[Attempt] = []     # every attempt this process made, for tests and error messages


def probe(storage: Storage, image: str) -> Setup:
    """The first ``candidate_setups`` entry that runs a container here; cached per process."""
    key = tuple(storage.podman())
    with _probe_lock:
        if key in _probed:
            return _probed[key]
        tried: list[Attempt] = []
        for setup in candidate_setups():
            cmd = [*storage.podman(), "run", "--rm", "--pull=never", "--network", "none", *setup.flags(),
                   "--entrypoint", "sh", image, "-c", "exit 0"]
            proc = _run(cmd, timeout=COMMAND_TIMEOUT)
            attempt = Attempt(setup, "" if proc.returncode == 0 else _last_line(proc.stderr))
            tried.append(attempt)
            probe_log.append(attempt)
            if proc.returncode == 0:
                _probed[key] = setup
                return setup
        tries = "; ".join(f"{a.setup.describe()}: {a.error}" for a in tried)
        raise ExecutorError(f"podman could not start a container from {image} on this machine ({tries})",
                            executor=NAME,
                            hint="check that `podman run --rm IMAGE sh -c true` works here; the image "
                                 "needs /bin/sh")


def forget_probe() -> None:
    """Forget what ``probe`` found (tests)."""
    with _probe_lock:
        _probed.clear()


def _run(cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise ExecutorError(f"{cmd[0]} is not installed", executor=NAME, hint=INSTALL) from e
    except subprocess.TimeoutExpired as e:
        raise ExecutorError(f"{' '.join(cmd[:3])} … did not finish within {timeout:.0f}s", executor=NAME) from e


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no message)"


def image_exists(image: str, storage: Storage = Storage()) -> bool:
    return _run([*storage.podman(), "image", "exists", image], timeout=COMMAND_TIMEOUT).returncode == 0


def image_id(image: str, storage: Storage = Storage()) -> str | None:
    """The ID of ``image`` in the store, None when it is not there (or podman cannot say)."""
    try:
        done = _run([*storage.podman(), "image", "inspect", "--format", "{{.Id}}", image], timeout=COMMAND_TIMEOUT)
    except ExecutorError:
        return None
    out = done.stdout.strip()
    return f"sha256:{out}" if done.returncode == 0 and out and not out.startswith("sha256:") else (out or None)


class PodmanExecutor:
    name: ClassVar[str] = NAME
    live_output: ClassVar[bool] = True

    def __init__(self, *, storage_root: Path | None = None, pull: str = "missing",
                 scratch_root: Path | None = None) -> None:
        if pull not in ("missing", "never"):
            raise ValueError(f"pull must be 'missing' or 'never', not {pull!r}")
        self.storage = Storage(storage_root)
        self.pull = pull
        self.scratch_root = scratch_root
        self._present: set[str] = set()         # images seen in the store: one `image exists` each

    def check(self) -> str | None:
        missing = [tool for tool in ("buildah", "podman") if shutil.which(tool) is None]
        if missing:
            return INSTALL
        if not any(shutil.which(r) for r in RUNTIMES):
            return "install an OCI runtime for podman (Debian: apt-get install runc)"
        return None

    def close(self) -> None:
        pass

    def image_identity(self, image: str) -> str | None:
        """What a step records of its image: the image ID, so a re-tagged image reruns its steps."""
        return image_id(image, self.storage)

    def ensure_image(self, image: str) -> None:
        if image in self._present or image_exists(image, self.storage):
            self._present.add(image)
            return
        if self.pull == "never":
            raise ExecutorError(f"image {image} is not in podman's local store", executor=NAME,
                                hint=f"build or pull it first (podman pull {image}); this executor does not pull")
        proc = _run([*self.storage.podman(), "pull", "--quiet", image], timeout=PULL_TIMEOUT)
        if proc.returncode != 0:
            raise ExecutorError(f"podman cannot pull image {image}: {_last_line(proc.stderr)}", executor=NAME,
                                hint="check the image name (a fully qualified one like docker.io/library/"
                                     "alpine:3.20 needs no search registries) and that the registry is reachable")
        self._present.add(image)

    def run(self, job: CommandJob, *, on_output: OnOutput | None = None) -> CommandResult:
        if not job.image:
            raise ExecutorError(f"step {job.step}: the podman executor needs an image", executor=NAME,
                                hint="set `image:` on the rule, or use `executor: local`")
        command = job.rendered()
        if (problem := self.check()) is not None:
            raise ExecutorError(f"step {job.step}: podman is not usable here", executor=NAME, hint=problem)
        self.ensure_image(job.image)
        setup = probe(self.storage, job.image)
        scratch = scratch_dir(self.scratch_root, job.step)
        name = f"sqldom-{scratch.name.removeprefix('sqldom-')[:40]}-{uuid.uuid4().hex[:8]}".lower()
        podman = self.storage.podman()
        try:
            staged = scratch / "in" / WORKDIR.strip("/")
            staged.mkdir(parents=True)
            stage_inputs(job, staged)
            create = [*podman, "create", "--name", name, "--pull=never", "--workdir", WORKDIR,
                      "--entrypoint", "sh", *setup.flags()]
            if not job.network:
                create += ["--network", "none"]
            for k, v in job.env.items():
                create += ["--env", f"{k}={v}"]
            self._podman(create + [job.image, "-c", command], f"create a container from {job.image}")
            top = WORKDIR.strip("/").split("/")[0]
            self._podman([*podman, "cp", str(scratch / "in" / top), f"{name}:/"], "copy the inputs in")
            code, timed_out, stdout, stderr, duration_ms = self._start(name, job, on_output)
            if not timed_out and code in (125, 126, 127):
                self._check_started(name, stderr)
            outputs: dict[str, bytes] = {}
            missing: tuple[str, ...] = ()
            if code == 0 and not timed_out:
                outputs, missing = self._copy_out(name, job, scratch / "out")
            return CommandResult(executor=NAME, command=command, exit_code=code, stdout=stdout, stderr=stderr,
                                 outputs=outputs, missing_outputs=missing, timed_out=timed_out,
                                 duration_ms=duration_ms, detail=setup.describe())
        finally:
            _run([*podman, "rm", "--force", "--time", "0", name], timeout=COMMAND_TIMEOUT)
            remove_tree(scratch)

    def _podman(self, cmd: list[str], what: str) -> None:
        proc = _run(cmd, timeout=COMMAND_TIMEOUT)
        if proc.returncode != 0:
            raise ExecutorError(f"podman could not {what}: {_last_line(proc.stderr)}", executor=NAME)

    def _start(self, name: str, job: CommandJob,
               on_output: OnOutput | None) -> tuple[int, bool, str, str, int]:
        started = time.monotonic()
        proc = subprocess.Popen([*self.storage.podman(), "start", "--attach", name], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        assert proc.stdout is not None and proc.stderr is not None
        reader = StreamReader(proc.stdout, proc.stderr, on_output)
        timed_out = False
        try:
            timed_out = not wait_exited(proc, job.timeout)
        finally:
            if timed_out or proc.poll() is None:
                # kill the container itself, not just our client: `podman start` going away
                # would leave the command running
                _run([*self.storage.podman(), "kill", "--signal", "KILL", name], timeout=COMMAND_TIMEOUT)
                if not wait_exited(proc, 10):
                    kill_group(proc.pid)
            code = proc.wait()
        duration_ms = int((time.monotonic() - started) * 1000)
        stdout, stderr = reader.join()
        if timed_out:
            code = TIMEOUT_EXIT_CODE
        elif code < 0:
            code = 128 - code
        return code, timed_out, stdout, stderr, duration_ms

    def _check_started(self, name: str, stderr: str) -> None:
        """125-127 are also podman's own codes: a container that never ran is the tool's failure."""
        proc = _run([*self.storage.podman(), "inspect", "--format", "{{.State.Status}}", name],
                    timeout=COMMAND_TIMEOUT)
        if proc.returncode == 0 and proc.stdout.strip() == "created":
            raise ExecutorError(f"podman could not start the container: {_last_line(stderr)}", executor=NAME,
                                hint="the image needs a shell at `sh`")

    def _copy_out(self, name: str, job: CommandJob, dest: Path) -> tuple[dict[str, bytes], tuple[str, ...]]:
        dest.mkdir(parents=True)
        for rel in job.outputs:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            proc = _run([*self.storage.podman(), "cp", f"{name}:{WORKDIR}/{rel}", str(target)],
                        timeout=COMMAND_TIMEOUT)
            if proc.returncode != 0 and "could not be found" not in proc.stderr \
                    and "no such file" not in proc.stderr.lower():
                raise ExecutorError(f"podman could not copy {rel} out of the container: "
                                    f"{_last_line(proc.stderr)}", executor=NAME)
        return collect_outputs(job, dest)


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable with no program interpreter (statically linked)."""
    import struct
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF":
                return False
            is64, little = head[4] == 2, head[5] == 1
            end = "<" if little else ">"
            if is64:
                phoff, = struct.unpack_from(end + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
            else:
                phoff, = struct.unpack_from(end + "I", head, 28)
                phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except (OSError, struct.error):
        return False
    for i in range(phnum):
        p_type, = struct.unpack_from(end + "I", table, i * phentsize)
        if p_type == 3:          # PT_INTERP: needs a dynamic loader
            return False
    return True


def build_busybox_image(tag: str = BUSYBOX_TAG, *, storage_root: Path | None = None,
                        busybox: Path | None = None, force: bool = False) -> str:
    """Build ``tag`` FROM scratch with the host's static busybox; return the image ID.

    No registry is involved. The result is reproducible (``--timestamp 0``,
    no history, no buildah version label): the same busybox gives the same image
    ID on every machine. An existing ``tag`` is kept unless ``force``.
    """
    storage = Storage(storage_root)
    if not force and image_exists(tag, storage):
        return _run([*storage.podman(), "image", "inspect", "--format", "{{.Id}}", tag],
                    timeout=COMMAND_TIMEOUT).stdout.strip()
    found = busybox or (Path(p) if (p := shutil.which("busybox")) else None)
    if found is None or not is_static_elf(found):
        raise ExecutorError("a statically linked busybox is needed to build the base image", executor=NAME,
                            hint="install it (Debian: apt-get install busybox-static)")
    with tempfile.TemporaryDirectory(prefix="sqldom-image-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        for d in ("bin", "etc", "tmp", "root"):
            (rootfs / d).mkdir(parents=True)
        os.chmod(rootfs / "tmp", 0o1777)
        shutil.copyfile(found, rootfs / "bin" / "busybox")
        os.chmod(rootfs / "bin" / "busybox", 0o755)
        applets = subprocess.run([str(found), "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox" and "/" not in applet:
                (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (rootfs / "etc" / "group").write_text("root:x:0:\n")
        buildah = storage.buildah()
        proc = _run([*buildah, "from", "--quiet", "scratch"], timeout=COMMAND_TIMEOUT)
        if proc.returncode != 0:
            raise ExecutorError(f"buildah from scratch failed: {_last_line(proc.stderr)}", executor=NAME)
        ctr = proc.stdout.strip()
        try:
            for cmd in ([*buildah, "copy", "--quiet", ctr, f"{rootfs}/", "/"],
                        [*buildah, "config", "--env", "PATH=/bin", "--cmd", "/bin/sh", "--workingdir", "/",
                         ctr],
                        [*buildah, "commit", "--quiet", "--rm", "--timestamp", "0", "--omit-history",
                         "--identity-label=false", ctr, tag]):
                proc = _run(cmd, timeout=COMMAND_TIMEOUT)
                if proc.returncode != 0:
                    raise ExecutorError(f"building {tag} failed at `buildah {cmd[len(buildah)]}`: "
                                        f"{_last_line(proc.stderr)}", executor=NAME)
            ctr = ""
            return proc.stdout.strip()
        finally:
            if ctr:
                _run([*buildah, "rm", ctr], timeout=COMMAND_TIMEOUT)

