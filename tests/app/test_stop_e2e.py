"""Terminate, DELETE and SIGTERM through the real service (uvicorn, a Celery worker, Redis)
during the two stages that used to ignore them: the fetch of a URL from a server that
accepts and never answers, and the measurement (``lipsync evaluate``) that follows a
result. Each stops within 2 s: ``canceled`` (or the measurement ``skipped``) for a user's
stop, handed back with no attempt counted for an operator's. Every other stage is covered
in-process by tests/worker/test_worker_stop_stages.py.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import media_factory as mf
from tests.app import service_harness as sh
from tests.service.loopback_http import Tarpit
from worker.quality import STARTED

STOP_WITHIN_S = 2.0
DB = 14  # a broker database of its own


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stop-media")
    return {
        "speech": sh.speech(d / "speech.wav", "Hello there, this is a test of stopping."),
        "video": mf.write_video(d / "moving.mp4", mf.moving_portrait_frames(300)),
    }


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    server = Tarpit()
    yield server
    server.close()


def _until(
    client: httpx.Client, task_id: str, pred: Callable[[dict[str, Any]], bool], timeout: float
) -> tuple[dict[str, Any], float]:
    """Poll status until ``pred`` holds; the status and when it was first seen."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = client.get("/api/v1/lipsync/status", params={"task_id": task_id})
        if resp.status_code == 404:
            return {"state": "gone"}, time.monotonic()
        body = resp.json()
        if pred(body):
            return body, time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{task_id}: condition not met; last {body}")


def _push_url(client: httpx.Client, speech: Path, url: str) -> str:
    with speech.open("rb") as a:
        resp = client.post(
            "/api/v1/lipsync/push", files={"audio": ("s.wav", a)}, data={"video_url": url}
        )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["task_id"])


def _fetching(body: dict[str, Any]) -> bool:
    return body["state"] == "running" and body["stage"] == "fetching"


def _evaluating(svc: sh.Service, job: str) -> Callable[[dict[str, Any]], bool]:
    """Whether the job's measurement runs and its child is inside ``lipsync evaluate``."""

    def evaluating(body: dict[str, Any]) -> bool:
        running = (body.get("quality") or {}).get("state") == "running"
        return running and (svc.data_dir / "work" / job / STARTED).exists()

    return evaluating


def test_terminate_delete_and_sigterm_stop_a_fetch_from_a_tarpit(
    redis_server: sh.RedisServer, tmp_path: Path, inputs: dict[str, Path], tarpit: Tarpit
) -> None:
    with sh.service(redis_server, tmp_path, DB, LIPSYNC_FETCH_ALLOW="127.0.0.1") as svc:
        svc.start_worker("w1")
        svc.start_api()
        with svc.client() as c:
            # terminate: canceled, not failed at the fetch's deadline
            job = _push_url(c, inputs["speech"], tarpit.url())
            _until(c, job, _fetching, 120)
            time.sleep(0.5)
            asked = time.monotonic()
            assert c.post("/api/v1/lipsync/terminate", json={"task_id": job}).status_code == 202
            body, seen = _until(c, job, lambda b: b["state"] != "running", 30)
            assert body["state"] == "canceled", body
            print(f"\ntarpit: terminate -> canceled {seen - asked:.2f}s")
            assert seen - asked <= STOP_WITHIN_S, f"terminate: {seen - asked:.2f}s"

            # DELETE: answers once the job has stopped
            job = _push_url(c, inputs["speech"], tarpit.url())
            _until(c, job, _fetching, 120)
            time.sleep(0.5)
            asked = time.monotonic()
            assert c.delete(f"/api/v1/lipsync/jobs/{job}").status_code == 204
            took = time.monotonic() - asked
            print(f"tarpit: DELETE -> 204 {took:.2f}s")
            assert took <= STOP_WITHIN_S, f"DELETE: {took:.2f}s"
            assert c.get("/api/v1/lipsync/status", params={"task_id": job}).status_code == 404

            # SIGTERM to the worker: the job goes back to the queue, its attempt not counted
            job = _push_url(c, inputs["speech"], tarpit.url())
            _until(c, job, _fetching, 120)
            time.sleep(0.5)
            worker = svc.workers["w1"]
            asked = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)
            body, seen = _until(c, job, lambda b: b["state"] == "queued", 30)
            print(f"tarpit: SIGTERM -> handed back {seen - asked:.2f}s")
            assert seen - asked <= STOP_WITHIN_S, f"SIGTERM: handed back {seen - asked:.2f}s"
            worker.proc.wait(timeout=30)
            print(f"\ntarpit: SIGTERM to the worker's exit {time.monotonic() - asked:.2f}s")
            record = svc.store().jobs.get(job)
            assert record is not None and record.attempts == 0 and record.state == "queued"


def test_terminate_delete_and_sigterm_stop_the_measurement(
    redis_server: sh.RedisServer, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    """The result is downloadable before its measurement ends; a terminate then stops the
    measurement alone (``quality.state`` skipped, the result stays), a DELETE removes the
    job within 2 s, and a SIGTERM hands the measurement back (``pending``, no attempt
    counted) for the next worker, which measures it."""
    with sh.service(redis_server, tmp_path, DB) as svc:
        svc.start_worker("w1")
        svc.start_api()
        with svc.client() as c:

            def push() -> str:
                resp = sh.push(c, inputs["speech"], inputs["video"], engine="viseme")
                assert resp.status_code == 202, resp.text
                return str(resp.json()["task_id"])

            # terminate
            job = push()
            body, _ = _until(c, job, _evaluating(svc, job), 240)
            assert body["state"] == "succeeded"
            dl = c.get("/api/v1/lipsync/download", params={"task_id": job})
            assert dl.status_code == 200 and dl.content[4:8] == b"ftyp"  # ready before it
            time.sleep(0.5)
            asked = time.monotonic()
            resp = c.post("/api/v1/lipsync/terminate", json={"task_id": job})
            assert resp.status_code == 202, resp.text
            assert resp.json()["quality"]["cancel_requested"] is True
            body, seen = _until(c, job, lambda b: b["quality"]["state"] != "running", 30)
            assert body["quality"]["state"] == "skipped" and body["quality"]["note"] == "canceled"
            print(f"\nmeasurement: terminate -> skipped {seen - asked:.2f}s")
            assert seen - asked <= STOP_WITHIN_S, f"terminate: {seen - asked:.2f}s"
            assert c.get("/api/v1/lipsync/download", params={"task_id": job}).status_code == 200

            # DELETE
            job = push()
            _until(c, job, _evaluating(svc, job), 240)
            time.sleep(0.5)
            asked = time.monotonic()
            assert c.delete(f"/api/v1/lipsync/jobs/{job}").status_code == 204
            took = time.monotonic() - asked
            print(f"measurement: DELETE -> 204 {took:.2f}s")
            assert took <= STOP_WITHIN_S, f"DELETE: {took:.2f}s"

            # SIGTERM
            job = push()
            _until(c, job, _evaluating(svc, job), 240)
            time.sleep(0.5)
            worker = svc.workers["w1"]

            asked = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)

            body, seen = _until(c, job, lambda b: b["quality"]["state"] == "pending", 30)
            print(f"measurement: SIGTERM -> handed back {seen - asked:.2f}s")
            assert seen - asked <= STOP_WITHIN_S, f"SIGTERM: handed back {seen - asked:.2f}s"
            worker.proc.wait(timeout=30)
            record = svc.store().jobs.get(job)
            assert record is not None and record.quality is not None
            assert record.quality.attempts == 0 and record.state == "succeeded"
            svc.start_worker("w2")
            body, _ = _until(c, job, lambda b: b["quality"]["state"] != "pending"
                             and b["quality"]["state"] != "running", 240)  # fmt: skip
            assert body["quality"]["state"] == "ready", (body, svc.logs())
            assert body["quality"]["metrics"]["face_found_rate"] > 0.9
