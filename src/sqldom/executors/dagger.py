"""``dagger``: run a command rule in a container on a Dagger engine (the ``dagger-io`` SDK).

``import dagger`` costs about a second, so it happens only inside the functions
that talk to an engine; ``check`` never imports it. The SDK is async; that stays
in here: one Dagger session per process lives on a private event-loop thread
(an anyio blocking portal), opened by the first ``run`` and closed by ``close``,
and every ``run`` (from any engine thread) is a call into it.

The pipeline for one job (``build_pipeline``)::

    container.from(image)
      .withEnvVariable(K, V) ...
      .withDirectory(/sqldom/work, host.directory(<scratch with exactly the inputs>))
      .withWorkdir(/sqldom/work)
      .withExec(["sh", "-c", command], expect: ANY)     # a non-zero exit is data, not an error
    then: sync, exitCode, stdout, stderr, and per declared output
          exists(expectedType: REGULAR_TYPE) + file(...).export(<host path>)

Where the engine is: ``DAGGER_SESSION_PORT``/``DAGGER_SESSION_TOKEN`` (sqldom
started by ``dagger run``) attach to that session; otherwise the SDK starts
``dagger session`` with the CLI named by ``_EXPERIMENTAL_DAGGER_CLI_BIN``, or the
SDK's cached CLI, or a ``dagger`` on PATH, and that CLI reads
``_EXPERIMENTAL_DAGGER_RUNNER_HOST`` (``tcp://``, ``kube-pod://``, ...) to reach a
remote engine, which is how a build scales past one machine. sqldom never lets
the SDK download a CLI: without one, ``check`` says what to install.

Output is not streamed: the SDK returns stdout and stderr when the command
ends, and they reach ``on_output`` then. The timeout cancels the request; the
engine is left to stop the command.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from sqldom.executors.base import TIMEOUT_EXIT_CODE, CommandJob, CommandResult, ExecutorError, OnOutput
from sqldom.executors.streams import bounded, emit_lines
from sqldom.executors.workdir import collect_outputs, remove_tree, scratch_dir, stage_inputs

if TYPE_CHECKING:
    import dagger
    from anyio.from_thread import BlockingPortal

NAME = "dagger"
WORKDIR = "/sqldom/work"
INSTALL = ("install the Dagger CLI (https://docs.dagger.io/install) and a container runtime for its engine, "
           "or run sqldom under `dagger run`")
CLI_ENV = "_EXPERIMENTAL_DAGGER_CLI_BIN"
RUNNER_ENV = "_EXPERIMENTAL_DAGGER_RUNNER_HOST"
PROBE_TIMEOUT = 0.5


# ---- check: fast, no SDK import ------------------------------------------------------------------

def _sdk_version() -> str | None:
    from importlib import metadata
    try:
        return metadata.version("dagger-io")
    except metadata.PackageNotFoundError:
        return None


def _sdk_cached_cli(environ: Mapping[str, str]) -> Path | None:
    """The CLI the SDK downloaded earlier (it would use it without asking), if any."""
    version = _sdk_version()
    if version is None:
        return None
    base = environ.get("XDG_CACHE_HOME", "").strip()
    if base:
        cache = Path(base).expanduser()
    else:
        try:
            import platformdirs
            cache = platformdirs.user_cache_path()
        except ImportError:
            cache = Path("~/.cache").expanduser()
    path = cache / "dagger" / f"dagger-{version}"
    return path if os.access(path, os.X_OK) else None


def find_cli(environ: Mapping[str, str] | None = None,
             which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The Dagger CLI the SDK will start: $_EXPERIMENTAL_DAGGER_CLI_BIN, its cache, or PATH."""
    env = os.environ if environ is None else environ
    if explicit := env.get(CLI_ENV):
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    cached = _sdk_cached_cli(env)
    if cached is not None:
        return str(cached)
    return which("dagger")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def _runner_problem(runner: str) -> str | None:
    """What is wrong with $_EXPERIMENTAL_DAGGER_RUNNER_HOST, where that can be told quickly."""
    url = urlsplit(runner)
    if url.scheme == "tcp":
        try:
            port = url.port
        except ValueError:
            port = None
        if not url.hostname or port is None:
            return f"{RUNNER_ENV}={runner} is not tcp://HOST:PORT"
        if not _reachable(url.hostname, port):
            return f"no Dagger engine answers at {RUNNER_ENV}={runner}"
    elif url.scheme == "unix" and not os.path.exists(url.path):
        return f"no Dagger engine socket at {RUNNER_ENV}={runner}"
    return None


def engine_problem(environ: Mapping[str, str] | None = None,
                   which: Callable[[str], str | None] = shutil.which) -> str | None:
    """``None`` when a Dagger engine looks reachable, else one line saying what to do. Under a second."""
    env = os.environ if environ is None else environ
    if port := env.get("DAGGER_SESSION_PORT"):
        if not env.get("DAGGER_SESSION_TOKEN"):
            return "DAGGER_SESSION_PORT is set but DAGGER_SESSION_TOKEN is not; run sqldom under `dagger run`"
        try:
            number = int(port)
        except ValueError:
            return f"DAGGER_SESSION_PORT={port} is not a port number"
        if not _reachable("127.0.0.1", number):
            return f"no Dagger session answers on DAGGER_SESSION_PORT={port}; run sqldom under `dagger run`"
        return None
    if find_cli(env, which) is None:
        if explicit := env.get(CLI_ENV):
            return f"{CLI_ENV}={explicit} is not an executable file"
        if runner := env.get(RUNNER_ENV):
            return f"{RUNNER_ENV}={runner} is set, but the Dagger CLI that connects to it is missing: {INSTALL}"
        return INSTALL
    if runner := env.get(RUNNER_ENV):
        return _runner_problem(runner)
    return None


# ---- the pipeline: pure builders, async runner ---------------------------------------------------

def build_pipeline(client: dagger.Client, job: CommandJob, inputs_dir: str, command: str) -> dagger.Container:
    """The container that runs ``job``; building it sends nothing (the SDK is lazy)."""
    import dagger
    assert job.image
    src = client.host().directory(inputs_dir)
    for d in job.output_dirs():
        src = src.with_new_directory(d)
    ctr = client.container().from_(job.image)
    for k, v in sorted(job.env.items()):
        ctr = ctr.with_env_variable(k, v)
    return (ctr.with_directory(WORKDIR, src)
               .with_workdir(WORKDIR)
               .with_exec(["sh", "-c", command], expect=dagger.ReturnType.ANY))


async def run_pipeline(client: dagger.Client, job: CommandJob, inputs_dir: Path, outputs_dir: Path,
                       on_output: OnOutput | None = None) -> CommandResult:
    """Run ``job`` on the engine behind ``client``: inputs from ``inputs_dir``, outputs to ``outputs_dir``."""
    import anyio
    import dagger
    command = job.rendered()
    ctr = build_pipeline(client, job, str(inputs_dir), command)
    started = time.monotonic()

    def result(code: int, stdout: str, stderr: str, *, timed_out: bool = False,
               outputs: Mapping[str, bytes] | None = None, missing: tuple[str, ...] = ()) -> CommandResult:
        emit_lines(stdout, on_output)
        emit_lines(stderr, on_output)
        return CommandResult(executor=NAME, command=command, exit_code=code, stdout=bounded(stdout),
                             stderr=bounded(stderr),
                             outputs=outputs or {}, missing_outputs=missing, timed_out=timed_out,
                             duration_ms=int((time.monotonic() - started) * 1000), detail="dagger")

    try:
        try:
            with anyio.fail_after(job.timeout):
                ctr = await ctr.sync()
        except TimeoutError:
            return result(TIMEOUT_EXIT_CODE, "", "", timed_out=True)
        except dagger.ExecError as e:        # e.g. killed by a signal (expect=ANY covers plain exit codes)
            return result(e.exit_code, e.stdout, e.stderr)
        code = await ctr.exit_code()
        stdout = await ctr.stdout()
        stderr = await ctr.stderr()
        if code != 0:
            return result(code, stdout, stderr)
        for rel in job.outputs:
            path = f"{WORKDIR}/{rel}"
            if await ctr.exists(path, expected_type=dagger.ExistsType.REGULAR_TYPE):
                target = outputs_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                await ctr.file(path).export(str(target))
        found, missing = collect_outputs(job, outputs_dir)
        return result(code, stdout, stderr, outputs=found, missing=missing)
    except dagger.DaggerError as e:
        raise _tool_error(job, e) from e


def _tool_error(job: CommandJob, e: BaseException) -> ExecutorError:
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    import dagger
    if isinstance(e, dagger.QueryError):
        return ExecutorError(f"step {job.step}: the Dagger engine could not run the container: {first}",
                             executor=NAME, hint=f"check the image name ({job.image}) and that the engine "
                                                 "can reach its registry")
    return ExecutorError(f"step {job.step}: lost the Dagger engine: {first}", executor=NAME, hint=INSTALL)


# ---- the session: one per process, on a private event loop ---------------------------------------

class _Session:
    def __init__(self, connect_timeout: float) -> None:
        import anyio.from_thread
        import dagger
        config = dagger.Config(retry=None, timeout=dagger.Timeout(None, connect=connect_timeout))
        self._portal_cm: AbstractContextManager[BlockingPortal] = anyio.from_thread.start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        try:
            self.client: dagger.Client = dagger.dag
            self._conn_cm: AbstractContextManager[Any] = self.portal.wrap_async_context_manager(
                dagger.connection(config))
            self._conn_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise

    def close(self) -> None:
        try:
            self._conn_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)


_session_lock = threading.Lock()
_session: _Session | None = None


def _open_session(connect_timeout: float) -> _Session:
    global _session
    with _session_lock:
        if _session is None:
            atexit.register(close_session)     # the portal's thread would otherwise keep the process alive
            if not os.environ.get("DAGGER_SESSION_PORT") and not os.environ.get(CLI_ENV):
                # the SDK only knows its env var and its cache; point it at the CLI we found
                # rather than let it try to download one
                cli = find_cli()
                if cli is None:
                    raise ExecutorError("no Dagger CLI found", executor=NAME, hint=INSTALL)
                os.environ[CLI_ENV] = cli
            import dagger
            try:
                _session = _Session(connect_timeout)
            except dagger.DaggerError as e:
                msg = str(e).strip().splitlines()
                raise ExecutorError(f"cannot connect to a Dagger engine: {msg[0] if msg else type(e).__name__}",
                                    executor=NAME, hint=INSTALL) from e
        return _session


def open_session(connect_timeout: float = 10.0) -> _Session:
    """The process's one Dagger session, opened on first use.

    Public so that other Dagger users in sqldom (the workshop chain) share this
    session and its event-loop thread instead of starting a second engine session.
    """
    return _open_session(connect_timeout)


def close_session() -> None:
    global _session
    with _session_lock:
        if _session is not None:
            session, _session = _session, None
            session.close()


class DaggerExecutor:
    name: ClassVar[str] = NAME
    live_output: ClassVar[bool] = False

    def __init__(self, *, scratch_root: Path | None = None, connect_timeout: float = 10.0) -> None:
        self.scratch_root = scratch_root
        self.connect_timeout = connect_timeout

    def check(self) -> str | None:
        return engine_problem()

    def close(self) -> None:
        close_session()

    def run(self, job: CommandJob, *, on_output: OnOutput | None = None) -> CommandResult:
        if not job.image:
            raise ExecutorError(f"step {job.step}: the dagger executor needs an image", executor=NAME,
                                hint="set `image:` on the rule, or use `executor: local`")
        job.rendered()                                   # refuse a bad template before connecting
        if (problem := self.check()) is not None:
            raise ExecutorError(f"step {job.step}: no Dagger engine is reachable", executor=NAME, hint=problem)
        session = _open_session(self.connect_timeout)
        scratch = scratch_dir(self.scratch_root, job.step)
        try:
            inputs, outputs = scratch / "in", scratch / "out"
            inputs.mkdir()
            outputs.mkdir()
            stage_inputs(job, inputs)
            return session.portal.call(run_pipeline, session.client, job, inputs, outputs, on_output)
        finally:
            remove_tree(scratch)
