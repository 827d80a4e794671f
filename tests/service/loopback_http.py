"""Real HTTP servers on loopback for the URL-input tests: they serve files, redirect, drip
bytes slowly or stream past a cap, and count every connection they accept (so a test can
prove that a refused URL never reached them). No mocks: sockets and threads."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server for a test's receiver, ``owner`` (its handlers reach it as
    ``self.server.owner``); its threads never hold the test run up."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type, owner: Any, family: int = socket.AF_INET
    ) -> None:
        self.address_family = family
        self.owner = owner
        super().__init__(address, handler)

    def run_in_thread(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        return thread

    def close(self, thread: threading.Thread | None) -> None:
        """Stop serving, close the socket and wait for the serving thread."""
        self.shutdown()
        with contextlib.suppress(OSError):
            self.server_close()
        if thread is not None:
            thread.join(timeout=5)


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.0 answers, no log lines."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Server(QuietServer):
    owner: LoopbackHTTP

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, peer = super().get_request()
        with self.owner.lock:
            self.owner.connections += 1
        return conn, peer


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        owner = self.server.owner
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with owner.lock:
            owner.requests.append((parts.path, dict(self.headers.items())))
        route = parts.path.strip("/").split("/")
        # the client may give up (a cap or a deadline): what the tests want
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route(owner, route, query)

    def _route(self, owner: LoopbackHTTP, route: list[str], query: dict[str, str]) -> None:
        head = route[0]
        if head == "file" and len(route) == 2 and route[1] in owner.files:
            body, ctype = owner.files[route[1]]
            time.sleep(float(query.get("delay", "0")))  # ?delay=S: answer after S seconds
            self._send(200, body, ctype)
        elif head == "redirect":  # /redirect/N/name: N more redirects, then /file/name
            n, name = int(route[1]), route[2]
            where = f"/redirect/{n - 1}/{name}" if n > 1 else f"/file/{name}"
            self._redirect(where)
        elif head == "to":  # /to?url=U: one redirect to U
            self._redirect(query["url"])
        elif head == "stream":  # /stream?bytes=N: no Content-Length, N bytes, then close
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            left = int(query["bytes"])
            while left > 0:
                self.wfile.write(b"\0" * min(left, 8192))
                left -= 8192
        elif head == "declared":  # /declared?bytes=N: claims N bytes, sends a few
            self.send_response(200)
            self.send_header("Content-Length", query["bytes"])
            self.end_headers()
            self.wfile.write(b"\0" * 16)
        elif head == "drip":  # headers, then one byte every `every` seconds, for long
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self._drip(float(query.get("every", "0.2")))
        elif head == "drip-headers":  # the status line and headers a byte at a time
            self.wfile.write(b"HTTP/1.0 200 OK\r\n")
            every = float(query.get("every", "0.2"))
            for ch in b"X-Slow: " + b"a" * 1000:
                self.wfile.write(bytes([ch]))
                self.wfile.flush()
                time.sleep(every)
        elif head == "status":
            self._send(int(route[1]), b"nope\n", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _drip(self, every: float) -> None:
        for _ in range(100000):
            self.wfile.write(b"\0")
            self.wfile.flush()
            time.sleep(every)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()


class LoopbackHTTP:
    """One server on ``host`` (``127.0.0.1`` or ``::1``), a free port, in a thread.

    ``files[name] = (bytes, content type)`` are served at ``/file/name``; ``connections``
    counts accepted TCP connections, ``requests`` lists (path, headers)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.server = _Server((host, 0), _Handler, self, family)
        self.port = int(self.server.server_address[1])
        self.thread = self.server.run_in_thread()

    def url(self, path: str, host: str | None = None) -> str:
        name = host or self.host
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{self.port}{path}"

    def settled_connections(self, wait_s: float = 0.3) -> int:
        """The connection count once anything already on its way has been accepted."""
        time.sleep(wait_s)
        with self.lock:
            return self.connections

    def close(self) -> None:
        self.server.close(self.thread)

    def __enter__(self) -> LoopbackHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Acceptor:
    """A TCP listener on loopback whose thread accepts every connection and hands it to
    :meth:`took`, until :meth:`close`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def took(self, conn: socket.socket, peer: Any) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.took(conn, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class Tarpit(Acceptor):
    """A TCP server on loopback that accepts every connection and never sends a byte: a
    fetch waits in its headers phase until the deadline, or until it is canceled."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.held: list[socket.socket] = []
        super().__init__(host)

    def url(self, path: str = "/video.mp4") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def took(self, conn: socket.socket, peer: Any) -> None:
        self.held.append(conn)  # kept open, never answered

    def close(self) -> None:
        super().close()
        for conn in self.held:
            conn.close()
