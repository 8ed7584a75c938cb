"""Headless Chromium for the tests, driven over the DevTools protocol through a pipe.

``--remote-debugging-pipe`` makes Chromium read commands on fd 3 and write replies
on fd 4 as NUL-terminated JSON: no websocket client, no debugging port, nothing to
download. Debian's ``chromium`` package is enough (``.ci/run`` installs it); tests
skip when no Chromium is found.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")

# Root needs --no-sandbox; without the networking switches Chromium's own background
# connections (updates, sync, variations) fail on a closed network and can disturb page loads.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
         "--remote-debugging-pipe")


def find_chromium() -> str | None:
    """``$SQLDOM_CHROMIUM``, else the first Chromium-like browser on PATH, else None."""
    explicit = os.environ.get("SQLDOM_CHROMIUM")
    if explicit:
        return explicit
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    pass


def _high(fd: int) -> int:
    """A copy of ``fd`` numbered 10 or more, so bash's ``3<&a 4>&b`` cannot clobber it; closes ``fd``."""
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return copy


class Browser:
    """One headless Chromium with a fresh profile; ``open`` gives a ``Page``. Use as a context manager."""

    def __init__(self, executable: str | None = None, timeout: float = 30.0) -> None:
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError("no Chromium found (apt-get install chromium, or set SQLDOM_CHROMIUM)")
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="sqldom-chromium-"))
        self.log_path = self.profile / "chromium.log"
        cmd_r, cmd_w = os.pipe()          # we write commands, Chromium reads them on fd 3
        out_r, out_w = os.pipe()          # Chromium writes replies on fd 4, we read them
        cmd_r, out_w = _high(cmd_r), _high(out_w)
        script = f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w} {cmd_r}<&- {out_w}>&-'
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["bash", "-c", script, executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(cmd_r, out_w),
                start_new_session=True)
        os.close(cmd_r)
        os.close(out_w)
        self._w, self._r = cmd_w, out_r
        self._buf = b""
        self._id = 0
        self._closed = False

    # ---- protocol ----------------------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """One command; its result, or BrowserError with Chromium's message. Events are dropped."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._w, data):]
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer in time; its log: {self.log_path}")
            ready, _, _ = select.select([self._r], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    raise BrowserError(f"Chromium exited (code {self.proc.poll()}); its log:\n{self.log()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # ---- pages -------------------------------------------------------------------------------------------

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, target, session)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.send("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page; BrowserError if it threw or the page is mid-navigation."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                    session=self.session)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 15.0, interval: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy; its value. AssertionError naming the last value on timeout."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.evaluate(expression)
                if last:
                    return last
            except BrowserError as e:        # a reload in progress destroys the execution context
                last = e
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout}s, {expression} is still {last!r}")
            time.sleep(interval)

    def text(self) -> str:
        value = self.evaluate("document.body ? document.body.innerText : ''")
        return str(value)

    def close(self) -> None:
        try:
            self.browser.send("Target.closeTarget", {"targetId": self.target}, timeout=5)
        except BrowserError:
            pass
