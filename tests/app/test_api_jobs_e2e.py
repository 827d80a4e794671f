"""End to end over HTTP: real uvicorn, real Celery worker, real Redis, real media."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from lipsync.evaluate.sync import MIN_CAL_FRAMES
from tests.app.service_harness import KEY_A, KEY_B, PREFIX, push, wait_for, wav_seconds

pytestmark = pytest.mark.slow


def wait_quality(c: Any, task_id: str, timeout: float = 300) -> dict[str, Any]:
    """The status once the job's measurement is over."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = c.get("/api/v1/lipsync/status", params={"task_id": task_id}).json()
        if (body.get("quality") or {}).get("state") not in ("pending", "running"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def test_push_status_download_real_media(
    stack: Any, media: dict[str, Path], finished: dict[str, Any], tmp_path: Path
) -> None:
    pushed, status = finished["pushed"], finished["status"]
    task_id = pushed["task_id"]
    assert set(pushed) == {"task_id", "status_url", "download_url"}
    assert pushed["status_url"] == f"{stack.base_url}/api/v1/lipsync/status?task_id={task_id}"
    assert pushed["download_url"].endswith(f"/api/v1/lipsync/download?task_id={task_id}")

    # status: a finished record with a result and the timestamps in order
    assert status["progress"] == 1.0 and status["error"] is None
    assert status["created_at"] <= status["started_at"] <= status["finished_at"]
    result = status["result"]
    assert result["file"] == f"{task_id}.mp4"
    assert result["no_face_frames"] == 0
    assert result["timings"]
    # lipsync evaluate's numbers follow the result: the face, no offset, speech predicts mouth
    assert status["quality"]["state"] in ("pending", "running", "ready"), status["quality"]
    with stack.client() as c:
        measured = wait_quality(c, task_id)
    assert measured["state"] == "succeeded" and measured["quality"]["state"] == "ready", measured
    quality = measured["quality"]["metrics"]
    assert quality["face_found_rate"] > 0.95
    assert quality["envelope_r_at_zero"] > 0.3
    if result["frames"] >= MIN_CAL_FRAMES:
        assert abs(quality["sync_offset_frames"]) <= 1
        assert quality["sync_offset_ms"] == quality["sync_offset_frames"] * 40.0
        assert quality["sync_score"] > 0.5
    else:  # too short for the calibrated measure: said, not guessed
        assert quality["sync_offset_frames"] is None and quality["sync_score"] is None
    assert quality["lse_d"] is None and "syncnet_v2.model" in quality["lse_note"]
    # progress only ever went up, and the pipeline's stages were reported on the way
    progress = [p for _, p, _ in finished["seen"]]
    assert progress == sorted(progress)
    assert {s for _, _, s in finished["seen"]} - {"queued", "starting", "done"}

    with stack.client() as c:
        resp = c.get(pushed["download_url"])
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "video/mp4"
        assert f'attachment; filename="{task_id}.mp4"' == resp.headers["content-disposition"]
        assert resp.headers["accept-ranges"] == "bytes"
        out = tmp_path / "out.mp4"
        out.write_bytes(resp.content)
        # same bytes by result name
        by_name = c.get("/api/v1/lipsync/download", params={"file_path": result["file"]})
        assert by_name.status_code == 200 and by_name.content == resp.content
        # HTTP Range: players seek
        part = c.get(pushed["download_url"], headers={"Range": "bytes=100-299"})
        assert part.status_code == 206
        assert part.content == resp.content[100:300]
        assert part.headers["content-range"] == f"bytes 100-299/{len(resp.content)}"

    audio_s = wav_seconds(media["speech"])
    with av.open(str(out)) as container:
        vstream = container.streams.video[0]
        assert container.streams.audio, "the result carries the speech"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(vstream)]
        fps = float(vstream.average_rate or 25)
    assert frames[0].shape == (512, 512, 3)  # the astronaut portrait's own size
    assert abs(len(frames) / fps - audio_s) < 0.25
    assert abs(result["duration_s"] - audio_s) < 0.25
    assert result["frames"] == len(frames)
    # lip-synced: the mouth region moves while the rest of the still image stays put
    stack_ = np.stack(frames).astype(np.float32)
    motion = stack_.std(axis=0).mean(axis=2)
    lower_face, background = motion[170:260, 190:300], motion[400:, :120]
    assert lower_face.max() > 8.0
    assert lower_face.mean() > 4 * background.mean() + 0.1


def test_metrics_and_readiness(stack: Any, finished: dict[str, Any]) -> None:
    with stack.client(key=None) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["workers"]
        assert c.get("/healthz").json() == {"status": "ok"}
        text = c.get("/metrics").text
    assert "lipsync_redis_up 1.0" in text
    assert 'lipsync_jobs_finished_total{state="succeeded"}' in text
    assert 'lipsync_jobs{state="queued"}' in text
    assert "lipsync_queue_depth" in text
    assert 'lipsync_stage_seconds_count{stage="encode"}' in text


def test_terminate_queued_and_running(stack: Any, media: dict[str, Path]) -> None:
    uploads = stack.data_dir / "uploads"
    work = stack.data_dir / "work"
    results = stack.data_dir / "results"
    with stack.client() as c:
        running = push(c, media["speech_long"], media["astronaut"]).json()["task_id"]
        queued = push(c, media["speech"], media["astronaut"]).json()["task_id"]
        body = wait_for(c, running, states=("running",), min_progress=0.5, timeout=120)
        assert body["stage"] not in ("queued", "starting")
        # the second job waits behind the first (one job per worker)
        assert c.get("/api/v1/lipsync/status", params={"task_id": queued}).json()["state"] == (
            "queued"
        )

        # terminate the queued one: canceled at once, uploads gone, it never starts
        resp = c.post("/api/v1/lipsync/terminate", json={"task_id": queued})
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == "canceled"
        assert not (uploads / queued).exists()

        # terminate the running one: it stops at its next batch
        resp = c.post("/api/v1/lipsync/terminate", json={"task_id": running})
        assert resp.status_code == 202, resp.text
        assert resp.json()["cancel_requested"] is True
        t0 = time.monotonic()
        body = wait_for(c, running, states=("canceled", "succeeded", "failed"), timeout=30)
        assert body["state"] == "canceled", body
        assert time.monotonic() - t0 < 10
        assert body["result"] is None and body["error"] is None
        stopped_at = body["progress"]
        assert stopped_at < 1.0
        time.sleep(2.0)
        after = c.get("/api/v1/lipsync/status", params={"task_id": running}).json()
        assert after["progress"] == stopped_at and after["state"] == "canceled"
        for job in (running, queued):
            assert not (work / job).exists(), "temporary files removed"
            assert not (uploads / job).exists()
            assert not (results / f"{job}.mp4").exists()

        # the queued job stays canceled and never started, even after its message is consumed
        time.sleep(1.0)
        body = c.get("/api/v1/lipsync/status", params={"task_id": queued}).json()
        assert body["state"] == "canceled" and body["started_at"] is None
        assert not (work / queued).exists()

        # terminating again is harmless; no download for a canceled job
        again = c.post("/api/v1/lipsync/terminate", json={"task_id": running})
        assert again.status_code == 200 and again.json()["state"] == "canceled"
        assert c.get("/api/v1/lipsync/download", params={"task_id": running}).status_code == 404


def test_terminate_finished_job_conflicts(stack: Any, finished: dict[str, Any]) -> None:
    task_id = finished["pushed"]["task_id"]
    job_key = f"{PREFIX}:job:{task_id}"
    record = stack.redis.client().hgetall(job_key)
    with stack.client() as c:
        resp = c.post("/api/v1/lipsync/terminate", json={"task_id": task_id})
        after = c.get("/api/v1/lipsync/status", params={"task_id": task_id}).json()
    assert resp.status_code == 409
    assert resp.json() == {"detail": {"code": "finished", "message": "the job already succeeded"}}
    # the finished job is left exactly as it was: no cancel flag, its result kept
    assert stack.redis.client().hgetall(job_key) == record
    assert "cancel" not in record and record["state"] == "succeeded"
    assert after["state"] == "succeeded" and after["result"] == finished["status"]["result"]


def test_unknown_id_is_404(stack: Any) -> None:
    with stack.client() as c:
        for task_id in ("0" * 32, "f" * 32, "nope", "../" * 3, ""):
            assert c.get("/api/v1/lipsync/status", params={"task_id": task_id}).status_code == 404
            resp = c.post("/api/v1/lipsync/terminate", json={"task_id": task_id})
            assert resp.status_code == 404
            resp = c.get("/api/v1/lipsync/download", params={"task_id": task_id})
            assert resp.status_code == 404
        # no task id at all is a malformed request, not a made-up "pending"
        assert c.get("/api/v1/lipsync/status").status_code == 422


def test_video_without_face_fails_with_no_face(stack: Any, media: dict[str, Path]) -> None:
    with stack.client() as c:
        resp = push(c, media["speech"], media["gradient"])
        assert resp.status_code == 202, resp.text
        body = wait_for(c, resp.json()["task_id"])
    assert body["state"] == "failed", body
    assert body["error"]["code"] == "no_face"
    assert body["error"]["message"]
    assert body["result"] is None


def test_options_are_passed_to_the_pipeline(stack: Any, media: dict[str, Path]) -> None:
    with stack.client() as c:
        resp = push(
            c, media["speech"], media["astronaut"], fps="12", sync_mode="cut_off", pads="0 12 0 0"
        )
        assert resp.status_code == 202, resp.text
        body = wait_for(c, resp.json()["task_id"])
    assert body["state"] == "succeeded", body
    assert body["result"]["fps"] == 12.0


def test_detector_option_reaches_the_pipeline(stack: Any, media: dict[str, Path]) -> None:
    """detector=s3fd is passed through: without models/s3fd.pth the job names the file."""
    with stack.client() as c:
        bad = push(c, media["speech"], media["astronaut"], detector="haar")
        assert bad.status_code == 422, bad.text
        resp = push(c, media["speech"], media["astronaut"], detector="s3fd")
        assert resp.status_code == 202, resp.text
        body = wait_for(c, resp.json()["task_id"])
    assert body["state"] == "failed", body
    assert body["error"]["code"] == "model_missing" and "s3fd.pth" in body["error"]["message"]


def test_api_keys_isolate_jobs(stack: Any, finished: dict[str, Any]) -> None:
    task_id = finished["pushed"]["task_id"]
    params = {"task_id": task_id}
    for key in (None, "wrong-key"):
        with stack.client(key=key) as c:
            assert c.get("/api/v1/lipsync/status", params=params).status_code == 401
            assert c.get("/api/v1/lipsync/download", params=params).status_code == 401
            resp = c.post("/api/v1/lipsync/terminate", json=params)
            assert resp.status_code == 401
            resp = c.post("/api/v1/lipsync/push", files={"audio": ("a.wav", b"x")})
            assert resp.status_code == 401
            assert resp.headers["www-authenticate"] == "ApiKey"
    with stack.client(key=KEY_B) as c:
        assert c.get("/api/v1/lipsync/status", params=params).status_code == 404
        assert c.get("/api/v1/lipsync/download", params=params).status_code == 404
        name = {"file_path": f"{task_id}.mp4"}
        assert c.get("/api/v1/lipsync/download", params=name).status_code == 404
        assert c.post("/api/v1/lipsync/terminate", json=params).status_code == 404
    with stack.client(key=KEY_A) as c:
        assert c.get("/api/v1/lipsync/status", params=params).status_code == 200


def test_idempotency_key(stack: Any, media: dict[str, Path]) -> None:
    headers = {"Idempotency-Key": f"idem-{time.time_ns()}"}
    with stack.client() as c:
        first = push(c, media["speech"], media["astronaut"], headers=headers)
        assert first.status_code == 202, first.text
        again = push(c, media["speech"], media["astronaut"], headers=headers)
        assert again.status_code == 202
        assert again.json() == first.json()
        redis = stack.redis.client()
        jobs = set(redis.scan_iter(f"{PREFIX}:job:*"))
        queued = redis.zrange(f"{PREFIX}:queued", 0, -1)
        uploads = set((stack.data_dir / "uploads").iterdir())
        bound = list(redis.scan_iter(f"{PREFIX}:idem:*:{headers['Idempotency-Key']}"))
        assert len(bound) == 1 and redis.get(bound[0]).split()[0] == first.json()["task_id"]
        other = push(c, media["speech"], media["gradient"], headers=headers)
        assert other.status_code == 409, other.text
        assert other.json() == {
            "detail": {
                "code": "idempotency",
                "message": "this Idempotency-Key was used with another payload",
            }
        }
        # no second job: no new record, nothing queued, its upload removed, key still bound
        assert set(redis.scan_iter(f"{PREFIX}:job:*")) == jobs
        assert set(redis.zrange(f"{PREFIX}:queued", 0, -1)) <= set(queued)
        assert set((stack.data_dir / "uploads").iterdir()) <= uploads
        assert redis.get(bound[0]).split()[0] == first.json()["task_id"]
        # the same key is a different namespace for another API key
        with stack.client(key=KEY_B) as b:
            theirs = push(b, media["speech"], media["astronaut"], headers=headers)
            assert theirs.status_code == 202
            assert theirs.json()["task_id"] != first.json()["task_id"]
            wait_for(b, theirs.json()["task_id"])
        wait_for(c, first.json()["task_id"])
