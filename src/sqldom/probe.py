"""The no-op probe: a plain ``sqldom build`` with nothing to do, answered before the heavy imports.

The most common build is the one where nothing changed, and for it the full
path's imports (click, PyYAML, the engine: about 0.15 s) and its row-by-row
loops cost more than the check itself. ``sqldom.entry`` runs this probe first.
It walks content/ and build/ and compares what it sees with the ``sources``
and ``build`` rows as *sets* of stat fingerprints (path, size, mtime, ctime,
inode), under the same "racily clean" rule as the scan and the mirror
(``scan.TRUSTED_SOURCE_SQL``, ``scan.TRUSTED_OUTPUT_SQL``).

It answers alone (records the run, prints the problems and the summary the
engine would) only when all of this holds:

- the database is at this sqldom's schema and its last run finished;
- the last build left a ``probe`` row: its configuration reads nothing the
  probe cannot see (no workshop, no container images, no pages), and it ran
  this same built-in code;
- sqldom.yaml and build.py (the names in that row) have their recorded stat;
- every source and every output has its trusted recorded stat and nothing
  else is there, no step failed, and every source has its step.

Otherwise it leaves what it learnt for the engine (``take_handoff``): the
content paths whose stat differs and whether build/ matched, so that an edit
is rescanned and mirrored like a watch batch instead of walking both trees
again. Anything unexpected (a locked project, a database to upgrade, an error)
just declines; the full path then does the work and reports what is wrong.
``SQLDOM_NO_PROBE=1`` turns the probe off.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sqldom.fs import walk_files
from sqldom.scan import TRUSTED_OUTPUT_SQL, TRUSTED_SOURCE_SQL

if TYPE_CHECKING:
    from sqldom.db.store import ProbeRow, Store
    from sqldom.events import Sink

CONFIG_PREFIX = "../"   # how sqldom.yaml and build.py are named in ``sources``


class BuildArgs(NamedTuple):
    """The flags of a ``sqldom build`` the probe may answer; any other flag goes to the full CLI."""

    root: Path
    as_json: bool = False
    verbose: bool = False
    jobs: int | None = None


class Handoff(NamedTuple):
    """What the probe saw, for the engine's build of the same project in this process."""

    changed: frozenset[str]   # content-relative paths whose stat differs from their trusted row
    build_intact: bool        # build/ matched the ``build`` rows exactly
    last_run: int             # the newest run then: a build since makes the handoff stale


_handoffs: dict[Path, Handoff] = {}


def take_handoff(root: Path) -> Handoff | None:
    """The probe's findings for ``root`` (resolved), once."""
    return _handoffs.pop(root, None)


def build_args(argv: list[str]) -> BuildArgs | None:
    """``argv`` as a plain build (``[-C DIR] build [--json] [-v] [-j N] [-C DIR]``), else None."""
    root: str | None = None
    jobs: int | None = None
    as_json = verbose = is_build = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-C", "--root"):
            if i + 1 >= len(argv):
                return None
            root = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--root="):
            root = arg[len("--root="):]
        elif not is_build:
            if arg != "build":
                return None
            is_build = True
        elif arg == "--json":
            as_json = True
        elif arg in ("-v", "--verbose"):
            verbose = True
        elif arg in ("-j", "--jobs"):
            if i + 1 >= len(argv) or not _positive(argv[i + 1]):
                return None
            i += 1
            jobs = int(argv[i])
        elif arg.startswith("--jobs=") and _positive(arg[7:]):
            jobs = int(arg[7:])
        elif arg.startswith("-j") and _positive(arg[2:]):
            jobs = int(arg[2:])
        else:
            return None
        i += 1
    if not is_build or root == "":
        return None
    return BuildArgs(Path(root) if root is not None else Path.cwd(), as_json, verbose, jobs)


def _positive(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) >= 1


def run(args: BuildArgs) -> int | None:
    """The exit code of the build the probe answered; None when the engine must build."""
    if os.environ.get("SQLDOM_NO_PROBE") or not args.root.is_dir():
        return None

    def make_sink() -> Sink:
        from sqldom.events import HumanSink, JsonSink
        return JsonSink() if args.as_json else HumanSink(verbose=args.verbose)
    return try_build(args.root, make_sink)


def try_build(root: Path, make_sink: Callable[[], Sink]) -> int | None:
    """Answer a build of ``root`` that has nothing to do (see the module's docstring); None: the engine must."""
    t0 = time.monotonic()
    root = root.resolve()
    from sqldom.errors import SqldomError
    from sqldom.fs import ProjectLock
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(ProjectLock(root / "var", wait_seconds=0))
            store = _open(root)
            if store is None:
                return None
            held.callback(store.close)
            probe_row = _look(root, store)
        except (OSError, SqldomError, ValueError, sqlite3.Error):
            return None   # locked, unreadable, damaged: the full path waits, repairs or explains
        if probe_row is None:
            return None
        return _answer(store, make_sink, probe_row, t0)
    return None   # (unreachable: for mypy)


def _open(root: Path) -> Store | None:
    """The database, if it exists at this sqldom's schema (creating or upgrading it is the full path's job)."""
    db = root / "var" / "build.db"
    if not db.is_file() or not (root / "content").is_dir() or not (root / "build").is_dir():
        return None
    from sqldom.db import migrate
    if migrate.current_revision(db, "var/build.db") != migrate.HEAD:
        return None
    from sqldom.db.store import Store
    return Store(db)


def _look(root: Path, store: Store) -> ProbeRow | None:
    """The probe row to keep when the build has nothing to do; None (maybe with a handoff) otherwise."""
    from sqldom.hashing import builtin_code_hash
    c = store.raw
    last = c.execute("select id, finished_at from runs order by id desc limit 1").fetchone()
    row = c.execute("select builtin, config_files from probe").fetchone()
    if last is None or last[1] is None or row is None or row[0] != builtin_code_hash():
        return None
    config_files: list[str] = json.loads(row[1])
    if not _config_unchanged(root, c, config_files):
        return None
    checker = _start_build_check(root / "build", store.path)
    try:
        changed = _content_changes(root / "content", c)
    finally:
        intact = checker()
    if changed or not intact:
        _handoffs[root] = Handoff(frozenset(changed), intact, int(last[0]))
        return None
    if not store.steps_match_sources(_count(c, f"select count(*) from sources where {_CONTENT}")):
        return None
    # what every step read of the built-in code: the same index pages the full path reads for a no-op
    # (``code_changed``), so a damaged database is noticed as often as there, and the full path explains it
    if c.execute("select 1 from deps where target >= 'builtin:' and target < 'builtin;' and kind = 'code' "
                 "and hash <> ? limit 1", (row[0],)).fetchone() is not None:
        return None
    return row[0], config_files


_CONTENT = f"substr(path, 1, {len(CONFIG_PREFIX)}) <> '{CONFIG_PREFIX}'"
_FINGERPRINT = "path, size, mtime_ns, ctime_ns, inode"


def _count(c: sqlite3.Connection, sql: str) -> int:
    return int(c.execute(sql).fetchone()[0])


def _config_unchanged(root: Path, c: sqlite3.Connection, names: list[str]) -> bool:
    """sqldom.yaml and build.py are as recorded: both absent, or present with their trusted stat."""
    recorded = {r[0][len(CONFIG_PREFIX):]: r for r in c.execute(
        f"select {_FINGERPRINT}, {TRUSTED_SOURCE_SQL} from sources where not {_CONTENT}")}
    for name in set(names) | set(recorded):
        try:
            st = os.stat(root / name)
            seen = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) if stat.S_ISREG(st.st_mode) else None
        except FileNotFoundError:
            seen = None
        rec = recorded.get(name)
        if seen is None and rec is None:
            continue
        if seen is None or rec is None or not rec[5] or tuple(rec[1:5]) != seen:
            return False
    return True


def _content_changes(content: Path, c: sqlite3.Connection) -> set[str]:
    """Content paths whose stat differs from a trusted ``sources`` row (new, changed, gone or racy)."""
    on_disk = {(rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) for rel, st in walk_files(content)}
    trusted = set(c.execute(f"select {_FINGERPRINT} from sources where {_CONTENT} and {TRUSTED_SOURCE_SQL}"))
    changed = {t[0] for t in on_disk ^ trusted}
    changed.update(r[0] for r in c.execute(
        f"select path from sources where {_CONTENT} and not {TRUSTED_SOURCE_SQL}"))
    return changed


def _start_build_check(build: Path, db: Path) -> Callable[[], bool]:
    """Check build/ in a forked child while this process walks content/; returns the wait for its answer.

    The two walks are mostly system calls on two trees, so on two cores they
    take the time of one. The child opens its own read-only connection (a SQLite
    connection must not cross a fork) and answers in its exit status. Where
    fork is unavailable or fails, the check runs here, serially.
    """
    def here() -> bool:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            return _build_intact(build, con)
        finally:
            con.close()
    try:
        pid = os.fork()
    except (AttributeError, OSError):
        return here
    if pid == 0:   # the child: answer in the exit status, run no cleanup of the parent's
        try:
            os._exit(0 if here() else 1)
        except BaseException:   # noqa: BLE001 - whatever it was, the parent declines
            os._exit(2)

    def wait() -> bool:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0
    return wait


RACY_HASHED = 64   # racily clean outputs the build/ check hashes; more, and the full path checks them


def _build_intact(build: Path, c: sqlite3.Connection) -> bool:
    """build/ holds exactly the outputs, each with its recorded stat, and no more than a few racily clean.

    An output the last build wrote has a stat recorded too soon after its write
    to vouch for its bytes (``TRUSTED_OUTPUT_SQL``); those few are hashed. Without
    that, every build after an edit would find build/ unproven and take the full
    path, and only the one after it the narrow plan.
    """
    from sqldom.hashing import hash_file
    on_disk = set()
    for rel, st in walk_files(build, skip_ignored=False, report_links=True):
        if not stat.S_ISREG(st.st_mode):
            return False
        on_disk.add((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    recorded = set()
    racy: list[tuple[str, str]] = []
    for path, size, mtime_ns, ctime_ns, inode, h, trusted in c.execute(
            f"select {_FINGERPRINT}, hash, {TRUSTED_OUTPUT_SQL} from build"):
        recorded.add((path, size, mtime_ns, ctime_ns, inode))
        if not trusted:
            racy.append((path, h))
            if len(racy) > RACY_HASHED:
                return False
    return on_disk == recorded and all(hash_file(str(build / path))[0] == h for path, h in racy)


def _answer(store: Store, make_sink: Callable[[], Sink], probe_row: ProbeRow, t0: float) -> int | None:
    """Record the run and print what the engine prints for a build that executed nothing."""
    from sqldom.events import ProblemEvent, SummaryEvent
    started_at = time.time()
    try:
        problems = store.problems()
        errors = sum(1 for p in problems if p.severity == "error")
        counts = {"built": 0, "restored": 0, "unchanged": store.count_steps(), "deleted": 0, "failed": 0,
                  "errors": errors}
        store.record_quiet_run(store.next_run_id(), "build", started_at, counts, probe_row)
    except (OSError, sqlite3.Error):
        return None   # nothing recorded, nothing printed: the full path does it again and explains the failure
    sink = make_sink()
    try:
        for p in problems:
            sink.emit(ProblemEvent(severity=p.severity, step=p.step, path=p.path, line=p.line, message=p.message))
        sink.emit(SummaryEvent(built=0, restored=0, unchanged=counts["unchanged"], deleted=0, failed=0,
                               errors=errors, seconds=round(time.monotonic() - t0, 3), repaired=0))
    except BrokenPipeError:   # `sqldom build --json | head`: the run is recorded; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    finally:
        sink.close()
    return 1 if errors else 0
