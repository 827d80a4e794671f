"""Expiry of uploads/results/work dirs and repair of stale bookkeeping (real Redis)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from service.jobs import JobRecord, JobStore
from service.settings import Settings
from tests.worker.jobkit import make_job
from worker.cleanup import run_cleanup
from worker.jobs import run_job


def test_expired_results_and_orphans_are_deleted(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    settings = settings.model_copy(update={"result_ttl_s": 4 * 3600})
    done = make_job(settings, store, media["astronaut"], media["speech"])
    assert run_job(done, settings, store) == "succeeded"
    result = settings.results_dir / f"{done}.mp4"
    queued = make_job(settings, store, media["astronaut"], media["speech"])
    orphan = uuid.uuid4().hex  # files whose record has expired
    (settings.uploads_dir / orphan).mkdir()
    (settings.uploads_dir / orphan / "video.png").write_bytes(b"x")
    (settings.results_dir / f"{orphan}.mp4").write_bytes(b"x")
    (settings.work_dir / orphan).mkdir()

    # now: nothing is old enough; the queued job's uploads are never touched
    assert run_cleanup(settings, store) == {
        "uploads": 0, "results": 0, "work": 0, "stale_jobs": 0, "dangling": 0,
    }  # fmt: skip
    assert result.exists() and (settings.uploads_dir / orphan).exists()

    # past the grace period: orphans go, the live result stays until its TTL
    later = time.time() + 3600 + 5  # the grace period for files without a record
    counts = run_cleanup(settings, store, now=later)
    assert counts["uploads"] == 1 and counts["work"] == 1 and counts["results"] == 1
    assert not (settings.uploads_dir / orphan).exists()
    assert not (settings.results_dir / f"{orphan}.mp4").exists()
    assert result.exists() and (settings.uploads_dir / queued).exists()

    # past the result TTL: the result goes too; a queued job's uploads still stay
    much_later = time.time() + settings.result_ttl_s + 5
    run_cleanup(settings, store, now=much_later)
    assert not result.exists()
    assert (settings.uploads_dir / queued).exists()


def test_stale_running_job_is_failed_and_dangling_ids_pruned(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech"])
    assert store.leases.claim(job_id, 3, "vanished") == "run"
    (settings.work_dir / job_id).mkdir()
    store.client.zadd(store.keys.queued, {"e" * 32: 1.0})  # a record that expired while queued

    # within the hard limit the running job is left alone; the dangling id goes at once
    counts = run_cleanup(settings, store)
    assert counts["stale_jobs"] == 0 and counts["dangling"] == 1
    assert store.jobs.get(job_id).state == "running"  # type: ignore[union-attr]

    future = time.time() + settings.hard_time_limit_s + 120
    counts = run_cleanup(settings, store, now=future)
    assert counts["stale_jobs"] == 1
    job = store.jobs.get(job_id)
    assert job is not None and job.state == "failed"
    assert job.error is not None and job.error["code"] == "timeout"
    assert not (settings.work_dir / job_id).exists()
    assert store.stats.queue_depth() == 0 and store.stats.running_count() == 0


def test_records_expire_in_redis(settings: Settings, store: JobStore) -> None:
    job_id = uuid.uuid4().hex
    store.jobs.create(JobRecord(id=job_id, owner="o", state="queued", created_at=time.time()))
    ttl = store.client.ttl(store.keys.job(job_id))
    assert 0 < ttl <= settings.result_ttl_s
    assert store.jobs.request_cancel(job_id) == "canceled"
    assert 0 < store.client.ttl(store.keys.job(job_id)) <= settings.result_ttl_s
