"""The preview server of ``sqldom watch --serve`` (issue 3, item 4): real HTTP over 127.0.0.1, then a real
headless Chromium that must show new text after a rebuild without anyone pressing reload.

``run_watch_serve_browser_check`` at the end is the full loop through a ``sqldom watch --serve``
subprocess, for the watch tests to call once the CLI has the flag.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqldom.errors import UsageError
from sqldom.serve import EVENTS, SCRIPT, PreviewServer, content_type, inject, url_segments
from tests.e2e.browser import Browser, find_chromium

SECRET = "TOP SECRET, outside build/"
SCRIPT_TAG = re.compile(rb'<script src="/__sqldom/live\.js" [^>]*data-generation="(\d+)"></script>')

needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="headless Chromium is not installed (apt-get install chromium); "
                                           "CI installs it")


# ---- helpers ---------------------------------------------------------------------------------------------

def get(server: PreviewServer, path: str, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw(server: PreviewServer, request_target: str) -> tuple[int, bytes]:
    """A request line sent byte for byte (no client-side normalisation): status and whole response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"GET {request_target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def digest_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def stream(server: PreviewServer) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", EVENTS)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/event-stream")
    return conn, resp


def next_event(resp: http.client.HTTPResponse) -> tuple[str, str]:
    """The next ``event``/``data`` pair of an SSE stream, or ("comment", text)."""
    name, data, comment = "message", "", None
    while True:
        line = resp.readline().decode()
        assert line, "the stream ended"
        line = line.rstrip("\n")
        if line == "":
            return ("comment", comment) if comment is not None and not data else (name, data)
        if line.startswith(":"):
            comment = line[1:].strip()
        field, _, value = line.partition(": ")
        if field == "event":
            name = value
        elif field == "data":
            data = value


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A build/ folder with pages, assets, sub folders and symlinks pointing out of it."""
    build = tmp_path / "site" / "build"
    for where in (tmp_path, tmp_path / "site"):               # what ../ and ../../ would reach
        where.mkdir(exist_ok=True)
        (where / "secret.txt").write_text(SECRET)
    files = {
        "index.html": "<!DOCTYPE html>\n<html><head><title>Home</title></head>\n<body><p>Home page</p>\n</body></html>\n",
        "page.html": "<html><body><p>x</p></BODY>\n</html>",
        "bare.html": "<p>no body tag at all</p>",
        "style.css": "body { color: red }\n",
        "app.js": "console.log('</body>')\n",
        "data.json": '{"a": 1}\n',
        "notes.txt": "caf\u00e9 </body>\n",
        "blob.xyz123": "??",
        "sub/index.html": "<html><body><p>Sub index</p></body></html>",
        "list/one.txt": "1\n",
        "list/<two> & \"three\".txt": "2\n",
        "list/deeper/x.txt": "x\n",
        "with space.html": "<body>spaced</body>",
    }
    for rel, text in files.items():
        path = build / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (build / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (build / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (build / "list" / "leakdir").symlink_to(tmp_path)
    (build / "inside.txt").symlink_to(build / "list" / "one.txt")
    return build


@pytest.fixture
def server(site: Path) -> Iterator[PreviewServer]:
    with PreviewServer(site, port=0) as s:
        yield s


# ---- pure functions --------------------------------------------------------------------------------------

def test_inject_goes_before_the_last_closing_body_tag_in_any_case_or_at_the_end() -> None:
    tag = b"<script></script>"
    assert inject(b"<body>a</body></html>", tag) == b"<body>a<script></script></body></html>"
    assert inject(b"<BODY>a</BODY >", tag) == b"<BODY>a<script></script></BODY >"
    assert inject(b"<body>a</body><!-- x --></body>", tag) == b"<body>a</body><!-- x --><script></script></body>"
    assert inject(b"<p>no body</p>", tag) == b"<p>no body</p><script></script>"
    assert inject(b"", tag) == tag


@pytest.mark.parametrize(("target", "expected"), [
    ("/", []),
    ("/a/b.html", ["a", "b.html"]),
    ("/a/./b.html?x=1#frag", ["a", "b.html"]),
    ("//etc/passwd", ["etc", "passwd"]),                 # a path under build/, never a host or an absolute path
    ("/%2Fetc%2Fpasswd", ["etc", "passwd"]),
    ("/with%20space.html", ["with space.html"]),
    ("http://example.org/a.html", ["a.html"]),
    ("/..", None),
    ("/a/../../b", None),
    ("/%2e%2e/b", None),
    ("/%2E%2E%2Fb", None),
    ("/a/..%2f..%2fb", None),
    ("/..%5cb", None),
    ("/a%00.html", None),
])
def test_url_segments(target: str, expected: list[str] | None) -> None:
    assert url_segments(target) == expected


def test_content_types() -> None:
    assert content_type(Path("a.html")) == "text/html; charset=utf-8"
    assert content_type(Path("a.HTM")) == "text/html; charset=utf-8"
    assert content_type(Path("a.css")) == "text/css; charset=utf-8"
    assert content_type(Path("a.js")) == "text/javascript; charset=utf-8"
    assert content_type(Path("a.svg")) == "image/svg+xml; charset=utf-8"
    assert content_type(Path("a.png")) == "image/png"
    assert content_type(Path("a.xyz123")) == "application/octet-stream"


# ---- serving files ---------------------------------------------------------------------------------------

def test_root_serves_index_html_with_the_script_injected_and_no_store(server: PreviewServer, site: Path) -> None:
    status, headers, body = get(server, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert int(headers["content-length"]) == len(body)
    on_disk = (site / "index.html").read_bytes()
    assert len(SCRIPT_TAG.findall(body)) == 1
    assert SCRIPT_TAG.sub(b"", body) == on_disk
    assert body.index(b"<script src=") == on_disk.index(b"</body>"), "right before </body>"


def test_html_injection_spots(server: PreviewServer, site: Path) -> None:
    _, _, page = get(server, "/page.html")
    assert re.fullmatch(rb"<html><body><p>x</p><script src=[^>]*></script></BODY>\n</html>", page), page
    _, _, bare = get(server, "/bare.html")
    assert bare.startswith(b"<p>no body tag at all</p><script src=")
    assert bare.endswith(b"</script>")
    status, _, spaced = get(server, "/with%20space.html")
    assert status == 200 and spaced.startswith(b"<body>spaced<script")


@pytest.mark.parametrize(("path", "kind"), [
    ("/style.css", "text/css; charset=utf-8"),
    ("/app.js", "text/javascript; charset=utf-8"),
    ("/data.json", "application/json; charset=utf-8"),
    ("/notes.txt", "text/plain; charset=utf-8"),
    ("/image.png", "image/png"),
    ("/blob.xyz123", "application/octet-stream"),
    ("/inside.txt", "text/plain; charset=utf-8"),        # a symlink that stays inside build/ is fine
])
def test_other_files_are_served_byte_for_byte_with_their_type(server: PreviewServer, site: Path,
                                                               path: str, kind: str) -> None:
    status, headers, body = get(server, path)
    assert status == 200
    assert headers["content-type"] == kind
    assert body == (site / path[1:]).read_bytes(), "no injection outside HTML, even with </body> in the text"
    assert headers["cache-control"] == "no-cache" and headers["etag"]


def test_unchanged_assets_answer_304_and_a_rewrite_changes_the_etag(server: PreviewServer, site: Path) -> None:
    _, headers, _ = get(server, "/style.css")
    status, again, body = get(server, "/style.css", headers={"If-None-Match": headers["etag"]})
    assert (status, body, again["etag"]) == (304, b"", headers["etag"])
    (site / "style.css").write_text("body { color: blue; }\n")
    status, _, body = get(server, "/style.css", headers={"If-None-Match": headers["etag"]})
    assert (status, body) == (200, b"body { color: blue; }\n")


def test_head_sends_the_headers_of_get_and_no_body(server: PreviewServer) -> None:
    for path in ("/", "/style.css", "/list/", "/missing.html"):
        g_status, g_headers, g_body = get(server, path)
        h_status, h_headers, h_body = get(server, path, method="HEAD")
        assert h_status == g_status
        assert h_body == b""
        assert h_headers["content-type"] == g_headers["content-type"]
        assert int(h_headers["content-length"]) == len(g_body)


def test_folders(server: PreviewServer) -> None:
    status, _, body = get(server, "/sub/")
    assert status == 200 and body.startswith(b"<html><body><p>Sub index</p><script")

    status, headers, _ = get(server, "/sub?x=1")
    assert (status, headers["location"]) == (302, "/sub/?x=1"), "relative links in sub/index.html need the slash"

    status, headers, body = get(server, "/list/")
    assert status == 200 and headers["cache-control"] == "no-store"
    text = body.decode()
    assert '<a href="one.txt">one.txt</a>' in text
    assert '<a href="deeper/">deeper/</a>' in text
    assert "&lt;two&gt; &amp; &quot;three&quot;.txt" in text and "<two>" not in text
    assert '<a href="%3Ctwo%3E%20%26%20%22three%22.txt">' in text
    assert "leakdir" not in text, "a symlink out of build/ is not listed"
    assert len(SCRIPT_TAG.findall(body)) == 1, "listings reload too"
    status, _, body = get(server, "/list/%3Ctwo%3E%20%26%20%22three%22.txt")
    assert (status, body) == (200, b"2\n")

    assert get(server, "/notes.txt/")[0] == 404, "a file is not a folder"


def test_file_names_that_are_not_utf8_are_listed_and_served(server: PreviewServer, site: Path) -> None:
    with open(os.fsencode(site / "list") + b"/caf\xe9.txt", "wb") as f:    # Latin-1 bytes, as old archives have
        f.write(b"latin\n")
    status, _, body = get(server, "/list/")
    assert status == 200 and b'<a href="caf%E9.txt">caf\xef\xbf\xbd.txt</a>' in body
    assert get(server, "/list/caf%E9.txt")[2] == b"latin\n"


def test_missing_files_get_a_404_page_that_reloads_too(server: PreviewServer) -> None:
    status, headers, body = get(server, "/nope/missing.html")
    assert status == 404
    assert headers["content-type"] == "text/html; charset=utf-8" and headers["cache-control"] == "no-store"
    assert b"404 Not Found" in body and len(SCRIPT_TAG.findall(body)) == 1


def test_unsupported_methods_are_refused(server: PreviewServer, site: Path) -> None:
    before = digest_tree(site)
    for method in ("POST", "PUT", "DELETE"):
        assert get(server, "/index.html", method=method)[0] == 501
    assert digest_tree(site) == before


@pytest.mark.parametrize("target", [
    "/../secret.txt",
    "/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/%2e%2e/secret.txt",
    "/sub/..%2f..%2fsecret.txt",
    "/sub/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/..%5csecret.txt",
    "/..\\secret.txt",
    "http://127.0.0.1/../secret.txt",
    "/leak.txt",                       # a symlink to a file outside build/
    "/list/leakdir/secret.txt",        # through a symlinked folder outside build/
    "/list/leakdir/",
    "/%00secret.txt",
    "/sub/%ff%fe",
])
def test_no_way_out_of_build(server: PreviewServer, target: str) -> None:
    status, data = raw(server, target)
    assert status == 404, data[:200]
    assert SECRET.encode() not in data


def test_absolute_paths_are_paths_under_build(server: PreviewServer, tmp_path: Path) -> None:
    secret = str(tmp_path / "secret.txt")
    for target in ("/" + secret, "/" + secret.replace("/", "%2F"), "//" + secret.lstrip("/")):
        status, data = raw(server, target)
        assert status == 404 and SECRET.encode() not in data, target


def test_build_is_resolved_per_request_it_may_vanish_and_come_back(tmp_path: Path) -> None:
    build = tmp_path / "build"
    with PreviewServer(build, port=0) as server:
        status, _, body = get(server, "/")
        assert status == 404 and b"does not exist yet" in body
        build.mkdir()
        (build / "index.html").write_text("<p>one</p>")
        assert get(server, "/")[2].startswith(b"<p>one</p>")
        for p in build.iterdir():
            p.unlink()
        build.rmdir()
        assert get(server, "/")[0] == 404
        build.mkdir()
        (build / "index.html").write_text("<p>two</p>")
        assert get(server, "/")[2].startswith(b"<p>two</p>")


def test_nothing_is_ever_written_to_build(server: PreviewServer, site: Path) -> None:
    before = digest_tree(site)
    for path in ("/", "/index.html", "/page.html", "/bare.html", "/sub/", "/list/", "/style.css", "/nope"):
        get(server, path)
    server.reload(["index.html"])
    assert digest_tree(site) == before
    assert not any(b"__sqldom" in p.read_bytes() for p in site.rglob("*") if p.is_file())


# ---- binding ---------------------------------------------------------------------------------------------

def test_binds_to_127_0_0_1_only_by_default(site: Path) -> None:
    server = PreviewServer(site, port=0)
    assert server.host == "127.0.0.1"
    with server:
        assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/", server.url)
        assert get(server, "/")[0] == 200
        with pytest.raises(OSError), socket.create_connection(("127.0.0.2", server.port), timeout=2):
            pass                         # another loopback address: nobody listens there


def test_a_port_in_use_is_a_usage_error_naming_it(site: Path) -> None:
    with PreviewServer(site, port=0) as first:
        second = PreviewServer(site, port=first.port)
        with pytest.raises(UsageError) as info:
            second.start()
        assert info.value.exit_code == 2
        assert f"127.0.0.1:{first.port}" in info.value.message and "already in use" in info.value.message
        assert info.value.hint and "--port" in info.value.hint
        second.close()                   # harmless on a server that never started
        assert get(first, "/")[0] == 200


def test_the_default_port_is_8000(site: Path) -> None:
    assert PreviewServer(site).port == 8000
    assert PreviewServer(site).url == "http://127.0.0.1:8000/"


# ---- live reload -----------------------------------------------------------------------------------------

def test_event_stream_hello_then_one_reload_per_call(server: PreviewServer) -> None:
    conn, resp = stream(server)
    try:
        name, data = next_event(resp)
        assert name == "hello" and f'"server": "{server.id}"' in data and '"generation": 0' in data
        server.reload(["b.html", "a.html"])
        name, data = next_event(resp)
        assert name == "reload" and '"generation": 1' in data and '"changed": ["a.html", "b.html"]' in data
        server.reload()
        assert next_event(resp)[0] == "reload"
    finally:
        conn.close()


def test_pages_carry_the_generation_they_were_served_at(server: PreviewServer) -> None:
    assert SCRIPT_TAG.findall(get(server, "/")[2]) == [b"0"]
    server.reload()
    server.reload()
    assert SCRIPT_TAG.findall(get(server, "/")[2]) == [b"2"]
    conn, resp = stream(server)
    try:
        assert '"generation": 2' in next_event(resp)[1], "a late stream learns it missed builds"
    finally:
        conn.close()


def test_live_js_is_served(server: PreviewServer) -> None:
    status, headers, body = get(server, SCRIPT)
    assert status == 200 and headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"EventSource" in body and b"location.reload()" in body


def test_idle_streams_get_keep_alive_comments(site: Path) -> None:
    with PreviewServer(site, port=0, keepalive=0.1) as server:
        conn, resp = stream(server)
        try:
            assert next_event(resp)[0] == "hello"
            assert next_event(resp) == ("comment", "keep-alive")
            assert next_event(resp) == ("comment", "keep-alive")
        finally:
            conn.close()


def preview_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request" in t.name or t.name.startswith("sqldom-preview")]


def test_close_ends_open_streams_and_their_threads(site: Path) -> None:
    server = PreviewServer(site, port=0)
    server.start()
    streams = [stream(server) for _ in range(3)]
    for _conn, resp in streams:
        assert next_event(resp)[0] == "hello"
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)   # connected, never asks
    wait_until(lambda: len(preview_threads()) >= 5)
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 3
    for conn, resp in streams:
        assert resp.read() == b"", "the stream ends"
        conn.close()
    idle.close()
    assert preview_threads() == []
    server.close()                                          # twice is fine
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_start_then_close_at_once_and_again(site: Path) -> None:
    server = PreviewServer(site, port=0)
    for _ in range(3):
        server.start()
        server.close()
    assert preview_threads() == []


def test_clients_vanishing_mid_stream_or_mid_file_are_quiet(site: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (site / "big.bin").write_bytes(os.urandom(8 << 20))
    with PreviewServer(site, port=0, keepalive=0.05) as server:
        for target in (EVENTS, EVENTS, "/big.bin", "/big.bin"):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(f"GET {target} HTTP/1.0\r\n\r\n".encode())
            s.recv(1024)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()                                           # a reset, as a closed tab may send
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                s.sendall(f"GET {EVENTS} HTTP/1.0\r\n\r\n".encode())
                s.recv(1024)                                    # and an orderly close
        for _ in range(3):
            server.reload(["x.html"])
        time.sleep(0.3)                                         # keep-alives hit the dead sockets
        wait_until(lambda: len(preview_threads()) == 1)         # only the accept loop is left
        assert get(server, "/")[0] == 200
        assert get(server, "/nope")[0] == 404
        raw(server, "/..")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"garbage\r\n\r\n")
            s.recv(1024)
    out, err = capfd.readouterr()
    assert out == "" and err == "", "no per-request lines, no tracebacks"


def test_a_log_callable_gets_one_line_per_request(site: Path) -> None:
    lines: list[str] = []
    with PreviewServer(site, port=0, log=lines.append) as server:
        get(server, "/style.css")
        get(server, "/nope")
    assert len(lines) == 2
    assert '"GET /style.css HTTP/1.1" 200' in lines[0] and '"GET /nope HTTP/1.1" 404' in lines[1]


# ---- in a real browser -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def page_text_is(text: str) -> str:
    return f"document.body !== null && document.body.innerText.includes({text!r})"


@needs_chromium
def test_browser_shows_the_new_text_without_a_manual_reload(browser: Browser, tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    page = build / "page.html"
    page.write_text("<!DOCTYPE html>\n<html><body><h1>First version</h1></body></html>\n")
    with PreviewServer(build, port=0) as server:
        tab = browser.open(server.url + "page.html")
        try:
            tab.wait_for(page_text_is("First version"))
            assert tab.evaluate(f"document.querySelectorAll('script[src=\"{SCRIPT}\"]').length") == 1
            tab.evaluate("window.sqldomTestMarker = 1")        # gone once the page has really reloaded

            page.write_text("<!DOCTYPE html>\n<html><body><h1>Second version</h1></body></html>\n")
            server.reload(["page.html"])
            tab.wait_for(page_text_is("Second version") + " && window.sqldomTestMarker === undefined")
            assert "First version" not in tab.text()
            assert b"__sqldom" not in page.read_bytes()
        finally:
            tab.close()


@needs_chromium
def test_browser_404_turns_into_the_page_once_it_is_built(browser: Browser, tmp_path: Path) -> None:
    build = tmp_path / "build"
    with PreviewServer(build, port=0) as server:
        tab = browser.open(server.url + "later.html")
        try:
            tab.wait_for(page_text_is("404 Not Found"))
            build.mkdir()
            (build / "later.html").write_text("<p>Built at last</p>")
            server.reload(["later.html"])
            tab.wait_for(page_text_is("Built at last"))
        finally:
            tab.close()


@needs_chromium
def test_browser_reconnects_after_the_server_restarts_and_catches_up(browser: Browser, tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "index.html").write_text("<body><p>Before the restart</p></body>")
    first = PreviewServer(build, port=0)
    first.start()
    tab = browser.open(first.url)
    try:
        tab.wait_for(page_text_is("Before the restart"))
        first.close()
        (build / "index.html").write_text("<body><p>Built while the server was down</p></body>")
        with PreviewServer(build, port=first.port):            # no reload() call: a new server is news enough
            tab.wait_for(page_text_is("Built while the server was down"))
    finally:
        tab.close()
        first.close()


# ---- the whole loop through `sqldom watch --serve` (enabled once the CLI has the flag) -------------------

def run_watch_serve_browser_check(project_root: Path, port: int, page: str = "preview",
                                  timeout: float = 30.0, browser: Browser | None = None) -> None:
    """``sqldom watch --serve --port PORT -C PROJECT_ROOT``: a page open in Chromium shows an edit of
    ``content/<page>.md`` without a manual reload; build/ never holds the script; SIGTERM ends it with 0."""
    source = project_root / "content" / f"{page}.md"
    output = project_root / "build" / f"{page}.html"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("# Preview\n\nThe first version of this page.\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "sqldom", "watch", "--serve", "--port", str(port),
                                 "-C", str(project_root)], stdout=out, stderr=err, env=env)

        def logs() -> str:
            out.seek(0)
            err.seek(0)
            return f"stdout:\n{out.read().decode(errors='replace')}\nstderr:\n{err.read().decode(errors='replace')}"

        own = browser is None
        chromium = browser or Browser()
        try:
            deadline = time.monotonic() + timeout
            while True:                              # the first build is written and the server answers
                assert proc.poll() is None, f"sqldom watch exited with {proc.returncode}\n{logs()}"
                assert time.monotonic() < deadline, f"no preview on port {port} after {timeout}s\n{logs()}"
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", f"/{page}.html")
                    resp = conn.getresponse()
                    if resp.status == 200 and b"The first version" in resp.read():
                        conn.close()
                        break
                    conn.close()
                except OSError:
                    pass
                time.sleep(0.1)

            tab = chromium.open(f"http://127.0.0.1:{port}/{page}.html")
            try:
                tab.wait_for(page_text_is("The first version"), timeout=timeout)
                tab.evaluate("window.sqldomTestMarker = 1")
                source.write_text("# Preview\n\nThe second version of this page.\n", encoding="utf-8")
                tab.wait_for(page_text_is("The second version") + " && window.sqldomTestMarker === undefined",
                             timeout=timeout)
            finally:
                tab.close()
            on_disk = output.read_bytes()
            assert b"The second version" in on_disk and b"__sqldom" not in on_disk, "build/ holds no script"
        finally:
            if own:
                chromium.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                    raise AssertionError(f"sqldom watch ignored SIGTERM\n{logs()}") from None
        assert proc.returncode == 0, f"sqldom watch exited with {proc.returncode}\n{logs()}"
        assert "Traceback" not in logs(), logs()


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (CI installs it)")
def test_watch_serve_reloads_an_open_page_after_an_edit(tmp_path: Path) -> None:
    """The whole loop: `sqldom watch --serve`, a page open in Chromium, an edit of its source."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "proj"
    (root / "content").mkdir(parents=True)
    run_watch_serve_browser_check(root, port)
