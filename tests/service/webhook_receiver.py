"""A real webhook receiver on loopback for the webhook tests: an HTTP server in a thread that
answers each POST as scripted (a status, or a sleep past the sender's time limit), records
every request (time, headers, raw body, answer) and can be started late, on a port chosen in
advance, so that the sender first finds the port closed. No mocks: sockets and threads."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass

from tests.app.service_harness import free_port
from tests.service.loopback_http import QuietHandler, QuietServer


@dataclass
class Received:
    at: float  # time.time() when the request's body had been read
    path: str
    headers: dict[str, str]
    body: bytes
    answer: int | None  # None: the receiver slept instead (the sender gave up first)


class _Server(QuietServer):
    owner: Receiver


class _Handler(QuietHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802
        owner = self.server.owner
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length)
        with owner.lock:
            answer = owner.script.popleft() if owner.script else owner.default
        got = Received(time.time(), self.path, dict(self.headers.items()), body, None)
        if isinstance(answer, tuple):  # ("sleep", seconds): outlast the sender's limit
            with owner.lock:
                owner.requests.append(got)
            time.sleep(answer[1])
            answer = 200
        else:
            got.answer = answer
            with owner.lock:
                owner.requests.append(got)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(answer)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "3")
            if 300 <= answer < 400:
                self.send_header("Location", owner.redirect_to)
            self.end_headers()
            self.wfile.write(b"ok\n")


class Receiver:
    """Answers POSTs on ``127.0.0.1:port`` once :meth:`start` has run (until then the port
    is closed). ``script``: the answers to give in turn (an HTTP status, or ``("sleep", s)``),
    then ``default``; ``requests`` lists what came."""

    def __init__(self, port: int | None = None, default: int = 200) -> None:
        self.port = port or free_port()
        self.default = default
        self.script: deque[int | tuple[str, float]] = deque()
        self.requests: list[Received] = []
        self.redirect_to = ""
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        self._server = _Server(("127.0.0.1", self.port), _Handler, self)
        self._thread = self._server.run_in_thread()
        return self

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        if self._server is not None:
            self._server.close(self._thread)
