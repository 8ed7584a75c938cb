"""The measured tools (sqldom and the references ninja and Hugo) and how one build is timed.

Every build is a fresh subprocess timed from outside (wall clock, interpreter start included) and
reaped with ``os.wait4``, whose rusage gives the peak RSS of the process tree: the same number
``/usr/bin/time -v`` prints as "Maximum resident set size" (GNU time reads it from wait4 too).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.corpus import copy_tree, log

REPO = Path(__file__).resolve().parent.parent


class BuildFailed(RuntimeError):
    pass


@dataclass
class Run:
    seconds: float
    maxrss_mib: float
    code: int
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0     # user + system time of the process tree: less sensitive to a busy machine
    tree_pss_mib: float = 0.0    # peak of the summed PSS of the process and its descendants (sampled)

    def summary(self) -> dict[str, Any] | None:
        """sqldom's final JSON line (``--json``): built, restored, unchanged, ..., seconds."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "summary":
                    return event
        return None


def run_measured(argv: list[str], cwd: Path | None = None, timeout: float | None = None) -> Run:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        sampler = TreeMemory(proc.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            sampler.stop()
            if timer:
                timer.cancel()
        seconds = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        return Run(seconds, usage.ru_maxrss / 1024, code,   # ru_maxrss is in KiB on Linux
                   _tail(out), _tail(err), usage.ru_utime + usage.ru_stime, sampler.peak_kib / 1024)


class TreeMemory(threading.Thread):
    """Samples the summed PSS of a process and its descendants (Linux /proc), every ``interval`` seconds.

    wait4's ru_maxrss is the peak of the largest single process: with forked workers
    (sqldom -j, ninja's children) the tree as a whole can hold more. PSS splits pages
    shared copy-on-write between the processes, so the sum counts each page once.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in _tree(self.pid)))
            self._done.wait(self.interval)


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tail(f: IO[bytes], limit: int = 1 << 16) -> str:
    """The last ``limit`` bytes of a captured stream: the summary line and any error are at the end."""
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - limit))
    return f.read().decode("utf-8", "replace")


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


# ---- finding or installing the references --------------------------------------------------------

APT_PACKAGES = {"ninja": "ninja-build", "hugo": "hugo"}


def ensure_references(names: list[str], install: bool) -> dict[str, str | None]:
    """Map each reference to its executable, or None after printing why it is skipped.

    Missing ones are installed with ``apt-get install -y ninja-build hugo`` when allowed and possible
    (root, apt-get present); any failure is reported, never raised.
    """
    found: dict[str, str | None] = {n: shutil.which(n) for n in names}
    missing = [n for n in names if not found[n]]
    if missing and install:
        pkgs = [APT_PACKAGES[n] for n in missing]
        why = None
        if not shutil.which("apt-get"):
            why = "apt-get is not available on this machine"
        elif os.geteuid() != 0:
            why = f"not root; install them with: sudo apt-get install -y {' '.join(pkgs)}"
        else:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            cmd = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", *pkgs]
            log(f"references: {' '.join(cmd)}")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:       # maybe the package lists are missing or stale
                log("references: apt-get install failed; running apt-get update and retrying")
                subprocess.run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"],
                               capture_output=True, text=True, env=env)
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                why = f"apt-get install {' '.join(pkgs)} failed (exit {proc.returncode}): {tail}"
        if why:
            log(f"references: {why}")
        found.update({n: shutil.which(n) for n in missing})
    for n in names:
        if not found[n]:
            log(f"references: {n} not found{'' if install else ' (--no-install)'}; skipping {n}")
    return found


# ---- deleting between runs ----------------------------------------------------------------------

class Trash:
    """Where the bench puts the trees it would delete between timed builds; emptied only when nothing is timed.

    Why not delete them: ext4 without a journal (this machine's root file system) will not
    reuse an inode freed less than 30 s ago, and skipping each one costs a read of the
    inode table (``recently_deleted`` in fs/ext4/ialloc.c). Creating 10,000 files just after
    deleting 10,000 then cost ~0.7 ms of kernel time per file instead of ~0.1 ms here, for
    every tool: the cold builds measured the bench's own clean-up. Moving a tree aside
    frees nothing, so a timed build starts as on a machine that deleted nothing lately.
    """

    QUIET = 31.0   # seconds after emptying before a timed build (the kernel's window is 30 s)

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.emptied_at = float("-inf")

    def discard(self, path: Path) -> None:
        """Take ``path`` out of the way without freeing its inodes (deleted if it cannot be moved)."""
        if not path.exists() and not path.is_symlink():
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            os.rename(path, Path(tempfile.mkdtemp(dir=self.folder)) / path.name)
        except OSError:   # another file system: delete, and wait out the window before the next timed build
            shutil.rmtree(path, ignore_errors=True)
            self.emptied_at = time.monotonic()

    def empty(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
            self.emptied_at = time.monotonic()

    def settle(self) -> None:
        """Before a timed build that creates files: wait until nothing was freed in the last ``QUIET`` seconds.

        The bench runs nothing while it waits, so the CPU the machine used meanwhile was other
        processes' (``IDLE_WAITS``).
        """
        wait = self.emptied_at + self.QUIET - time.monotonic()
        if wait > 0:
            log(f"  (waiting {wait:.0f} s: inodes freed less than 30 s ago would slow the next build's file creation)")
            idle(wait)


# The share of the machine's CPU used by others while the bench waited (0 to 1), one per wait.
IDLE_WAITS: list[float] = []


def idle(seconds: float) -> None:
    """Sleep, and record in ``IDLE_WAITS`` the share of the machine's CPU others used meanwhile."""
    before = cpu_jiffies()
    time.sleep(seconds)
    after = cpu_jiffies()
    if before is not None and after is not None and after[1] > before[1]:
        IDLE_WAITS.append((after[0] - before[0]) / (after[1] - before[1]))


def cpu_jiffies() -> tuple[int, int] | None:
    """Linux: (busy, total) CPU time of the whole machine so far, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    waiting = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return sum(fields[:8]) - waiting, sum(fields[:8])


# ---- the tools ----------------------------------------------------------------------------------

class Tool:
    """One build tool in its own workspace ``base/<name>`` holding a private copy of the corpus."""

    name = ""
    stateful = True      # keeps incremental state: edits are timed after a no-op, reverts are rebuilt
    renders = True       # produces HTML whose staleness can be checked

    def __init__(self, base: Path, timeout: float) -> None:
        self.dir = base / self.name
        self.timeout = timeout
        self.trash = Trash(base.parent / "trash")   # (run.py gives every tool the same one)

    def discard(self, path: Path) -> None:
        self.trash.discard(path)

    @property
    def content(self) -> Path:
        """Where the Markdown sources live (edits are applied here)."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def setup(self, corpus: Path) -> None:
        raise NotImplementedError

    def reset_cold(self) -> None:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def output_of(self, md: str) -> Path | None:
        """The output file rendered from the Markdown source ``md`` (relative), if the tool renders."""
        return None

    def build(self) -> Run:
        run = run_measured(self.argv(), cwd=self.dir, timeout=self.timeout)
        if run.code != 0:
            # sqldom's --json stdout is mostly one line per step: keep what explains the failure
            out = [ln for ln in run.stdout.splitlines() if '"event": "step"' not in ln or '"failed"' in ln]
            tail = "\n".join([*run.stderr.strip().splitlines()[-15:], *out[-15:]])
            raise BuildFailed(f"{self.name}: {' '.join(self.argv())} exited {run.code}\n{tail}")
        return run


class Sqldom(Tool):
    name = "sqldom"

    def __init__(self, base: Path, timeout: float, extra: list[str]) -> None:
        super().__init__(base, timeout)
        self.extra = extra

    @property
    def content(self) -> Path:
        return self.dir / "content"

    @property
    def out(self) -> Path:
        return self.dir / "build"

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version
        try:
            v = dist_version("sqldom")
        except PackageNotFoundError:
            v = "?"
        rev = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True).stdout.strip()
        return f"sqldom {v} (git {rev}{', src/ modified' if dirty else ''})"

    def setup(self, corpus: Path) -> None:
        self.discard(self.dir)
        copy_tree(corpus, self.content)

    def reset_cold(self) -> None:
        self.discard(self.dir / "var")
        self.discard(self.out)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "sqldom", "build", "--json", "-C", str(self.dir), *self.extra]

    def output_of(self, md: str) -> Path | None:
        return self.out / (md[:-3] + ".html")


def _ninja_escape(path: str) -> str:
    return path.replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


class Ninja(Tool):
    """The floor: one ``cp`` per source file, nothing rendered."""

    name = "ninja"
    renders = False

    def __init__(self, base: Path, timeout: float, exe: str) -> None:
        super().__init__(base, timeout)
        self.exe = exe

    @property
    def content(self) -> Path:
        return self.dir / "src"

    def version(self) -> str:
        return f"ninja {_first_line([self.exe, '--version'])}"

    def setup(self, corpus: Path) -> None:
        self.discard(self.dir)
        copy_tree(corpus, self.content)
        lines = ["# generated by bench/run.py: one cp per source file", "rule cp", "  command = cp $in $out", ""]
        for path in sorted(p.relative_to(self.content).as_posix() for p in self.content.rglob("*") if p.is_file()):
            e = _ninja_escape(path)
            lines.append(f"build out/{e}: cp src/{e}")
        (self.dir / "build.ninja").write_text("\n".join(lines) + "\n")

    def reset_cold(self) -> None:
        self.discard(self.dir / "out")
        for f in (".ninja_log", ".ninja_deps"):
            (self.dir / f).unlink(missing_ok=True)

    def argv(self) -> list[str]:
        return [self.exe, "-C", str(self.dir)]


HUGO_CONFIG = """\
# generated by bench/run.py
baseURL = "http://localhost/"
title = "sqldom benchmark corpus"
uglyURLs = true          # page-00042.md -> page-00042.html, like sqldom
buildFuture = true       # the corpus has dates up to 2025-12-28
disableKinds = ["taxonomy", "term", "RSS", "sitemap", "robotsTXT", "404"]
"""

HUGO_PAGE = """\
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ .Title }}</title></head>
<body>
{{ .Content }}
</body></html>
"""

HUGO_LIST = """\
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ .Title }}</title></head>
<body>
<h1>{{ .Title }}</h1>
{{ .Content }}
</body></html>
"""

# Fills an empty link with the target's title (what sqldom does), and points it at the target's page.
HUGO_LINK_HOOK = """\
{{- $href := .Destination -}}
{{- $text := .Text | safeHTML -}}
{{- if and (not (strings.Contains $href "://")) (strings.HasSuffix $href ".md") -}}
  {{- with site.GetPage (printf "/%s" (path.Join .Page.File.Dir $href)) -}}
    {{- $href = .RelPermalink -}}
    {{- if eq (string $text) "" }}{{ $text = .Title }}{{ end -}}
  {{- end -}}
{{- end -}}
<a href="{{ $href }}">{{ $text }}</a>
{{- /* keep no trailing newline */ -}}
"""


class Hugo(Tool):
    """A minimal site around the same corpus: Markdown in content/, everything else in static/."""

    name = "hugo"
    stateful = False     # no incremental state: every run is a full build

    def __init__(self, base: Path, timeout: float, exe: str) -> None:
        super().__init__(base, timeout)
        self.exe = exe

    @property
    def content(self) -> Path:
        return self.dir / "content"

    @property
    def out(self) -> Path:
        return self.dir / "public"

    def version(self) -> str:
        return _first_line([self.exe, "version"])

    def setup(self, corpus: Path) -> None:
        self.discard(self.dir)
        copy_tree(corpus, self.content, lambda rel: rel.endswith(".md"))
        copy_tree(corpus, self.dir / "static", lambda rel: not rel.endswith(".md"))
        layouts = self.dir / "layouts" / "_default"
        (layouts / "_markup").mkdir(parents=True)
        (self.dir / "config.toml").write_text(HUGO_CONFIG)
        (layouts / "single.html").write_text(HUGO_PAGE)
        (layouts / "list.html").write_text(HUGO_LIST)
        (layouts / "_markup" / "render-link.html").write_text(HUGO_LINK_HOOK)

    def reset_cold(self) -> None:
        self.discard(self.out)
        self.discard(self.dir / "resources")

    def argv(self) -> list[str]:
        return [self.exe, "--source", str(self.dir), "--quiet"]

    def output_of(self, md: str) -> Path | None:
        return self.out / (md[:-3] + ".html")
