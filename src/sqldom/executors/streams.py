"""Read a child's stdout and stderr as they come: keep them, and pass each line on.

Two reader threads (one per pipe) so neither pipe can fill up and block the
child. Each line goes to ``on_output`` as it arrives, under a lock, so the
engine never gets two lines of one job at once. What is kept is bounded
(``MAX_STREAM_BYTES`` per stream, the end kept, since that is where errors are);
the callback still sees everything.
"""

from __future__ import annotations

import threading
from typing import IO

from sqldom.executors.base import MAX_STREAM_BYTES, OnOutput

LINE_LIMIT = 1 << 16   # a longer line reaches the callback in pieces


class Tail:
    """The last ``limit`` bytes written, and how many were dropped before them."""

    def __init__(self, limit: int = MAX_STREAM_BYTES) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self._lock:
            self.chunks.append(data)
            self.size += len(data)
            if self.size > 2 * self.limit:
                self._trim()

    def _trim(self) -> None:
        data = b"".join(self.chunks)
        cut = len(data) - self.limit
        if cut > 0:
            self.dropped += cut
            data = data[cut:]
        self.chunks, self.size = [data], len(data)

    def text(self) -> str:
        with self._lock:
            self._trim()
            body = b"".join(self.chunks).decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} bytes of output omitted ...]\n{body}"
        return body


class StreamReader:
    """Drain ``stdout`` and ``stderr`` of a child process in background threads."""

    def __init__(self, stdout: IO[bytes], stderr: IO[bytes], on_output: OnOutput | None) -> None:
        self.out = Tail()
        self.err = Tail()
        self._on_output = on_output
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._pump, args=(stdout, self.out), daemon=True),
                         threading.Thread(target=self._pump, args=(stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, pipe: IO[bytes], tail: Tail) -> None:
        try:
            for line in iter(lambda: pipe.readline(LINE_LIMIT), b""):
                tail.add(line)
                if self._on_output is not None:
                    text = line.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r")
                    with self._lock:
                        try:
                            self._on_output(text)
                        except Exception:   # a broken printer must not lose the command's output
                            self._on_output = None
        except (OSError, ValueError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def join(self, timeout: float = 5.0) -> tuple[str, str]:
        """Wait for both pipes to close (bounded: an escaped grandchild may hold one open)."""
        for t in self._threads:
            t.join(timeout)
        return self.out.text(), self.err.text()


def emit_lines(text: str, on_output: OnOutput | None) -> None:
    """For executors that only get output at the end (Dagger): pass it on line by line."""
    if on_output is None or not text:
        return
    for line in text.splitlines():
        on_output(line)


def bounded(text: str) -> str:
    """``text`` cut to its last ``MAX_STREAM_BYTES``, as ``StreamReader`` keeps it."""
    tail = Tail()
    tail.add(text.encode("utf-8", errors="surrogateescape"))
    return tail.text()
