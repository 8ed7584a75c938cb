"""Container workshops: a chain of OCI images, one per step, recorded in the ``steps`` table.

``spec`` validates the ``workshop``/``base``/``steps`` keys of sqldom.yaml;
``chain`` decides which steps are due and records them; a backend builds the
images: ``podman`` (buildah and podman's store) or ``dagger`` (a Dagger
engine). Backends are imported only when a workshop has something to check
or build, so a documents-only build loads none of this.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqldom.workshop.backend import ChainBackend

_BACKENDS = {
    "dagger": "sqldom.workshop.dagger:DaggerChain",
    "podman": "sqldom.workshop.podman:PodmanChain",
}


def chain_backend(preference: str = "auto", *, scratch_root: Path | None = None) -> ChainBackend:
    """The chain backend for ``executor: <preference>``, checked to be usable here.

    ``auto``: dagger when a Dagger engine is reachable, else podman. Raises
    ``ExecutorError`` saying what to install when none fits.
    """
    from sqldom.executors.base import ExecutorError
    names = ["dagger", "podman"] if preference == "auto" else [preference]
    problems = []
    for name in names:
        if name not in _BACKENDS:
            raise ExecutorError(f"executor {name!r} cannot build workshop images", executor=name,
                                hint="use executor: auto, podman or dagger")
        if name == "dagger":
            from sqldom.executors.dagger import DaggerExecutor
            problem = DaggerExecutor().check()
        else:
            problem = None
        if problem is None:
            module, cls = _BACKENDS[name].split(":")
            chain: ChainBackend = getattr(import_module(module), cls)(scratch_root=scratch_root)
            problem = chain.check()
            if problem is None:
                return chain
        problems.append(f"{name}: {problem}")
    raise ExecutorError("no executor can build the workshop's images here"
                        + (" (executor: auto tried dagger, then podman)" if preference == "auto" else ""),
                        executor=preference, hint="; ".join(problems))
