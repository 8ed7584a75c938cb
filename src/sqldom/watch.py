"""``sqldom watch``: one build, then an incremental build for every batch of changes.

The only importer of watchfiles. The project lock is held for the whole watch,
so a ``sqldom build`` started meanwhile waits and then names this process. A
failing build (bad build.py, invalid sqldom.yaml, a transform that raises) is
reported and the watch goes on; Ctrl-C or SIGTERM end it with exit 0.
"""

from __future__ import annotations

import signal
import threading
import traceback
from pathlib import Path
from typing import Any

from sqldom.config import CONFIG_FILE, load_config
from sqldom.engine import BuildOptions, Project, build_locked
from sqldom.errors import SqldomError
from sqldom.events import Sink
from sqldom.fs import ProjectLock, ignored


def _watched(project: Project) -> Any:
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


def watch(options: BuildOptions, sink: Sink, report: Any, stop: threading.Event | None = None) -> int:
    """Build, then rebuild on every batch of changes until Ctrl-C, SIGTERM or ``stop`` is set."""
    from watchfiles import watch as watch_changes

    project = Project.at(options.root)
    project.content.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with ProjectLock(project.var, options.lock_wait):
            _one(project, options, sink, report)
            for _changes in watch_changes(project.root, watch_filter=_watched(project), stop_event=stop,
                                          raise_interrupt=False, debounce=50, step=10, rust_timeout=500,
                                          yield_on_timeout=False):
                _one(project, options, sink, report)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _one(project: Project, options: BuildOptions, sink: Sink, report: Any) -> None:
    try:
        build_locked(project, options, sink)
    except SqldomError as e:
        report(e)
    except Exception as e:  # noqa: BLE001 - the watch must outlive a bug in one batch
        report(e, traceback.format_exc(), Path(project.var))
