"""The command line. Flags become a frozen ``BuildOptions``; exceptions become exit codes.

Exit codes: 0 success; 1 a step failed or an error problem is outstanding, or
the environment refused (a full disk, a file-size limit, a read-only folder);
2 bad usage or configuration, or a database that is foreign, newer, corrupt or
cannot be opened (nothing was built). This is the only module that calls
``sys.exit``. An exception nothing explains is a bug: one line, and the
traceback saved under var/ (else the temp folder, else printed).
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
from typing import Any

import click

from sqldom.errors import SqldomError
from sqldom.stop import Terminated, quiet_unraisable
from sqldom.stop import request as _terminate


def _root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-C", "--root", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Project directory (default: the current directory).")(f)


def _resolve_root(ctx: click.Context, root: Path | None) -> Path:
    root = root or (ctx.obj or {}).get("root") or Path.cwd()
    if not root.is_dir():
        raise SqldomError(f"no such directory: {root}", hint="check the -C/--root argument")
    return root


def _report(err: SqldomError) -> None:
    click.echo(f"sqldom: error: {err.headline()}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line, short: a database error's text carries SQL and parameters after it."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _save_traceback(text: str, folders: list[Path]) -> Path | None:
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


def _bug(exc: BaseException, root: Path | None) -> int:
    """An unexpected exception: one line for the user, the traceback saved under var/.

    When var/ cannot take the file, the system's temp folder does; when neither
    can, the traceback is printed: it is never lost, and the message never names
    a file that was not written.
    """
    import tempfile
    text = "".join(traceback.format_exception(exc))
    where = _save_traceback(text, [(root or Path.cwd()) / "var", Path(tempfile.gettempdir())])
    click.echo(f"sqldom: internal error: {type(exc).__name__}: {_first_line(exc)}", err=True)
    if where is not None:
        click.echo(f"this is a bug in sqldom; the traceback is in {where}", err=True)
    else:
        click.echo("this is a bug in sqldom; the traceback could not be saved, here it is:", err=True)
        click.echo(text, err=True)
    return 1


# ---- the environment failing: a full disk, a read-only folder, a corrupt database -------------------------

ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                      errno.EIO}
SQLITE_FULL_WORDS = ("database or disk is full", "disk i/o error")
SQLITE_ACCESS_WORDS = ("attempt to write a readonly database", "unable to open database file")
CONSISTENT = "the database is consistent"


def _causes(exc: BaseException) -> list[BaseException]:
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


def _shown(path: str | bytes | None, root: Path | None) -> str | None:
    if path is None:
        return None
    p = Path(os.fsdecode(path))
    if root is not None:
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except (OSError, ValueError):
            pass
    return str(p)


def _size_limit() -> str:
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return "" if soft == resource.RLIM_INFINITY else f"the file size limit (ulimit -f) is {soft} bytes"


def _free_space(root: Path | None, shown: str) -> str:
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


def _environment(exc: BaseException, root: Path | None) -> SqldomError | None:
    """A failure of the machine rather than of sqldom, in the user's words; None when it is a bug."""
    import sqlite3

    from sqldom.db.migrate import is_corruption
    from sqldom.errors import DatabaseError, EnvironmentFailure
    db = "var/build.db"
    for e in _causes(exc):
        if isinstance(e, sqlite3.DatabaseError) and is_corruption(e):
            return DatabaseError(f"{db} is corrupt ({_first_line(e)})",
                                 hint="move it away or run 'sqldom clean'; content/ is the source of truth "
                                      "and a full build recreates it")
        if isinstance(e, sqlite3.Error):
            text = _first_line(e)
            if any(w in text.lower() for w in SQLITE_FULL_WORDS):
                details = [d for d in (_size_limit(), _free_space(root, db)) if d]
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
            shown = _shown(e.filename, root)
            reason = (e.strerror or os.strerror(e.errno or 0)).lower()
            if e.errno == errno.EFBIG:
                limit = _size_limit()
                reason = f"{reason}: {limit}" if limit else f"{reason} for the file system"
                hint = f"{CONSISTENT}; raise the file size limit (or make the file smaller) and build again"
            elif e.errno in (errno.ENOSPC, errno.EDQUOT):
                free = _free_space(root, shown) if shown else ""
                reason = f"{reason} ({free})" if free else reason
                hint = f"{CONSISTENT}; free space and build again"
            elif e.errno == errno.EIO:
                hint = f"{CONSISTENT}; check the disk (and its free space) and build again"
            else:
                what = f"{shown} and its folder" if shown else "the file and its folder"
                hint = f"{CONSISTENT}; make {what} writable by you (or run sqldom as their owner) and build again"
            return EnvironmentFailure(reason, path=shown or None, hint=hint)
    return None


def _run(ctx: click.Context, root: Path | None, fn: Callable[[Path], int]) -> None:
    import signal
    resolved = None
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
        sys.unraisablehook = quiet_unraisable
    try:
        resolved = _resolve_root(ctx, root)
        code = fn(resolved)
    except SqldomError as e:
        _report(e)
        code = e.exit_code
    except BrokenPipeError:   # e.g. `sqldom explain x | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except (KeyboardInterrupt, Terminated) as e:
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        click.echo(f"sqldom: {what}; the database is consistent, the next build finishes the job", err=True)
        code = 143 if isinstance(e, Terminated) else 130
    except Exception as e:  # noqa: BLE001 - the last line of defence against a bare traceback
        known = _environment(e, resolved)
        if known is not None:
            _report(known)
            code = known.exit_code
        else:
            code = _bug(e, resolved)
    sys.exit(code)


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "--root", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Project directory (default: the current directory).")
@click.version_option(package_name="sqldom")
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """sqldom: incremental builds of content/ into build/, with var/build.db as the source of truth."""
    ctx.obj = {"root": root}


@cli.command()
@_root_option
@click.option("--full", is_flag=True, help="Ignore recorded state and re-execute every step.")
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@click.option("-v", "--verbose", is_flag=True, help="One line per executed step.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Parallel workers.")
@click.option("--from-step", "from_step", metavar="ID", default=None,
              help="Rebuild workshop step ID and every step after it.")
@click.option("--push", is_flag=True, help="Push every workshop step image to workshop.image's registry.")
@click.pass_context
def build(ctx: click.Context, root: Path | None, full: bool, as_json: bool, verbose: bool,
          jobs: int | None, from_step: str | None, push: bool) -> None:
    """Build content/ into build/, doing the least work possible."""
    from sqldom.engine import BuildOptions
    from sqldom.engine import build as run_build
    from sqldom.events import HumanSink, JsonSink

    def go(r: Path) -> int:
        sink = JsonSink() if as_json else HumanSink(verbose=verbose)
        try:
            with _stdout_to_stderr(as_json):
                return run_build(BuildOptions(root=r, full=full, verbose=verbose, jobs=jobs or 0,
                                              from_step=from_step, push=push), sink)
        finally:
            sink.close()
    _run(ctx, root, go)


@cli.command()
@_root_option
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@click.option("-v", "--verbose", is_flag=True, help="One line per executed step.")
@click.option("--serve", is_flag=True, help="Also serve build/ on 127.0.0.1 and live-reload open pages.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port for --serve (0 picks a free one).")
@click.pass_context
def watch(ctx: click.Context, root: Path | None, as_json: bool, verbose: bool, serve: bool, port: int) -> None:
    """Build, then rebuild on every change to content/, sqldom.yaml or build.py, until Ctrl-C."""
    from sqldom.engine import BuildOptions
    from sqldom.events import HumanSink, JsonSink, ReloadingSink
    from sqldom.watch import watch as run_watch

    def report(err: BaseException, tb: str | None = None, var: Path | None = None) -> None:
        known = err if isinstance(err, SqldomError) else _environment(err, var.parent if var else None)
        if known is not None:
            _report(known)
        else:
            _bug(err, var.parent if var else None)
        click.echo("sqldom: still watching; fix the cause and save again", err=True)

    def go(r: Path) -> int:
        sink: Any = JsonSink() if as_json else HumanSink(verbose=verbose)
        server = None
        if serve:
            from sqldom.serve import PreviewServer
            server = PreviewServer(r / "build", port)
            server.start()
            click.echo(f"serving build/ at {server.url}", err=True)
            sink = ReloadingSink(sink, server.reload)
        try:
            with _stdout_to_stderr(as_json):
                return run_watch(BuildOptions(root=r, verbose=verbose, command="watch"), sink, report)
        finally:
            sink.close()
            if server is not None:
                server.close()
    _run(ctx, root, go)


@cli.command()
@_root_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON lines.")
@click.pass_context
def status(ctx: click.Context, root: Path | None, as_json: bool) -> None:
    """Say what the next build would do and why, executing nothing."""
    from sqldom.inspect import status as run_status
    _run(ctx, root, lambda r: run_status(r, as_json))


@cli.command()
@_root_option
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def explain(ctx: click.Context, root: Path | None, path: str, as_json: bool) -> None:
    """Show a source's or output's step, what it read, when it last ran and why."""
    from sqldom.inspect import explain as run_explain
    _run(ctx, root, lambda r: run_explain(r, path, as_json))


def _clean(r: Path) -> int:
    """Remove what sqldom made, and only that; refuse where sqldom did not make it."""
    import shutil

    from sqldom.db.migrate import is_sqldom_database
    from sqldom.errors import UsageError
    from sqldom.fs import ProjectLock
    var, build, db = r / "var", r / "build", r / "var" / "build.db"

    def build_is_empty() -> bool:
        return not build.is_symlink() and (not build.exists() or (build.is_dir() and not any(build.iterdir())))

    if not (db.is_file() and not db.is_symlink()):
        if not build_is_empty():
            raise UsageError(f"{r} does not look like a sqldom project: there is no var/build.db, so build/ "
                             "may not be sqldom's; nothing removed",
                             hint="run 'sqldom clean' in a sqldom project, or remove build/ yourself if it "
                                  "is sqldom's")
        if build.is_dir():
            build.rmdir()
            click.echo("removed the empty build/ (there was no var/build.db)")
        else:
            click.echo("nothing to clean: no var/build.db and no build/")
        return 0
    if not is_sqldom_database(db):
        raise UsageError(f"{r}/var/build.db is not a sqldom database; nothing removed",
                         hint="sqldom removes only what it made; move that file away yourself if it is "
                              "not needed")
    with ProjectLock(var, 2.0):
        if build.is_symlink():
            build.unlink()                  # the link, never the folder it points to
        elif build.is_dir():
            shutil.rmtree(build)
        elif build.exists():
            raise UsageError(f"{r}/build is a file, not a folder; nothing removed",
                             hint="move it away yourself; sqldom did not make it")
        for name in ("build.db-wal", "build.db-shm", "build.db"):
            (var / name).unlink(missing_ok=True)
        for crash in var.glob("crash-*.txt"):
            crash.unlink(missing_ok=True)
        tmp = var / "tmp"
        if tmp.is_symlink():
            tmp.unlink()
        elif tmp.is_dir():
            shutil.rmtree(tmp)
    lock = var / "lock"
    if lock.is_file() and not lock.is_symlink():
        lock.unlink()
    with contextlib.suppress(OSError):
        var.rmdir()                         # only when nothing else is in it
    kept = "" if not var.exists() else " (var/ kept: it holds files sqldom did not make)"
    click.echo(f"removed build/ and var/build.db{kept}")
    return 0


@cli.command()
@_root_option
@click.pass_context
def clean(ctx: click.Context, root: Path | None) -> None:
    """Remove build/ and var/build.db (sqldom's files under var/); content/ is never touched.

    Refused where var/build.db is missing or not sqldom's and build/ is not
    empty: a folder that is not a sqldom project loses nothing.
    """
    _run(ctx, root, _clean)


@cli.command()
@_root_option
@click.pass_context
def init(ctx: click.Context, root: Path | None) -> None:
    """Scaffold a new project: sqldom.yaml, content/ with a sample page, a build.py example."""
    from sqldom.scaffold import init as run_init
    _run(ctx, root, run_init)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
