"""Every error answer of the live API has the documented shape, and oversized bodies are
refused while they stream in, before parsing or authentication (issue 17)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import Stack
from tests.app.envelope import assert_error_envelope
from tests.app.service_harness import KEY_A

API = "/api/v1/lipsync"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_every_error_status_has_the_envelope(stack: Stack, media: dict[str, Path]) -> None:
    with stack.client() as c, stack.client(key=None) as anon:
        cases: list[tuple[str, httpx.Response, int, str]] = [
            (
                "no key",
                anon.get(f"{API}/status", params={"task_id": "0" * 32}),
                401,
                "unauthorized",
            ),
            (
                "unknown task",
                c.get(f"{API}/status", params={"task_id": "0" * 32}),
                404,
                "not_found",
            ),
            ("unknown route", c.get(f"{API}/nothing"), 404, "not_found"),
            (
                "unknown result",
                c.get(f"{API}/download", params={"file_path": "x.mp4"}),
                404,
                "not_found",
            ),
            ("static", c.get("/static/nothing.js"), 404, "not_found"),
            ("method", c.put(f"{API}/status"), 405, "method_not_allowed"),
            ("missing param", c.get(f"{API}/status"), 422, "invalid_request"),
            (
                "bad json",
                c.post(
                    f"{API}/terminate", content=b"{no", headers={"content-type": "application/json"}
                ),
                400,
                "bad_request",
            ),
            ("json field", c.post(f"{API}/terminate", json={"id": 1}), 422, "invalid_request"),
            (
                "bad option",
                c.post(
                    f"{API}/push",
                    files={"audio": ("a.wav", b"x"), "video": ("v.png", b"y")},
                    data={"fps": "nan"},
                ),
                422,
                "invalid_option",
            ),
            (
                "unknown option",
                c.post(
                    f"{API}/push",
                    files={"audio": ("a.wav", b"x"), "video": ("v.png", b"y")},
                    data={"colour": "red"},
                ),
                422,
                "invalid_option",
            ),
            (
                "not media",
                c.post(
                    f"{API}/push",
                    files={
                        "audio": ("a.wav", media["speech"].read_bytes()),
                        "video": ("v.mp4", media["text_mp4"].read_bytes()),
                    },
                ),
                415,
                "unsupported_media",
            ),
            (
                "bad host",
                c.get(f"{API}/options", headers={"host": "attacker.example"}),
                400,
                "bad_host",
            ),
        ]
    for name, resp, status, code in cases:
        assert resp.status_code == status, (name, resp.status_code, resp.text)
        detail = assert_error_envelope(status, resp.json(), code)
        print(f"ENVELOPE {name:16s} {status} {detail['code']}: {detail['message']}")
    fps = cases[9][1].json()["detail"]
    assert fps["field"] == "fps" and fps["message"] == "fps must be a number, not nan"
    assert cases[10][1].json()["detail"]["field"] == "colour"
    assert cases[6][1].json()["detail"]["field"] == "task_id"


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


def _raw_post(base: str, path: str, headers: dict[str, str], body_bytes: int) -> tuple[int, bytes]:
    """POST ``body_bytes`` declared by Content-Length over a raw socket; the answer's status and
    body (the server may answer and close before the body is sent)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {body_bytes}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for chunk in _chunks(body_bytes, 1024 * 1024):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: the server closed after answering
        data = b""
        while not data.endswith(b"}") and (part := sock.recv(65536)):
            data += part
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("with_key", [False, True])
def test_big_bodies_to_json_routes_are_413_before_auth(stack: Stack, with_key: bool) -> None:
    """200 MB to every JSON route, declared or chunked: 413 in the standard shape, and the
    API does not grow (it stops reading at the cap)."""
    import json

    pid = stack.api.proc.pid
    before = _rss_kib(pid)
    headers = {"content-type": "application/json", **({"X-API-Key": KEY_A} if with_key else {})}
    for path in (f"{API}/terminate", f"{API}/status", f"{API}/options", "/readyz"):
        status, body = _raw_post(stack.base_url, path, headers, 200 * 1024 * 1024)
        assert status == 413, (path, status, body[:200])
        assert_error_envelope(413, json.loads(body), "too_large")
    # chunked (no declared length): counted while it streams in, by the route that reads it
    with stack.client(key=KEY_A if with_key else None) as c:
        resp = c.post(f"{API}/terminate", content=_chunks(200 * 1024 * 1024), headers=headers)
    assert resp.status_code == 413, (resp.status_code, resp.text[:200])
    assert_error_envelope(413, resp.json(), "too_large")
    grew = _rss_kib(pid) - before
    print(f"FIGURE api_rss_growth_after_200MB_bodies_kib = {grew}")
    assert grew < 64 * 1024, grew


def test_push_answers_urls_only_for_allowed_hosts(stack: Stack, media: dict[str, Path]) -> None:
    files: dict[str, Any] = {
        "audio": ("s.wav", media["speech"].read_bytes()),
        "video": ("f.png", media["astronaut"].read_bytes()),
    }
    with stack.client() as c:
        evil = c.post(f"{API}/push", files=files, headers={"host": "evil.example"})
        assert evil.status_code == 400, evil.text
        assert_error_envelope(400, evil.json(), "bad_host")
        ok = c.post(
            f"{API}/push",
            files=files,
            headers={"host": f"localhost:{stack.base_url.rsplit(':', 1)[1]}"},
        )
        assert ok.status_code == 202, ok.text
        assert ok.json()["status_url"].startswith("http://localhost:")
        assert "evil" not in os.environ.get("LIPSYNC_PUBLIC_BASE_URL", "")
