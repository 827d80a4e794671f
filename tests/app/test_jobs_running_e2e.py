"""GET /events and DELETE /jobs/{task_id} on jobs a real worker runs (the ``stack`` fixture:
Redis, one Celery worker, uvicorn over HTTP). The event stream follows a job from queued to
succeeded; a finished job and a running one are deleted, and afterwards neither the data dir
nor the whole Redis db (service keys and the broker's) holds anything naming them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from tests.app.envelope import assert_error_envelope
from tests.app.service_harness import KEY_B, push, wait_for
from tests.app.test_jobs_list_delete_e2e import files_mentioning, mentions, read_events

P = "/api/v1/lipsync"


def nothing_left(stack: Any, task_id: str, timeout: float = 20.0) -> None:
    """No file under the data dir and no Redis key (name or value, whole db) names the job;
    the broker may hold its message until the worker acknowledges it, so wait a little."""
    r = redis.Redis.from_url(stack.redis.url)
    deadline = time.monotonic() + timeout
    while True:
        left = mentions(r, task_id)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == [], left
    assert files_mentioning(stack.data_dir, task_id) == []


def test_events_follow_a_job_then_delete_removes_its_result(
    stack: Any, media: dict[str, Path]
) -> None:
    with stack.client() as c:
        # long speech: the render lasts more than one event poll (the measurement no
        # longer keeps the job running after it)
        resp = push(c, media["speech_long"], media["astronaut"], engine="viseme")
        assert resp.status_code == 202, resp.text
        task = resp.json()["task_id"]
        statuses: list[dict[str, Any]] = []
        comments = 0
        with c.stream("GET", f"{P}/events", params={"task_id": task}) as stream:
            assert stream.status_code == 200
            for kind, data in read_events(stream, time.monotonic() + 180):
                if kind == "status":
                    statuses.append(json.loads(data))
                elif kind == "comment":
                    comments += 1
        assert statuses, stack.logs()
        states = [s["state"] for s in statuses]
        assert states[-1] == "succeeded", f"{statuses[-1]}\n{stack.logs()}"
        assert "running" in states and states.index("running") < len(states) - 1
        progress = [s["progress"] for s in statuses]
        assert progress == sorted(progress) and progress[-1] == 1.0, progress
        assert any(0 < p < 1 for p in progress), progress
        assert len({s["stage"] for s in statuses}) >= 3, [s["stage"] for s in statuses]
        assert all(s["task_id"] == task for s in statuses)
        final = c.get(f"{P}/status", params={"task_id": task}).json()
        assert statuses[-1] == final and final["result"]["file"] == f"{task}.mp4"
        print(f"\nFIGURE events_status_events = {len(statuses)} (stages {len(set(states))})")

        listed = c.get(f"{P}/jobs", params={"state": "succeeded", "limit": 100}).json()["jobs"]
        assert task in [j["task_id"] for j in listed]

        assert (stack.data_dir / "results" / f"{task}.mp4").is_file()
        with stack.client(KEY_B) as other:
            assert other.delete(f"{P}/jobs/{task}").status_code == 404
        assert c.delete(f"{P}/jobs/{task}").status_code == 204
        for path in ("status", "download", "events"):
            gone = c.get(f"{P}/{path}", params={"task_id": task})
            assert gone.status_code == 404, (path, gone.text)
            assert_error_envelope(404, gone.json())
        listed = c.get(f"{P}/jobs", params={"limit": 100}).json()["jobs"]
        assert task not in [j["task_id"] for j in listed]
    nothing_left(stack, task)


def test_delete_running_job_stops_it_and_leaves_nothing(stack: Any, media: dict[str, Path]) -> None:
    with stack.client() as c:
        resp = push(
            c, media["speech_long"], media["astronaut"], headers={"Idempotency-Key": "del-run"}
        )
        assert resp.status_code == 202, resp.text
        task = resp.json()["task_id"]
        wait_for(c, task, states=("running",), min_progress=0.01, timeout=120)
        assert files_mentioning(stack.data_dir, task)  # uploads and work dir
        t0 = time.monotonic()
        deleted = c.delete(f"{P}/jobs/{task}")
        took = time.monotonic() - t0
        assert deleted.status_code == 204, deleted.text
        print(f"\nFIGURE delete_running_job_s = {took:.2f}")
        for path in ("status", "download", "events"):
            assert c.get(f"{P}/{path}", params={"task_id": task}).status_code == 404
        # the worker stopped it (canceled at its next batch), not ran it to the end
        deadline = time.monotonic() + 15
        while f"job {task} canceled" not in (log := stack.worker.log.read_text(errors="replace")):
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
        assert f"job {task} succeeded" not in log
        # the same Idempotency-Key now makes a new job
        again = push(c, media["speech"], media["astronaut"], headers={"Idempotency-Key": "del-run"})
        assert again.status_code == 202 and again.json()["task_id"] != task
        assert c.delete(f"{P}/jobs/{again.json()['task_id']}").status_code == 204
    nothing_left(stack, task)
