"""The preview server of ``sqldom watch --serve``: ``build/`` over HTTP on 127.0.0.1, with live reload.

Standard library only (``http.server``). Every request resolves its path against
``build/`` afresh, because the watch may delete and recreate the folder between two
requests. Open pages learn about new builds through server-sent events: HTML
responses (and only those) get one ``<script src="/__sqldom/live.js">`` tag added
on the way out; the bytes in ``build/`` are never touched, so the preview shows
exactly what a deployment would serve, plus that one tag.

The page script compares the server's id and build generation it was served with
against what ``/__sqldom/events`` announces when it connects, so a build that
finished while the page was loading, or a restarted server, still reloads the page.
Hidden tabs drop their stream (browsers allow only six HTTP/1.x connections per
host, an open event stream holds one) and catch up when shown again.

Nothing is logged per request unless a ``log`` callable is given; a client that
goes away mid-response is normal and never shows a traceback.
"""

from __future__ import annotations

import errno
import html
import json
import mimetypes
import os
import secrets
import shutil
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from sqldom.errors import UsageError

PREFIX = "/__sqldom/"                 # reserved: a build/__sqldom/ folder is not served
EVENTS = PREFIX + "events"
SCRIPT = PREFIX + "live.js"
KEEPALIVE = 15.0                      # seconds between SSE comments, so proxies keep the stream open
MAX_CHANGED = 50                      # paths named in one reload event (bulk checkouts change hundreds)

# Deterministic types for what sites are made of; the platform's tables can disagree (e.g. .js).
_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css", ".js": "text/javascript",
    ".mjs": "text/javascript", ".json": "application/json", ".svg": "image/svg+xml",
    ".txt": "text/plain", ".md": "text/markdown", ".xml": "application/xml", ".wasm": "application/wasm",
    ".webp": "image/webp", ".woff2": "font/woff2", ".woff": "font/woff", ".ico": "image/x-icon",
}
_UTF8 = ("text/", "application/json", "application/xml", "image/svg+xml")

LIVE_JS = """\
// sqldom live reload: served by `sqldom watch --serve`, never part of build/.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || !window.EventSource) return;
  var server = me.dataset.server, generation = Number(me.dataset.generation);
  var source = null, timer = null;
  function stale(info) { return info.server !== server || info.generation > generation; }
  function check(event) {
    var info;
    try { info = JSON.parse(event.data); } catch (e) { return; }
    if (stale(info)) { disconnect(); location.reload(); }
  }
  function connect() {
    if (source || document.visibilityState === "hidden") return;
    clearTimeout(timer);
    source = new EventSource(me.dataset.events);
    source.addEventListener("hello", check);
    source.addEventListener("reload", check);
    source.onerror = function () {
      // The browser retries by itself while the stream is CONNECTING; once CLOSED
      // (server gone, restarted, refused) it is up to us.
      if (source && source.readyState === EventSource.CLOSED) {
        disconnect();
        timer = setTimeout(connect, 1000);
      }
    };
  }
  function disconnect() {
    if (source) { source.close(); source = null; }
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") disconnect(); else connect();
  });
  window.addEventListener("pagehide", disconnect);
  window.addEventListener("pageshow", connect);
  connect();
})();
"""


def inject(page: bytes, tag: bytes) -> bytes:
    """``page`` with ``tag`` before its last ``</body>``, or at the end when it has none."""
    at = page.lower().rfind(b"</body")
    return page + tag if at < 0 else page[:at] + tag + page[at:]


def url_segments(target: str) -> list[str] | None:
    """The path segments of a request target, percent-decoded; None if it tries to leave the root.

    Decoding comes before splitting, so ``%2e%2e%2f`` is seen as ``../``. An absolute
    URL (proxy form) is reduced to its path; ``//etc`` is a path here, not a host.
    """
    if target.startswith(("http://", "https://")):
        target = urlsplit(target).path or "/"
    target = target.split("#", 1)[0].split("?", 1)[0]
    # surrogateescape: a %ff names the same file as the OS's own undecodable byte would
    path = unquote(target, errors="surrogateescape") if "%" in target else target
    if "\x00" in path or "\\" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return parts


def content_type(path: Path) -> str:
    kind = _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith(_UTF8) else kind


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class _Server(ThreadingHTTPServer):
    """Tracks its connections so ``close`` can end them (event streams never end on their own)."""

    daemon_threads = True
    preview: PreviewServer

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, preview: PreviewServer) -> None:
        self.address_family = family
        self.preview = preview
        self.lock = threading.Lock()
        self.connections: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, a reverse DNS lookup that can
        # stall for seconds on a machine without a resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections[threading.current_thread()] = request
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or (isinstance(exc, OSError) and self.preview.closing):
            return                                   # the client went away, or close() cut it off
        if self.preview.log is not None:
            super().handle_error(request, client_address)
        else:
            print(f"sqldom: preview server: {type(exc).__name__}: {exc}", file=sys.stderr)


class PreviewServer:
    """Serves ``build_dir`` on ``host:port`` (port 0 picks a free one) and live-reloads open pages.

    ``log`` receives one line per request when given; by default the server is silent.
    ``keepalive`` is the interval of the comments that keep idle event streams open.
    """

    def __init__(self, build_dir: Path, port: int = 8000, host: str = "127.0.0.1", *,
                 log: Callable[[str], None] | None = None, keepalive: float = KEEPALIVE) -> None:
        self.build_dir = Path(build_dir)
        self.host = host
        self.port = port
        self.log = log
        self.keepalive = keepalive
        self.id = secrets.token_hex(8)        # a restarted server is a new id: pages reload on reconnect
        self.generation = 0
        self.changed: list[str] = []
        self.closing = False
        self.cond = threading.Condition()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Bind and serve in a daemon thread; a port in use (or not ours to take) is a UsageError."""
        if self._httpd is not None:
            return
        self.closing = False
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._httpd = _Server((self.host, self.port), family, self)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UsageError(f"cannot serve on {self.host}:{self.port}: the port is already in use",
                                 hint="stop the other server, or pick another port with --port N "
                                      "(--port 0 picks a free one)") from None
            raise UsageError(f"cannot serve on {self.host}:{self.port}: {e.strerror or e}",
                             hint="pick another port with --port N (ports below 1024 need privileges)") from None
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"sqldom-preview-{self.port}", daemon=True)
        self._thread.start()

    def reload(self, changed: Iterable[str] = ()) -> None:
        """Tell every open page to reload (``changed``: the output paths, passed along for information)."""
        with self.cond:
            self.generation += 1
            self.changed = sorted(set(changed))[:MAX_CHANGED]
            self.cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving: end every event stream and connection, wait for their threads (bounded)."""
        httpd, self._httpd = self._httpd, None
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        if httpd is None:
            return
        httpd.shutdown()
        with httpd.lock:
            connections = dict(httpd.connections)
        for sock in connections.values():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in connections:
            thread.join(timeout)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> PreviewServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def tag(self) -> bytes:
        """The script tag added to HTML responses, carrying the generation the page was served at."""
        with self.cond:
            generation = self.generation
        return (f'<script src="{SCRIPT}" data-events="{EVENTS}" data-server="{self.id}" '
                f'data-generation="{generation}"></script>').encode()

    def wait_event(self, seen: int) -> int | None:
        """Block until the generation passes ``seen`` (its value), the keep-alive interval passes
        (``seen``), or the server closes (None)."""
        with self.cond:
            self.cond.wait_for(lambda: self.closing or self.generation > seen, self.keepalive)
            return None if self.closing else self.generation


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "sqldom-preview"

    def version_string(self) -> str:
        return self.server_version

    protocol_version = "HTTP/1.0"     # one response per connection: nothing idles between requests
    timeout = 30                       # a client that connects and says nothing does not keep a thread

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log = self.server.preview.log
        if log is not None:
            log(f"{self.address_string()} {format % args}")

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    # ---- routing ---------------------------------------------------------------------------------------

    def _serve(self, body: bool) -> None:
        preview = self.server.preview
        try:
            if self.path.split("?", 1)[0] == EVENTS:
                self._events(body)
            elif self.path.split("?", 1)[0] == SCRIPT:
                self._send(HTTPStatus.OK, "text/javascript; charset=utf-8", LIVE_JS.encode(), body,
                           cache="no-cache")
            else:
                self._static(preview.build_dir, body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True          # the client left; so do we, quietly

    def _static(self, build_dir: Path, body: bool) -> None:
        parts = url_segments(self.path)
        root = build_dir.resolve()
        if not root.is_dir():
            return self._not_found(body, built=False)
        if parts is None:
            return self._not_found(body)
        try:
            real = root.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError):          # missing, a symlink loop, a name too long
            return self._not_found(body)
        if not _within(real, root):              # a symlink pointing out of build/
            return self._not_found(body)
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if real.is_dir():
            if not path.endswith("/"):            # relative links need the slash; rebuilt, so //x stays local
                query = self.path[len(path):]
                return self._redirect("/" + "".join(quote(p) + "/" for p in parts) + query)
            index = real / "index.html"
            if index.is_file():
                return self._file(index, body)
            return self._listing(real, root, parts, body)
        if path.endswith("/"):                  # a file is not a folder
            return self._not_found(body)
        return self._file(real, body)

    # ---- responses -------------------------------------------------------------------------------------

    def _file(self, path: Path, body: bool) -> None:
        kind = content_type(path)
        try:
            f = path.open("rb")
        except OSError:                          # deleted or replaced since it was resolved
            return self._not_found(body)
        with f:
            if kind.startswith("text/html"):
                return self._send(HTTPStatus.OK, kind, inject(f.read(), self.server.preview.tag()), body)
            st = os.fstat(f.fileno())
            etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
            if etag in {t.strip() for t in self.headers.get("If-None-Match", "").split(",")}:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.send_header("ETag", etag)
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                return None
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(st.st_size))
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", "no-cache")   # revalidate: a new build changes the ETag
            self.end_headers()
            if body:
                shutil.copyfileobj(f, self.wfile)
        return None

    def _listing(self, folder: Path, root: Path, parts: list[str], body: bool) -> None:
        title = "/" + "".join(p + "/" for p in parts)
        items = [] if not parts else ['<li><a href="../">../</a></li>']
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError:
            entries = []
        for entry in entries:
            try:
                if not _within(entry.resolve(strict=True), root):
                    continue
            except (OSError, RuntimeError):
                continue
            name = entry.name + ("/" if entry.is_dir() else "")
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            href = quote(name, errors="surrogateescape")
            items.append(f'<li><a href="{html.escape(href)}">{html.escape(shown)}</a></li>')
        page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"</head>\n<body><h1>{html.escape(title)}</h1>\n<ul>\n" + "\n".join(items) + "\n</ul>\n</body></html>\n")
        data = page.encode("utf-8", "replace")           # names that are not UTF-8 show as "?"
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", inject(data, self.server.preview.tag()), body)

    def _not_found(self, body: bool, built: bool = True) -> None:
        why = ("Nothing in build/ answers to this address (yet: this page reloads when a build writes it)."
               if built else "build/ does not exist yet: this page reloads after the first build.")
        page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n"
                f"<body><h1>404 Not Found</h1>\n<p>{why}</p>\n<p><a href=\"/\">Home</a></p>\n</body></html>\n")
        self._send(HTTPStatus.NOT_FOUND, "text/html; charset=utf-8",
                   inject(page.encode(), self.server.preview.tag()), body)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.FOUND)      # not 301: browsers cache those, and the folder may go
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _send(self, status: HTTPStatus, kind: str, data: bytes, body: bool, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _events(self, body: bool) -> None:
        """A text/event-stream: ``hello`` now, ``reload`` per new generation, a comment every keepalive."""
        preview = self.server.preview
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")     # nginx and friends: do not buffer the stream
        self.end_headers()
        if not body:
            return
        with preview.cond:
            seen = preview.generation
        self._event("hello", {"server": preview.id, "generation": seen}, retry=1000)
        while True:
            now = preview.wait_event(seen)
            if now is None:
                return
            if now == seen:
                self.wfile.write(b": keep-alive\n\n")
            else:
                seen = now
                with preview.cond:
                    changed = list(preview.changed)
                self._event("reload", {"server": preview.id, "generation": seen, "changed": changed})
            self.wfile.flush()

    def _event(self, name: str, data: dict[str, Any], retry: int | None = None) -> None:
        head = f"retry: {retry}\n" if retry is not None else ""
        self.wfile.write(f"{head}event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()
