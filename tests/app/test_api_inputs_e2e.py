"""Bad input over HTTP: unsupported, corrupt, missing and oversized uploads; traversal."""

from __future__ import annotations

import os
import select
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from service.jobs import JobRecord, JobStore
from tests.app import service_harness as sh
from tests.app.service_harness import KEY_A, push, wait_for


def _upload_dirs(stack: Any) -> set[Path]:
    return set((stack.data_dir / "uploads").iterdir())


def test_text_file_named_mp4_is_415(stack: Any, media: dict[str, Path]) -> None:
    before = _upload_dirs(stack)
    with stack.client() as c:
        resp = push(c, media["speech"], media["text_mp4"])
        assert resp.status_code == 415, resp.text
        assert resp.json()["detail"]["code"] == "unsupported_media"
        assert resp.json()["detail"]["field"] == "video"
        resp = push(c, media["text_mp4"], media["astronaut"])
        assert resp.status_code == 415
        assert resp.json()["detail"]["field"] == "audio"
    assert _upload_dirs(stack) <= before, "rejected uploads are deleted"


def test_truncated_video_is_rejected(stack: Any, media: dict[str, Path]) -> None:
    with stack.client() as c:
        resp = push(c, media["speech"], media["truncated"])
    assert resp.status_code in (415, 422), resp.text
    assert resp.json()["detail"]["code"] in ("unsupported_media", "corrupt_media")


def test_real_video_truncated_fails_cleanly(stack: Any, media: dict[str, Path]) -> None:
    """A truncated real clip (moov first): rejected at push or failed with a typed error."""
    src = sh.REPO.parent / "shared" / "media" / "video_videoretalking_face2.mp4"
    if not src.is_file():
        pytest.skip("shared media not available")
    raw = src.read_bytes()
    truncated = media["speech"].parent / "face2_truncated.mp4"
    truncated.write_bytes(raw[: len(raw) // 3])
    with stack.client() as c:
        resp = push(c, media["speech"], truncated)
        if resp.status_code != 202:
            assert resp.status_code in (415, 422)
            return
        body = wait_for(c, resp.json()["task_id"])
    assert body["state"] in ("failed", "succeeded"), body
    if body["state"] == "failed":
        assert body["error"]["code"] in ("corrupt_media", "no_face"), body


def test_missing_empty_and_invalid_fields_are_422(stack: Any, media: dict[str, Path]) -> None:
    url = "/api/v1/lipsync/push"
    audio = media["speech"].read_bytes()
    image = media["astronaut"].read_bytes()
    both = {"audio": ("a.wav", audio), "video": ("v.png", image)}
    before = _upload_dirs(stack)
    with stack.client() as c:
        resp = c.post(url, files={"audio": ("a.wav", audio)})
        assert resp.status_code == 422 and resp.json()["detail"]["field"] == "video"
        resp = c.post(url, files={"audio": ("a.wav", b""), "video": ("v.png", image)})
        assert resp.status_code == 422 and resp.json()["detail"]["code"] == "empty_field"
        assert c.post(url, json={"audio": "x"}).status_code == 422
        for bad in (
            {"sync_mode": "sideways"},
            {"fps": "0"},
            {"pads": "1,2"},
            {"engine": "no-such-engine"},
            {"enhancer": "onnx:/etc/passwd"},
            {"face_index": "0", "face_point": "10,10"},
            {"colour": "blue"},
        ):
            resp = c.post(url, files=both, data=bad)
            assert resp.status_code == 422, (bad, resp.text)
    assert _upload_dirs(stack) <= before, "rejected uploads are deleted"


def test_queue_full_is_429(stack: Any, media: dict[str, Path]) -> None:
    r = stack.redis.client()
    fillers = {f"{i:032x}": time.time() for i in range(100)}  # default max depth is 100
    r.zadd("lipsync:queued", fillers)
    try:
        with stack.client() as c:
            resp = push(c, media["speech"], media["astronaut"])
        assert resp.status_code == 429
        assert int(resp.headers["retry-after"]) > 0
        assert resp.json()["detail"]["code"] == "queue_full"
    finally:
        r.zrem("lipsync:queued", *fillers)


def _fake_succeeded(store: JobStore, owner: str, job_id: str) -> None:
    store.jobs.create(JobRecord(id=job_id, owner=owner, state="queued", created_at=time.time()))
    assert store.leases.claim(job_id, 3, "test") == "run"
    assert store.jobs.finish(job_id, "succeeded", result={"file": f"{job_id}.mp4"})


def test_download_traversal_forms_are_404(
    stack: Any, finished: dict[str, Any], tmp_path: Path
) -> None:
    from app.deps import owner_of_key

    task_id = finished["pushed"]["task_id"]
    results = stack.data_dir / "results"
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not yours")
    store = JobStore.from_url(stack.redis.url)
    # a job record that claims a result which is a symlink leading out of the results dir
    link_id = "ab" * 16
    _fake_succeeded(store, owner_of_key(KEY_A), link_id)
    (results / f"{link_id}.mp4").symlink_to(secret)
    # and one whose result is a symlink that stays inside (still refused: not a regular file)
    inner_id = "cd" * 16
    _fake_succeeded(store, owner_of_key(KEY_A), inner_id)
    (results / f"{inner_id}.mp4").symlink_to(results / f"{task_id}.mp4")

    raw_forms = [
        "../../../../etc/passwd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%252e%252e%252fetc%252fpasswd",
        "..%5C..%5Cetc%5Cpasswd",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        f"{task_id}.mp4%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"..%2Fresults%2F{task_id}.mp4",
        f".%2F{task_id}.mp4",
        f"{task_id}.mp4%00.txt",
        f"{task_id.upper()}.MP4",
        f"{task_id}",
        f"{link_id}.mp4",
        f"{inner_id}.mp4",
        str(secret),
        str(results / f"{task_id}.mp4"),
        "",
    ]
    with stack.client() as c:
        for form in raw_forms:
            url = f"{stack.base_url}/api/v1/lipsync/download?file_path={form}"
            resp = c.get(httpx.URL(url))
            assert resp.status_code == 404, (form, resp.status_code)
            assert b"not yours" not in resp.content and b"root:" not in resp.content
        for tid in (link_id, inner_id, f"../{task_id}", f"{task_id}/../{task_id}"):
            assert c.get("/api/v1/lipsync/download", params={"task_id": tid}).status_code == 404
        both = {"task_id": task_id, "file_path": f"{task_id}.mp4"}
        assert c.get("/api/v1/lipsync/download", params=both).status_code == 404
        assert c.get("/api/v1/lipsync/download").status_code == 404
        # the real one still works
        assert c.get("/api/v1/lipsync/download", params={"task_id": task_id}).status_code == 200
    # traversal in the path itself never reaches a file either
    host = urlsplit(stack.base_url)
    with socket.create_connection((host.hostname, host.port), timeout=10) as sock:
        sock.sendall(
            b"GET /api/v1/lipsync/../../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-API-Key: " + KEY_A.encode() + b"\r\nConnection: close\r\n\r\n"
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 404") and b"root:" not in reply


def _raw_upload(base_url: str, body_size: int, chunked: bool) -> tuple[int, int]:
    """Upload ``body_size`` bytes the way curl does: stop sending once the server answers.

    Returns (status, bytes sent before the answer came).
    """
    host = urlsplit(base_url)
    boundary = "----lipsynctest"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    total = len(head) + body_size
    headers = [
        "POST /api/v1/lipsync/push HTTP/1.1",
        f"Host: {host.hostname}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}",
    ]
    block = os.urandom(64 * 1024)
    sent = 0
    reply = b""
    with socket.create_connection((host.hostname, host.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        data = head
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered before the body was complete
            frame = (f"{len(data):x}\r\n".encode() + data + b"\r\n") if chunked else data
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(data)
            data = block[: min(len(block), total - sent)]
        while b"\r\n" not in reply:
            got = sock.recv(4096)
            if not got:
                break
            reply += got
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else -1
    return status, sent


@pytest.fixture(scope="module")
def small_api(redis_server: sh.RedisServer, stack: Any) -> Any:
    """A second API on the same Redis and data dir: no API keys, a 1 MB upload cap."""
    cap = str(1024 * 1024)
    with sh.api_beside(
        stack.env, stack.logdir, "api-small", LIPSYNC_API_KEYS="", LIPSYNC_MAX_UPLOAD_BYTES=cap
    ) as base:
        yield base


def test_oversize_upload_is_413_without_filling_disk(small_api: str, stack: Any) -> None:
    uploads = stack.data_dir / "uploads"
    before = set(uploads.iterdir())
    # declared too big: refused before a byte of the body is read
    status, sent = _raw_upload(small_api, 50 * 1024 * 1024, chunked=False)
    assert status == 413
    assert sent < 8 * 1024 * 1024
    # chunked, no Content-Length: refused as soon as the cap is passed
    status, sent = _raw_upload(small_api, 200 * 1024 * 1024, chunked=True)
    assert status == 413
    assert sent < 16 * 1024 * 1024, "the server answered as soon as the cap was passed"
    time.sleep(0.2)
    assert set(uploads.iterdir()) == before, "no partial upload left behind"
    # below the cap it is an ordinary request (and no key is needed on this instance)
    resp = httpx.post(f"{small_api}/api/v1/lipsync/push", files={"audio": ("a.wav", b"123")})
    assert resp.status_code == 422


def test_redis_down_is_503(stack: Any, media: dict[str, Path]) -> None:
    dead = f"redis://127.0.0.1:{sh.free_port()}/0"
    env = sh.service_env(dead, stack.data_dir / "dead", LIPSYNC_REDIS_TIMEOUT_S="0.5")
    api, base = sh.start_api(env, stack.logdir, name="api-dead")
    with sh.running(api), httpx.Client(base_url=base, timeout=30) as c:
        resp = push(c, media["speech"], media["astronaut"])
        assert resp.status_code == 503, resp.text
        assert "Redis" in resp.json()["detail"]["message"]
        assert resp.headers["retry-after"]
        params = {"task_id": "0" * 32}
        assert c.get("/api/v1/lipsync/status", params=params).status_code == 503
        assert c.post("/api/v1/lipsync/terminate", json=params).status_code == 503
        assert c.get("/api/v1/lipsync/download", params=params).status_code == 503
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200
        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and "lipsync_redis_up 0.0" in metrics.text
    assert "Traceback" not in api.log.read_text()


def test_openapi_lists_every_endpoint(stack: Any) -> None:
    spec = httpx.get(f"{stack.base_url}/openapi.json").json()
    for path in (
        "/api/v1/lipsync/push",
        "/api/v1/lipsync/terminate",
        "/api/v1/lipsync/status",
        "/api/v1/lipsync/download",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"], path
    body = spec["paths"]["/api/v1/lipsync/push"]["post"]["requestBody"]["content"]
    ref = body["multipart/form-data"]["schema"]["$ref"]  # components/schemas/PushForm
    form = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    # each input is a file or a URL, the optional webhook; then one field per option
    from service.options import push_specs

    inputs = {"audio", "video", "audio_url", "video_url", "webhook_url"}
    assert set(form) == inputs | {s.name for s in push_specs()}  # evaluate is the service's
    assert "X-Lipsync-Signature" in form["webhook_url"]["description"]
    status = spec["components"]["schemas"]["JobStatus"]["properties"]
    assert "webhook" in status and "WebhookInfo" in spec["components"]["schemas"]
    assert form["audio"]["format"] == form["video"]["format"] == "binary"
