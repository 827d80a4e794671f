"""Result first, measurement after, through the real service (uvicorn, Celery, Redis).

A job is ``succeeded`` with its download ready when its video is written; ``lipsync
evaluate`` follows as its own lowest-priority task, shown as ``status.quality``. A job that
arrives while a measurement runs is started first; the event stream carries both; a push's
``evaluate=false`` (declared once, listed by ``GET /options``) skips it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from service.queue import (
    JOB_PRIORITY,
    QUALITY_PRIORITY,
    QUEUE,
    TASK_PROCESS,
    TASK_QUALITY,
    create_celery,
    quality_task_id,
)
from service.settings import Settings
from tests import media_factory as mf
from tests.app import service_harness as sh
from tests.app.conftest import Stack
from tests.worker.jobkit import make_job

API = "/api/v1/lipsync"
DB = 9  # shared with test_http_edges_e2e.py, which runs no worker


def _status(c: httpx.Client, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = c.get(f"{API}/status", params={"task_id": task_id}).json()
    return body


def _until(c: httpx.Client, task_id: str, pred: Any, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = _status(c, task_id)
        if pred(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_evaluate_false_is_a_declared_push_field(stack: Stack, media: dict[str, Path]) -> None:
    with stack.client() as c:
        options = {o["name"]: o for o in c.get(f"{API}/options").json()["options"]}
        assert options["evaluate"]["type"] == "bool" and options["evaluate"]["default"] is True
        schema = c.get("/openapi.json").json()
        form = schema["components"]["schemas"]["PushForm"]["properties"]
        assert form["evaluate"]["type"] == "boolean"
        bad = sh.push(c, media["speech"], media["astronaut"], evaluate="perhaps")
        assert bad.status_code == 422 and bad.json()["detail"]["field"] == "evaluate"
        resp = sh.push(c, media["speech"], media["astronaut"], evaluate="false")
        assert resp.status_code == 202, resp.text
        task_id = resp.json()["task_id"]
        body = sh.wait_for(c, task_id)
        assert body["state"] == "succeeded", stack.logs()
        assert body["quality"] == {
            "state": "skipped",
            "note": "evaluate=false",
            "metrics": None,
            "cancel_requested": False,
            "started_at": None,
            "finished_at": None,
        }
        # nothing to measure: a terminate finds the job finished
        resp = c.post(f"{API}/terminate", json={"task_id": task_id})
        assert resp.status_code == 409 and resp.json()["detail"]["code"] == "finished"


def test_the_event_stream_brings_the_result_then_its_measurement(
    stack: Stack, media: dict[str, Path]
) -> None:
    with stack.client() as c:
        resp = sh.push(c, media["speech"], media["astronaut"])
        task_id = resp.json()["task_id"]
        events: list[dict[str, Any]] = []
        with c.stream("GET", f"{API}/events", params={"task_id": task_id}, timeout=300) as s:
            for line in s.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        states = [(e["state"], (e.get("quality") or {}).get("state")) for e in events]
        first_done = next(i for i, e in enumerate(events) if e["state"] == "succeeded")
        # the result's event comes while the measurement is still to come ...
        assert states[first_done][1] in ("pending", "running"), states
        # ... and the stream ends with the measurement's end
        assert states[-1] == ("succeeded", "ready"), states
        assert events[-1]["quality"]["metrics"]["face_found_rate"] > 0.9


def test_a_waiting_job_goes_before_a_measurement(
    redis_server: sh.RedisServer, tmp_path: Path, media: dict[str, Path]
) -> None:
    """One worker. A measurement that runs when a job is pushed steps aside (handed back,
    its attempt not counted): the job starts at once, the measurement ends after it. And in
    the broker, a measurement's message waiting beside a job's is taken after it."""
    video = mf.write_video(tmp_path / "moving.mp4", mf.moving_portrait_frames(200))
    with sh.service(redis_server, tmp_path / "svc", DB) as svc:
        svc.start_worker("w1")
        svc.start_api()
        with svc.client() as c:
            first = sh.push(c, media["speech"], video, engine="viseme").json()["task_id"]
            _until(c, first, lambda b: (b.get("quality") or {}).get("state") == "running")
            time.sleep(0.5)
            pushed_at = time.monotonic()
            second = sh.push(c, media["speech"], media["astronaut"]).json()["task_id"]
            _until(c, second, lambda b: b["state"] != "queued", 60)
            started = time.monotonic() - pushed_at
            assert started < 5.0, f"the job waited {started:.1f}s behind a measurement"
            body = _status(c, first)
            assert body["quality"]["state"] in ("pending", "running"), body["quality"]
            done = _until(c, second, lambda b: b["state"] == "succeeded")
            first_done = _until(c, first, lambda b: b["quality"]["state"] == "ready")
            assert first_done["quality"]["finished_at"] > done["finished_at"]
        record = svc.store().jobs.get(first)
        assert record is not None and record.quality is not None
        assert record.quality.attempts == 1, record.quality  # the step aside did not count
        assert "measurement of " + first + " handed back (yield)" in svc.worker_log()

        # the broker's side: with the worker stopped, a measurement's message is queued
        # before a job's; the next worker takes the job first
        svc.workers["w1"].proc.terminate()
        svc.workers["w1"].proc.wait(timeout=60)
        settings = Settings(
            redis_url=svc.redis.url,
            broker_url=svc.env["LIPSYNC_BROKER_URL"],
            redis_prefix=svc.prefix,
            data_dir=svc.data_dir,
        )
        store = svc.store()
        done_id = make_job(settings, store, media["astronaut"], media["speech"])
        inputs = json.dumps({"video": "", "audio": ""})
        mapping = {"state": "succeeded", "q_state": "pending", "q_inputs": inputs}
        store.client.hset(store.keys.job(done_id), mapping=mapping)
        store.client.zrem(store.keys.queued, done_id)  # as a finished job: not waiting
        job_id = make_job(settings, store, media["astronaut"], media["speech"])
        low = f"{QUEUE}\x06\x169"  # kombu's list for priority 9
        with redis.Redis.from_url(svc.env["LIPSYNC_BROKER_URL"]) as broker:
            before = (broker.llen(QUEUE), broker.llen(low))  # the 2nd job's measurement waits
        producer = create_celery(settings, with_tasks=False)
        producer.send_task(TASK_QUALITY, args=[done_id], task_id=quality_task_id(done_id),
                           queue=QUEUE, priority=QUALITY_PRIORITY)  # fmt: skip
        producer.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE,
                           priority=JOB_PRIORITY)  # fmt: skip
        producer.close()
        with redis.Redis.from_url(svc.env["LIPSYNC_BROKER_URL"]) as broker:
            assert (broker.llen(QUEUE), broker.llen(low)) == (before[0] + 1, before[1] + 1)
        svc.start_worker("w2")
        deadline = time.monotonic() + 240
        w2_log = svc.workers["w2"].log
        while "measurement of " + done_id not in w2_log.read_text(errors="replace"):
            assert time.monotonic() < deadline, svc.logs()
            time.sleep(0.2)
        log = w2_log.read_text(errors="replace")
        job_at = log.find(f"Task lipsync.process[{job_id}] received")
        quality_at = log.find(f"Task lipsync.quality[{quality_task_id(done_id)}] received")
        assert 0 <= job_at < quality_at, log[-3000:]
