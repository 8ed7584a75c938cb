"""The command line. Flags become a frozen ``BuildOptions``; exceptions become exit codes.

Exit codes: 0 success; 1 a step failed or an error problem is outstanding;
2 bad usage or configuration (nothing was built). This is the only module that
calls ``sys.exit``.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sqldom.errors import SqldomError


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


def _bug(exc: BaseException, root: Path | None) -> int:
    """An unexpected exception: one line for the user, the traceback saved under var/."""
    text = "".join(traceback.format_exception(exc))
    where = None
    try:
        var = (root or Path.cwd()) / "var"
        var.mkdir(parents=True, exist_ok=True)
        where = var / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
        where.write_text(text, encoding="utf-8")
    except OSError:
        pass
    click.echo(f"sqldom: internal error: {type(exc).__name__}: {exc}", err=True)
    click.echo(f"this is a bug in sqldom; the traceback is in {where}" if where else text, err=True)
    return 1


class Terminated(BaseException):
    """SIGTERM, turned into an exception so a build stops the way Ctrl-C stops it."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated


def _run(ctx: click.Context, root: Path | None, fn: Callable[[Path], int]) -> None:
    import signal
    resolved = None
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
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
        code = _bug(e, resolved)
    sys.exit(code)


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
@click.pass_context
def build(ctx: click.Context, root: Path | None, full: bool, as_json: bool, verbose: bool,
          jobs: int | None) -> None:
    """Build content/ into build/, doing the least work possible."""
    from sqldom.engine import BuildOptions
    from sqldom.engine import build as run_build
    from sqldom.events import HumanSink, JsonSink

    def go(r: Path) -> int:
        sink = JsonSink() if as_json else HumanSink(verbose=verbose)
        try:
            return run_build(BuildOptions(root=r, full=full, verbose=verbose, jobs=jobs or 0), sink)
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
        if isinstance(err, SqldomError):
            _report(err)
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


@cli.command()
@_root_option
@click.pass_context
def clean(ctx: click.Context, root: Path | None) -> None:
    """Remove build/ and var/ (the database); content/ is never touched."""
    import shutil

    def go(r: Path) -> int:
        from sqldom.fs import ProjectLock
        var = r / "var"
        if var.is_dir():
            with ProjectLock(var, 2.0):
                shutil.rmtree(r / "build", ignore_errors=True)
                for child in var.iterdir():
                    if child.name != "lock":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            shutil.rmtree(var, ignore_errors=True)
        else:
            shutil.rmtree(r / "build", ignore_errors=True)
        click.echo("removed build/ and var/")
        return 0
    _run(ctx, root, go)


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
