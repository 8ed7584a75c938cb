"""The command line: click commands that parse flags and call the commands' functions.

What happens to their exceptions (exit codes, messages, saved tracebacks) is
``sqldom.exits``; a plain ``sqldom build`` may not come through here at all
(``sqldom.entry``: the no-op probe, then ``exits.build`` directly).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sqldom import exits
from sqldom.errors import SqldomError


def _root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-C", "--root", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Project directory (default: the current directory).")(f)


def _run(ctx: click.Context, root: Path | None, fn: Callable[[Path], int]) -> None:
    """``fn`` on the project: the command's -C, else the group's, else the current directory."""
    exits.run(root or (ctx.obj or {}).get("root"), fn)


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
    _run(ctx, root, lambda r: exits.build(r, full, as_json, verbose, jobs, from_step, push))


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
        known = err if isinstance(err, SqldomError) else exits.environment(err, var.parent if var else None)
        if known is not None:
            exits.report(known)
        else:
            exits.bug(err, var.parent if var else None)
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
            with exits.stdout_to_stderr(as_json):
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
