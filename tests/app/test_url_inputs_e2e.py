"""URL inputs end to end: push ``video_url`` / ``audio_url`` to the real API, the real worker
fetches them from a loopback HTTP server (allowed by ``LIPSYNC_FETCH_ALLOW`` on the worker
only), and refused URLs fail the job with ``fetch_refused`` without a connection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.app import service_harness as sh
from tests.app.service_harness import wait_for
from tests.service.loopback_http import LoopbackHTTP

PUSH = "/api/v1/lipsync/push"
CAP = 3_000_000  # LIPSYNC_MAX_UPLOAD_BYTES of this deployment


DEPLOYMENT = sh.Deployment(
    broker_db=14,
    env={
        "LIPSYNC_FETCH_ALLOW": "127.0.0.1",
        "LIPSYNC_FETCH_TIMEOUT_S": "20",
        "LIPSYNC_MAX_UPLOAD_BYTES": str(CAP),
        "LIPSYNC_EVALUATE_RESULTS": "false",
    },
    api_env={"LIPSYNC_FETCH_ALLOW": ""},  # the API never fetches: it needs no list
)


def _push(client: httpx.Client, files: dict[str, Path] | None = None, **data: str) -> Any:
    """A multipart push of these files and text fields (built by hand: httpx would send
    text fields alone urlencoded, while a URL-only push is a form of text parts alone)."""
    boundary = "lipsync-url-inputs"
    body = b""
    for name, value in data.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        body += value.encode() + b"\r\n"
    for name, path in (files or {}).items():
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        body += path.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return client.post(PUSH, content=body, headers=headers)


def _stages(client: httpx.Client, task_id: str, timeout: float = 240.0) -> tuple[dict, list]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get("/api/v1/lipsync/status", params={"task_id": task_id}).json()
        if not seen or seen[-1] != body["stage"]:
            seen.append(body["stage"])
        if body["state"] in ("succeeded", "failed", "canceled"):
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"{task_id} did not finish: {seen}")


def test_push_with_urls_runs_after_a_fetching_stage(
    svc: Any, media_server: LoopbackHTTP, media: dict[str, Path]
) -> None:
    video_url = media_server.url("/file/face.png?delay=1.5")  # slow enough to see the stage
    audio_url = media_server.url("/file/speech.wav")
    with svc.client() as c:
        resp = _push(c, video_url=video_url, audio_url=audio_url)
        assert resp.status_code == 202, resp.text
        task_id = resp.json()["task_id"]
        body, stages = _stages(c, task_id)
        assert body["state"] == "succeeded", f"{body}\n{svc.logs()}"
        assert "fetching" in stages, stages
        assert stages.index("fetching") < len(stages) - 1
        assert video_url not in str(body) and audio_url not in str(body)  # never echoed
        out = c.get("/api/v1/lipsync/download", params={"task_id": task_id})
        assert out.status_code == 200 and out.headers["content-type"] == "video/mp4"
        assert out.content[4:8] == b"ftyp"
    fetched = [path for path, _ in media_server.requests[-2:]]
    assert sorted(fetched) == ["/file/face.png", "/file/speech.wav"]
    assert not (svc.data_dir / "uploads" / task_id).exists()  # fetched inputs removed too
    log = svc.worker_log()
    assert f"job {task_id}: video_url fetched from 127.0.0.1" in log
    assert "delay=1.5" not in log  # the URL's path and query are not logged


def test_one_file_one_url(svc: Any, media_server: LoopbackHTTP, media: dict[str, Path]) -> None:
    with svc.client() as c:
        resp = _push(
            c, {"video": media["astronaut"]}, audio_url=media_server.url("/file/speech.wav")
        )
        assert resp.status_code == 202, resp.text
        body = wait_for(c, resp.json()["task_id"], timeout=240)
    assert body["state"] == "succeeded", f"{body}\n{svc.logs()}"


def test_refused_urls_fail_the_job_without_a_connection(
    svc: Any, media_server: LoopbackHTTP, victim: LoopbackHTTP, media: dict[str, Path]
) -> None:
    """With only 127.0.0.1 allowed: a name resolving to loopback, ::1, a private and the
    metadata address, and a redirect from the allowed host to loopback are all refused."""
    secret = "/file/secret"
    to_victim = quote(victim.url(secret, host="localhost"), safe="")
    refused = {
        "localhost": victim.url(secret, host="localhost"),
        "[::1]": f"http://[::1]:{victim.port}{secret}",
        "10.0.0.1": "http://10.0.0.1/media.mp4",
        "169.254.169.254": "http://169.254.169.254/latest/meta-data/",
        "redirect to loopback": media_server.url(f"/to?url={to_victim}"),
    }
    with svc.client() as c:
        pushed = {}
        for case, url in refused.items():
            resp = _push(c, {"audio": media["speech"]}, video_url=url)
            assert resp.status_code == 202, (case, resp.text)
            pushed[case] = resp.json()["task_id"]
        for case, task_id in pushed.items():
            body = wait_for(c, task_id, timeout=60)
            assert body["state"] == "failed", (case, body)
            assert body["error"]["code"] == "fetch_refused", (case, body)
            assert body["error"]["message"].startswith("video_url: "), body
            assert not (svc.data_dir / "uploads" / task_id).exists()
    assert victim.settled_connections() == 0


def test_fetch_errors_fail_the_job(
    svc: Any, media_server: LoopbackHTTP, media: dict[str, Path]
) -> None:
    cases = {
        media_server.url("/status/404"): "fetch_failed",
        media_server.url(f"/stream?bytes={CAP + 1}"): "too_large",
        media_server.url("/file/notes.mp4"): "unsupported_media",  # probed as uploads are
    }
    with svc.client() as c:
        for url, code in cases.items():
            resp = _push(c, {"audio": media["speech"]}, video_url=url)
            assert resp.status_code == 202, resp.text
            body = wait_for(c, resp.json()["task_id"], timeout=60)
            assert body["state"] == "failed" and body["error"]["code"] == code, (url, body)


def test_bad_url_fields_are_422_and_queue_nothing(svc: Any, media: dict[str, Path]) -> None:
    uploads = svc.data_dir / "uploads"
    before = set(uploads.iterdir()) if uploads.exists() else set()
    speech = {"audio": media["speech"]}
    with svc.client() as c:
        for data, code, field in (
            ({"video_url": "file:///etc/passwd"}, "fetch_refused", "video_url"),
            ({"video_url": "gopher://127.0.0.1:70/_x"}, "fetch_refused", "video_url"),
            ({"video_url": "http://"}, "invalid_url", "video_url"),
            ({"video_url": "http://user:pw@example.com/a.mp4"}, "invalid_url", "video_url"),
            ({"video_url": "https://example.com/" + "a" * 1100}, "invalid_url", "video_url"),
            ({}, "missing_field", "video"),
        ):
            resp = _push(c, speech, **data)
            assert resp.status_code == 422, (data, resp.text)
            detail = resp.json()["detail"]
            assert (detail["code"], detail.get("field")) == (code, field), (data, detail)
        both = {"audio": media["speech"], "video": media["astronaut"]}
        resp = _push(c, both, video_url="https://example.com/a.mp4")
        assert resp.status_code == 422
        assert resp.json()["detail"]["code"] == "conflicting_fields"
        assert resp.json()["detail"]["field"] == "video_url"
        resp = _push(c, video_url="https://example.com/a.mp4")
        assert resp.status_code == 422 and resp.json()["detail"]["field"] == "audio"
    after = set(uploads.iterdir()) if uploads.exists() else set()
    assert after <= before, "nothing is kept for a refused push"


def test_a_second_audio_input_by_url(
    svc: Any, media_server: LoopbackHTTP, media: dict[str, Path]
) -> None:
    """``audio_url_1`` is fetched by the worker; a segment past its end fails the job with
    the same field path a file would have been refused with at the push."""
    url = media_server.url("/file/speech.wav")
    files = {"video": media["astronaut"], "audio": media["speech"]}
    good = '[{"start": 0, "end": 1, "audio": 0}, {"start": 1, "end": 2, "audio": 1}]'
    bad = '[{"start": 0, "end": 1, "audio": 1, "audio_start": 60}]'
    with svc.client() as c:
        resp = _push(c, files, audio_url_1=url, segments=good)
        assert resp.status_code == 202, resp.text
        task_id = resp.json()["task_id"]
        body = wait_for(c, task_id, timeout=240)
        assert body["state"] == "succeeded", f"{body}\n{svc.logs()}"
        assert f"job {task_id}: audio_url_1 fetched from 127.0.0.1" in svc.worker_log()
        resp = _push(c, files, audio_url_1=url, segments=bad)
        assert resp.status_code == 202, resp.text
        body = wait_for(c, resp.json()["task_id"], timeout=240)
    assert body["state"] == "failed" and body["error"]["code"] == "invalid_option", body
    assert "segments[0].audio_start" in body["error"]["message"]
