"""``sqldom watch``: one build, then an incremental build for every batch of changes.

The only importer of watchfiles. A ``Session`` keeps the database, the loaded
rules and the snapshot of sources, steps and outputs warm between batches, and
each batch scans only the paths the watcher reported; a quiet full rescan every
few idle seconds is the backstop for events a watcher can miss. The project
lock is held for the whole watch, so a ``sqldom build`` started meanwhile waits
and then names this process. A failing build (bad build.py, invalid
sqldom.yaml, a transform that raises) is reported and the watch goes on;
Ctrl-C or SIGTERM end it with exit 0.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqldom.config import CONFIG_FILE, load_config
from sqldom.engine import BuildOptions, Project, Session
from sqldom.errors import SqldomError
from sqldom.events import Sink
from sqldom.fs import ProjectLock, ignored

BACKSTOP_MS = 3000   # idle time before a quiet full rescan


def _watched(project: Project) -> Callable[[Any, str], bool]:
    """A watchfiles filter: sources under content/, sqldom.yaml and the transforms file; never build/ or var/."""
    content = str(project.content) + "/"
    root = str(project.root) + "/"

    def accept(_change: Any, path: str) -> bool:
        if path.startswith(content):
            return not any(ignored(part) for part in path[len(content):].split("/"))
        if path.startswith(root) and "/" not in path[len(root):]:
            name = path[len(root):]
            if name == CONFIG_FILE:
                return True
            try:
                return name == load_config(project.root).build_py
            except SqldomError:
                return name.endswith(".py")
        return False
    return accept


def content_paths(project: Project, changes: Iterable[tuple[Any, str]]) -> set[str]:
    """Content-relative paths of a watcher batch (config files are always re-checked anyway)."""
    prefix = str(project.content) + os.sep
    return {path[len(prefix):].replace(os.sep, "/") for _, path in changes if path.startswith(prefix)}


def watch(options: BuildOptions, sink: Sink, report: Callable[..., None],
          stop: threading.Event | None = None, on_built: Callable[[], None] | None = None) -> int:
    """Build, then rebuild on every batch of changes until Ctrl-C, SIGTERM or ``stop`` is set."""
    from watchfiles import watch as watch_changes

    project = Project.at(options.root)
    project.content.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()

    def finish(signum: int, _frame: Any) -> None:
        """First Ctrl-C/SIGTERM: finish the batch under way, then end with exit 0. A second one: now."""
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGTERM, finish)
    previous_int = signal.signal(signal.SIGINT, finish)
    try:
        with ProjectLock(project.var, options.lock_wait):
            session = Session(project, options)
            try:
                # after a failed batch the next one walks everything: the paths of the failed
                # batch (saved while build.py was broken, say) were never recorded
                ok = _one(session, sink, report, None, on_built)
                for changes in watch_changes(project.root, watch_filter=_watched(project), stop_event=stop,
                                             raise_interrupt=False, debounce=50, step=10,
                                             rust_timeout=BACKSTOP_MS, yield_on_timeout=True):
                    if changes:
                        ok = _one(session, sink, report, content_paths(project, changes) if ok else None,
                                  on_built)
                    else:
                        missed = _safe(lambda: session.changes_on_disk())
                        if missed:   # a broken config is retried on the next change, not every few seconds
                            ok = _one(session, sink, report, missed if ok else None, on_built)
            finally:
                session.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return 0


def _safe(fn: Callable[[], set[str]]) -> set[str]:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - the backstop must never end the watch
        return set()


def _one(session: Session, sink: Sink, report: Callable[..., None], changed: set[str] | None,
         on_built: Callable[[], None] | None) -> bool:
    """One build; False when it could not run (its changes are then picked up by a full walk)."""
    try:
        session.build(sink, changed)
        if on_built is not None:
            on_built()
        return True
    except SqldomError as e:
        report(e)
    except Exception as e:  # noqa: BLE001 - the watch must outlive a bug in one batch
        report(e, traceback.format_exc(), Path(session.project.var))
    return False
