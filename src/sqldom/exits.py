"""Exceptions become exit codes and messages in the user's words: the layer under every command.

Exit codes: 0 success; 1 a step failed or an error problem is outstanding, or
the environment refused (a full disk, a file-size limit, a read-only folder);
2 bad usage or configuration, or a database that is foreign, newer, corrupt or
cannot be opened (nothing was built). This is the only module that calls
``sys.exit``. An exception nothing explains is a bug: one line, and the
traceback saved under var/ (else the temp folder, else printed).

It does not import click: a plain ``sqldom build`` that the no-op probe could
not answer comes here directly from ``sqldom.entry`` (see ``build``), without
paying for the command-line library.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from sqldom.errors import SqldomError
from sqldom.stop import Terminated, quiet_unraisable
from sqldom.stop import request as _terminate


def say(text: str) -> None:
    """One line for the user on stderr (what click.echo(err=True) did, without click)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass   # stderr closed or gone: nothing better to do


def report(err: SqldomError) -> None:
    say(f"sqldom: error: {err.headline()}")
    if err.hint:
        say(f"hint: {err.hint}")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line, short: a database error's text carries SQL and parameters after it."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def save_traceback(text: str, folders: list[Path]) -> Path | None:
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            where = folder / name
            fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with open(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
                f.write(text)
            return where.resolve()
        except OSError:
            continue
    return None


def bug(exc: BaseException, root: Path | None) -> int:
    """An unexpected exception: one line for the user, the traceback saved under var/.

    When var/ cannot take the file, the system's temp folder does; when neither
    can, the traceback is printed: it is never lost, and the message never names
    a file that was not written.
    """
    import tempfile
    text = "".join(traceback.format_exception(exc))
    where = save_traceback(text, [(root or Path.cwd()) / "var", Path(tempfile.gettempdir())])
    say(f"sqldom: internal error: {type(exc).__name__}: {first_line(exc)}")
    if where is not None:
        say(f"this is a bug in sqldom; the traceback is in {where}")
    else:
        say("this is a bug in sqldom; the traceback could not be saved, here it is:")
        say(text)
    return 1


# ---- the environment failing: a full disk, a read-only folder, a corrupt database -------------------------

ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                      errno.EIO}
SQLITE_FULL_WORDS = ("database or disk is full", "disk i/o error")
SQLITE_ACCESS_WORDS = ("attempt to write a readonly database", "unable to open database file")
CONSISTENT = "the database is consistent"


def causes(exc: BaseException) -> list[BaseException]:
    """``exc``, what SQLAlchemy wrapped in it, and its causes: where an OSError or a SQLite error may hide."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    sa_exc = sys.modules.get("sqlalchemy.exc")      # never imported here just to look
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        if sa_exc is not None and isinstance(e, sa_exc.DBAPIError):
            todo.append(e.orig)
        todo.extend([e.__cause__, e.__context__])
    return seen


def shown_path(path: str | bytes | None, root: Path | None) -> str | None:
    if path is None:
        return None
    p = Path(os.fsdecode(path))
    if root is not None:
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except (OSError, ValueError):
            pass
    return str(p)


def size_limit() -> str:
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return "" if soft == resource.RLIM_INFINITY else f"the file size limit (ulimit -f) is {soft} bytes"


def free_space(root: Path | None, shown: str) -> str:
    import shutil
    where = (root / shown) if root is not None else Path(shown)
    for folder in (where.parent, where, root):
        if folder is None:
            continue
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        return f"{free // (1 << 20)} MiB free on its disk" if free < (256 << 20) else ""
    return ""


def environment(exc: BaseException, root: Path | None) -> SqldomError | None:
    """A failure of the machine rather than of sqldom, in the user's words; None when it is a bug."""
    import sqlite3

    from sqldom.db.migrate import is_corruption
    from sqldom.errors import DatabaseError, EnvironmentFailure
    db = "var/build.db"
    for e in causes(exc):
        if isinstance(e, sqlite3.DatabaseError) and is_corruption(e):
            return DatabaseError(f"{db} is corrupt ({first_line(e)})",
                                 hint="move it away or run 'sqldom clean'; content/ is the source of truth "
                                      "and a full build recreates it")
        if isinstance(e, sqlite3.Error):
            text = first_line(e)
            if any(w in text.lower() for w in SQLITE_FULL_WORDS):
                details = [d for d in (size_limit(), free_space(root, db)) if d]
                more = f" ({'; '.join(details)})" if details else ""
                what = "free space" if "full" in text.lower() else \
                    "check the disk, its free space and the file size limit (ulimit -f),"
                return EnvironmentFailure(f"writing {db} failed: {text}{more}",
                                          hint=f"{CONSISTENT}; {what} and build again")
            if any(w in text.lower() for w in SQLITE_ACCESS_WORDS):
                from sqldom.db.migrate import access_problem
                why = access_problem(root / db, db) if root is not None else "permission denied or read-only"
                return EnvironmentFailure(f"cannot write {db}: {text}: {why}",
                                          hint=f"{CONSISTENT}; make var/ writable by you and build again")
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
            shown = shown_path(e.filename, root)
            reason = (e.strerror or os.strerror(e.errno or 0)).lower()
            if e.errno == errno.EFBIG:
                limit = size_limit()
                reason = f"{reason}: {limit}" if limit else f"{reason} for the file system"
                hint = f"{CONSISTENT}; raise the file size limit (or make the file smaller) and build again"
            elif e.errno in (errno.ENOSPC, errno.EDQUOT):
                free = free_space(root, shown) if shown else ""
                reason = f"{reason} ({free})" if free else reason
                hint = f"{CONSISTENT}; free space and build again"
            elif e.errno == errno.EIO:
                hint = f"{CONSISTENT}; check the disk (and its free space) and build again"
            else:
                what = f"{shown} and its folder" if shown else "the file and its folder"
                hint = f"{CONSISTENT}; make {what} writable by you (or run sqldom as their owner) and build again"
            return EnvironmentFailure(reason, path=shown or None, hint=hint)
    return None


def run(root: Path | None, fn: Callable[[Path], int]) -> NoReturn:
    """Run a command on the project at ``root`` (default: the current directory) and exit with its code."""
    import signal
    resolved = None
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
        sys.unraisablehook = quiet_unraisable
    try:
        resolved = root or Path.cwd()
        if not resolved.is_dir():
            raise SqldomError(f"no such directory: {resolved}", hint="check the -C/--root argument")
        code = fn(resolved)
    except SqldomError as e:
        report(e)
        code = e.exit_code
    except BrokenPipeError:   # e.g. `sqldom explain x | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except (KeyboardInterrupt, Terminated) as e:
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        say(f"sqldom: {what}; the database is consistent, the next build finishes the job")
        code = 143 if isinstance(e, Terminated) else 130
    except Exception as e:  # noqa: BLE001 - the last line of defence against a bare traceback
        known = environment(e, resolved)
        if known is not None:
            report(known)
            code = known.exit_code
        else:
            code = bug(e, resolved)
    sys.exit(code)


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """With --json, stdout carries only events: a ``print()`` in user code goes to stderr instead."""
    if not enabled:
        yield
        return
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


def build(root: Path, full: bool = False, as_json: bool = False, verbose: bool = False, jobs: int | None = None,
          from_step: str | None = None, push: bool = False) -> int:
    """``sqldom build``: one build of ``root``, events to stdout (JSON lines) or the human summary."""
    from sqldom.engine import BuildOptions
    from sqldom.engine import build as run_build
    from sqldom.events import HumanSink, JsonSink
    sink = JsonSink() if as_json else HumanSink(verbose=verbose)
    try:
        with stdout_to_stderr(as_json):
            return run_build(BuildOptions(root=root, full=full, verbose=verbose, jobs=jobs or 0,
                                          from_step=from_step, push=push), sink)
    finally:
        sink.close()
