"""HTTP as HTTP says, on the live API: HEAD on every GET route, Range on the download, a
long URL field judged as a URL, and a cap on the event streams one key may hold open."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app import service_harness as sh
from tests.app.conftest import Stack
from tests.app.envelope import assert_error_envelope

API = "/api/v1/lipsync"


def test_head_on_get_routes(stack: Stack, finished: dict[str, Any]) -> None:
    task_id = finished["pushed"]["task_id"]
    with stack.client() as c:
        for path, params in (
            ("/healthz", {}),
            (f"{API}/status", {"task_id": task_id}),
            (f"{API}/download", {"task_id": task_id}),
            (f"{API}/options", {}),
            ("/", {}),
        ):
            got = c.get(path, params=params)
            head = c.head(path, params=params)
            assert head.status_code == got.status_code == 200, (path, head.status_code)
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
            if "content-length" in got.headers:
                assert head.headers["content-length"] == got.headers["content-length"], path
        # the event stream: its headers, then the answer ends (no stream held open)
        t0 = time.monotonic()
        head = c.head(f"{API}/events", params={"task_id": task_id})
        assert head.status_code == 200 and time.monotonic() - t0 < 5
        assert head.headers["content-type"].startswith("text/event-stream")
        # errors keep their status and envelope headers
        assert c.head(f"{API}/status", params={"task_id": "0" * 32}).status_code == 404


def test_range_requests_per_http(stack: Stack, finished: dict[str, Any]) -> None:
    task_id = finished["pushed"]["task_id"]
    with stack.client() as c:
        whole = c.get(f"{API}/download", params={"task_id": task_id})
        size = len(whole.content)
        assert whole.headers["accept-ranges"] == "bytes"

        def ranged(value: str) -> httpx.Response:
            return c.get(f"{API}/download", params={"task_id": task_id}, headers={"Range": value})

        part = ranged("bytes=0-9")
        assert part.status_code == 206 and part.content == whole.content[:10]
        assert part.headers["content-range"] == f"bytes 0-9/{size}"
        # an invalid range (last before first) or one that cannot be parsed: ignored
        for value in ("bytes=100-0", "bytes=abc", "pages=1-2", "bytes="):
            got = ranged(value)
            assert got.status_code == 200 and got.content == whole.content, value
        # no byte of the file: 416 in the envelope, with the size
        late = ranged(f"bytes={size + 10}-")
        assert_error_envelope(416, late.json(), "range_not_satisfiable")
        assert late.headers["content-range"] == f"bytes */{size}"


def test_a_long_url_is_an_invalid_url(stack: Stack, media: dict[str, Path]) -> None:
    url = "https://example.com/" + "a" * 1080  # 1,100 characters
    with stack.client() as c, media["speech"].open("rb") as a:
        resp = c.post(f"{API}/push", files={"audio": ("s.wav", a)}, data={"video_url": url})
    assert_error_envelope(422, resp.json(), "invalid_url")
    assert resp.json()["detail"]["field"] == "video_url"
    assert "longer than 1024 characters" in resp.json()["detail"]["message"]


def _open_stream(base: str, task_id: str, key: str) -> tuple[socket.socket, bytes]:
    """A raw event stream (kept open by the caller); the status line and first bytes."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"GET {API}/events?task_id={task_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {key}\r\n\r\n".encode()
    )
    return sock, sock.recv(4096)


def test_event_streams_are_capped_per_key(
    redis_server: sh.RedisServer, tmp_path: Path, media: dict[str, Path]
) -> None:
    """No worker runs: the job stays queued and its streams stay open. The third stream
    of a key with a cap of two is 429 in the envelope; another key is not affected; a
    closed stream frees its place."""
    keys = f"{sh.KEY_A},{sh.KEY_B}"
    with sh.service(
        redis_server, tmp_path, 9, LIPSYNC_API_KEYS=keys, LIPSYNC_EVENTS_MAX_PER_KEY="2"
    ) as svc:
        svc.start_api()
        headers = {"X-API-Key": sh.KEY_A}
        with httpx.Client(base_url=svc.base_url, headers=headers, timeout=30) as c:
            resp = sh.push(c, media["speech"], media["astronaut"])
            assert resp.status_code == 202, resp.text
            task_id = resp.json()["task_id"]
            held = [_open_stream(svc.base_url, task_id, sh.KEY_A) for _ in range(2)]
            try:
                assert all(first.startswith(b"HTTP/1.1 200") for _, first in held)
                third = c.get(f"{API}/events", params={"task_id": task_id})
                assert_error_envelope(429, third.json(), "too_many_streams")
                assert "retry-after" in third.headers
                # another key has its own places (it sees 404: not its job, not 429)
                other = c.get(
                    f"{API}/events", params={"task_id": task_id}, headers={"X-API-Key": sh.KEY_B}
                )
                assert other.status_code == 404
                held.pop()[0].close()
                deadline = time.monotonic() + 10
                while True:  # the server notices the closed stream at its next poll
                    sock, first = _open_stream(svc.base_url, task_id, sh.KEY_A)
                    if first.startswith(b"HTTP/1.1 200"):
                        held.append((sock, first))
                        break
                    sock.close()
                    assert time.monotonic() < deadline, first[:200]
                    time.sleep(0.2)
            finally:
                for sock, _ in held:
                    sock.close()


@pytest.mark.parametrize("field", ["audio_url", "webhook_url"])
def test_other_long_url_fields_are_invalid_url_too(
    stack: Stack, media: dict[str, Path], field: str
) -> None:
    url = "https://example.com/" + "b" * 1500
    data = {field: url}
    files: dict[str, Any] = {}
    with stack.client() as c, media["astronaut"].open("rb") as v, media["speech"].open("rb") as a:
        files["video"] = ("v.png", v)
        if field != "audio_url":
            files["audio"] = ("s.wav", a)
        resp = c.post(f"{API}/push", files=files, data=data)
    detail = resp.json()["detail"]
    assert resp.status_code == 422 and detail["field"] == field, resp.text
    # webhooks may be off on this server: then that is said first; else the URL's length
    assert detail["code"] in ("invalid_url", "webhooks_disabled"), detail


def test_errors_name_the_callers_files(stack: Stack, media: dict[str, Path]) -> None:
    """At push (the probe) and in the job (the pipeline), an error names the file the way
    the caller named it, never the server's copy (``video.png``, ``video.mp4``)."""
    with stack.client() as c:
        with media["text_mp4"].open("rb") as v, media["speech"].open("rb") as a:
            files = {"video": ("Holiday clip.mp4", v), "audio": ("s.wav", a)}
            resp = c.post(f"{API}/push", files=files)
        detail = resp.json()["detail"]
        assert resp.status_code in (415, 422), resp.text
        assert "Holiday clip.mp4" in detail["message"], detail
        assert "video.mp4" not in detail["message"], detail

        with media["gradient"].open("rb") as v, media["speech"].open("rb") as a:
            files = {"video": ("my face.png", v), "audio": ("s.wav", a)}
            resp = c.post(f"{API}/push", files=files)
        assert resp.status_code == 202, resp.text
        body = sh.wait_for(c, resp.json()["task_id"])
        assert body["state"] == "failed" and body["error"]["code"] == "no_face", body
        assert body["error"]["message"].startswith("my face.png: "), body["error"]
        assert "video.png" not in body["error"]["message"], body["error"]
