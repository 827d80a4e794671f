"""The real Celery worker process: a killed pool process re-runs its job, time limits hold."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.jobs import JobStore
from service.queue import QUEUE, TASK_CLEANUP, TASK_PROCESS, create_celery
from service.settings import Settings
from tests.app import service_harness as sh
from tests.worker.jobkit import make_job, wait_job

pytestmark = pytest.mark.slow


def _worker(
    redis_server: sh.RedisServer, tmp: Path, **env: str
) -> Iterator[tuple[Settings, JobStore, sh.Proc]]:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    data = tmp / "data"
    extra = {"LIPSYNC_REDIS_PREFIX": prefix, **env}
    settings = Settings(
        redis_url=redis_server.url,
        redis_prefix=prefix,
        data_dir=data,
        **{k.removeprefix("LIPSYNC_").lower(): v for k, v in env.items()},  # type: ignore[arg-type]
    )
    settings.ensure_dirs()
    # each worker gets its own Redis db for the broker, so queues never mix
    proc = sh.start_worker(sh.service_env(redis_server.url, data, **extra), tmp, name=prefix)
    store = JobStore.from_url(redis_server.url, prefix, settings.result_ttl_s)
    with sh.running(proc):
        sh.wait_worker(redis_server.url, prefix, proc)
        yield settings, store, proc


def _assert_files_go(settings: Settings, job_id: str, within_s: float = 30.0) -> None:
    """The final state is published first, then the job's uploads and work dir are removed
    (so a failed publish keeps the uploads for the rerun): the removal may trail the state."""
    leftovers = (settings.work_dir / job_id, settings.uploads_dir / job_id)
    gone_by = time.monotonic() + within_s
    while any(p.exists() for p in leftovers) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert [str(p) for p in leftovers if p.exists()] == []


def _broker_url(redis_server: sh.RedisServer, db: int) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/{db}"


def test_killed_pool_process_reruns_the_job_once(
    redis_server: sh.RedisServer, tmp_path: Path, media: dict[str, Path]
) -> None:
    broker = _broker_url(redis_server, 1)
    for settings, store, proc in _worker(redis_server, tmp_path, LIPSYNC_BROKER_URL=broker):
        producer = create_celery(settings, with_tasks=False)
        job_id = make_job(settings, store, media["astronaut"], media["speech_long"])
        producer.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE)
        wait_job(store, job_id, lambda j: j.state == "running" and j.progress >= 0.3)
        children = sh.pool_children(proc.proc.pid)
        assert len(children) == 1, children  # one pool process: one job per worker
        os.kill(children[0], signal.SIGKILL)  # the job's process dies mid-render
        # reject_on_worker_lost re-queues the message; a fresh pool process runs it again
        wait_job(store, job_id, lambda j: j.state in ("succeeded", "failed", "canceled"), 180)
        job = store.jobs.get(job_id)
        assert job is not None and job.state == "succeeded", (job, sh.tail(proc.log))
        assert job.attempts == 2
        assert [p.name for p in settings.results_dir.iterdir()] == [f"{job_id}.mp4"]
        _assert_files_go(settings, job_id)

        # the periodic cleanup task is registered on the worker and runs through the broker
        producer.send_task(TASK_CLEANUP, queue=QUEUE)
        deadline = time.monotonic() + 120  # a loaded CI machine starves the niced pool process
        done = re.compile(r"Task lipsync\.cleanup\[[^\]]+\] (succeeded|failed|raised)")
        while not done.search(proc.log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        match = done.search(proc.log.read_text())  # "received" is logged before the outcome
        report = sh.threads_report(proc.proc.pid)
        assert match is not None and match.group(1) == "succeeded", (sh.tail(proc.log), report)
        producer.close()


def test_soft_time_limit_fails_the_job_and_cleans_up(
    redis_server: sh.RedisServer, tmp_path: Path, media: dict[str, Path]
) -> None:
    """A job still rendering at its soft limit fails with ``timeout`` and leaves no result
    behind. The limit is 1 s: the quality measurement is a step of its own after the result,
    so a render of this still and speech done within 2 s (a fresh-clone CI saw one) would
    succeed before a 2 s limit."""
    limits = {
        "LIPSYNC_BROKER_URL": _broker_url(redis_server, 2),
        "LIPSYNC_SOFT_TIME_LIMIT_S": "1",
        "LIPSYNC_HARD_TIME_LIMIT_S": "30",
        "LIPSYNC_VISIBILITY_TIMEOUT_S": "60",
    }
    for settings, store, proc in _worker(redis_server, tmp_path, **limits):
        producer = create_celery(settings, with_tasks=False)
        job_id = make_job(settings, store, media["astronaut"], media["speech_long"])
        producer.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE)
        wait_job(store, job_id, lambda j: j.state in ("succeeded", "failed", "canceled"), 60)
        job = store.jobs.get(job_id)
        assert job is not None and job.state == "failed"
        assert job.error is not None and job.error["code"] == "timeout"
        _assert_files_go(settings, job_id)
        assert not (settings.results_dir / f"{job_id}.mp4").exists()
        # the same pool process lives on (soft, not hard, limit) and left no child behind
        (pool,) = sh.pool_children(proc.proc.pid)
        assert sh.pool_children(pool) == []
        producer.close()
