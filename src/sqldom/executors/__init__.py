"""Executors run steps; this module is their lazy registry.

``python`` runs document transforms in-process. Command steps run through an
executor named in ``sqldom.yaml`` (``executor:``): ``local`` (the host's shell),
``podman`` (buildah/podman) or ``dagger`` (a Dagger engine); ``auto`` picks one.
Their contract is in ``executors.base``.

Nothing here imports an executor module until one is asked for: ``import
sqldom`` and a build without command steps load none of them, and never the
``dagger`` SDK (about a second to import).

    ex = executors.auto(config.executor)      # raises ExecutorError: what to install
    result = ex.run(CommandJob(...), on_output=print)
    ex.close()
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqldom.executors.base import Executor

# name -> "module:class"; the order is the order ``auto`` prefers among container executors
_REGISTRY = {
    "dagger": "sqldom.executors.dagger:DaggerExecutor",
    "podman": "sqldom.executors.podman:PodmanExecutor",
    "local": "sqldom.executors.local:LocalExecutor",
}
NAMES = tuple(_REGISTRY)
AUTO_ORDER = ("dagger", "podman")       # SPEC §6: dagger when an engine is reachable, else podman
CHOICES = ("auto", *NAMES)              # valid values of ``executor:``


def get(name: str, **options: Any) -> Executor:
    """A new executor by name; ``options`` go to its constructor (e.g. ``scratch_root``).

    Imports only that executor's module. Does not check that it is usable: call
    ``check()`` (or use ``auto``).
    """
    from sqldom.executors.base import ExecutorError
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ExecutorError(f"unknown executor {name!r}",
                            hint=f"use one of {', '.join(CHOICES)}") from None
    module, cls = target.split(":")
    executor: Executor = getattr(import_module(module), cls)(**options)
    return executor


def available(names: tuple[str, ...] = NAMES) -> dict[str, str | None]:
    """For each executor: ``None`` if usable here, else one line saying what to install."""
    return {name: get(name).check() for name in names}


def auto(preference: str = "auto", *, scratch_root: Path | None = None) -> Executor:
    """The executor to use for ``executor: <preference>``, checked to be usable here.

    ``auto``: dagger when a Dagger engine is reachable, else podman when installed.
    A named executor is returned only if its ``check`` passes. Either way, when
    nothing fits, ``ExecutorError`` says what to install; the engine then fails
    the command steps with that message and still builds the documents.
    ``scratch_root``: where jobs get their temporary working folders (default:
    the system's temp folder; the engine may pass ``var/tmp``).
    """
    from sqldom.executors.base import ExecutorError
    if preference != "auto":
        executor = get(preference, scratch_root=scratch_root)
        problem = executor.check()
        if problem is not None:
            raise ExecutorError(f"executor {preference!r} is not usable here", executor=preference, hint=problem)
        return executor
    problems = []
    for name in AUTO_ORDER:
        executor = get(name, scratch_root=scratch_root)
        problem = executor.check()
        if problem is None:
            return executor
        problems.append(f"{name}: {problem}")
    raise ExecutorError("no container executor is available (executor: auto tried dagger, then podman)",
                        executor="auto", hint="; ".join(problems))
