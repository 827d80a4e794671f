"""A local HTTP server standing in for the Hugging Face hub (and a plain file host), for
``lipsync models pull`` tests: no test reaches the internet.

Routes, as the hub serves them to ``huggingface_hub``:

- ``HEAD|GET /{repo_id}/resolve/{revision}/{path}`` (``/datasets/...`` too): a 302 to the
  blob on another host name (``localhost`` for a server reached as ``127.0.0.1``, as the hub
  sends large files to its CDN), with ``X-Repo-Commit``, ``X-Linked-Etag`` (the SHA-256) and
  ``X-Linked-Size``; 404 with ``X-Error-Code: EntryNotFound`` for an unknown file.
- ``HEAD|GET /blobs/{sha256}``: the bytes, with ``ETag``, ``Accept-Ranges`` and ``Range``
  (206 with ``Content-Range``).
- ``GET /files/{name}``: a plain HTTPS-style file, with ``Range``.

``cut_at``: the first GET of a blob or file stops after that fraction of the file (the
connection closes mid-body: a transfer interrupted at 50%); with ``fail_after_cut`` any later
GET of it answers 503 until ``cut_at`` is None again (the pull gives up), else later GETs
are served (a client that retries with ``Range`` gets the rest).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class HubState:
    commit: str = "c0ffee" * 6 + "abcd"
    #: (repo_id, path) -> bytes, for the resolve routes
    repo_files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    #: name -> bytes, for /files/
    plain_files: dict[str, bytes] = field(default_factory=dict)
    cut_at: float | None = None
    fail_after_cut: bool = True
    cut_done: set[str] = field(default_factory=set)
    #: (method, path, Range header or "") of every request
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    bytes_sent: int = 0

    def blobs(self) -> dict[str, bytes]:
        data = [*self.repo_files.values(), *self.plain_files.values()]
        return {hashlib.sha256(b).hexdigest(): b for b in data}


_RESOLVE = re.compile(r"^/(?:datasets/|spaces/)?(.+?)/resolve/([^/]+)/(.+)$")


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return None

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            state.requests.append((self.command, self.path, self.headers.get("Range", "")))
            path = self.path.split("?")[0]
            match = _RESOLVE.match(path)
            if match:
                repo, _revision, file_path = match.groups()
                data = state.repo_files.get((repo, file_path))
                if data is None:
                    self._empty(404, {"X-Error-Code": "EntryNotFound"})
                    return
                sha = hashlib.sha256(data).hexdigest()
                port = self.server.server_address[1]
                self._empty(
                    302,
                    {
                        "Location": f"http://localhost:{port}/blobs/{sha}",
                        "X-Repo-Commit": state.commit,
                        "X-Linked-Etag": f'"{sha}"',
                        "X-Linked-Size": str(len(data)),
                        "ETag": f'"{sha}"',
                    },
                )
                return
            if path.startswith("/blobs/"):
                data = state.blobs().get(path.removeprefix("/blobs/"))
            elif path.startswith("/files/"):
                data = state.plain_files.get(path.removeprefix("/files/"))
            else:
                data = None
            if data is None:
                self._empty(404, {"X-Error-Code": "EntryNotFound"})
                return
            self._bytes(path, data, body)

        def _empty(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _bytes(self, path: str, data: bytes, body: bool) -> None:
            failing = state.cut_at is not None and state.fail_after_cut
            if body and failing and path in state.cut_done:
                self._empty(503, {})
                return
            start, status = 0, 200
            ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if ranged:
                start = int(ranged.group(1))
                if start >= len(data):
                    self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
                    return
                status = 206
            part = data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(part)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if state.cut_at is not None and path not in state.cut_done:
                part = part[: max(0, int(len(data) * state.cut_at) - start)]
                state.cut_done.add(path)
                self.close_connection = True
            # counted before it is written: the client may have read it all, and the test
            # read the count, before this thread runs again after the write
            state.bytes_sent += len(part)
            self.wfile.write(part)
            self.wfile.flush()

    return Handler


class FakeHub:
    """The server on 127.0.0.1, in a thread; ``endpoint`` is its URL (``HF_ENDPOINT``)."""

    def __init__(self) -> None:
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self.server.shutdown()
        self.server.server_close()
