"""The pool process killed at 20 random points of a job: each time one result, no second run.

A real worker (prefork, one pool process) on the session's private redis-server, with a
broker database of its own. A first job runs untouched to time a job's life (T: from its
message sent to its final state). Then 20 jobs, one after the other: each is sent and the
worker's pool process is ``SIGKILL``ed after a delay drawn uniformly from [0, 1.2 T]
(seeded, ``LIPSYNC_KILL_SEED``; ``LIPSYNC_KILL_POINTS`` for another count): before the
claim, while it renders, encodes or publishes, or after its final state with its ack still
to come. Each job must end ``succeeded`` with its one result file, claimed at most twice
(the killed run and the one after it), its final state logged at most once, and nothing of
it left in the broker (no queued copy, no unacked delivery) once the worker is idle.
Evaluation is off for these jobs: the measurement is a task of its own, after the result.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from pathlib import Path

import pytest
import redis

from service.queue import QUEUE, TASK_PROCESS, create_celery
from tests.app import service_harness as sh
from tests.worker.jobkit import make_job, wait_job

pytestmark = pytest.mark.slow

DB_KILL = 15  # a broker database of its own (the other tests use 1 to 14)
POINTS = int(os.environ.get("LIPSYNC_KILL_POINTS", "20"))
SEED = int(os.environ.get("LIPSYNC_KILL_SEED", "27"))
OPTIONS = {"evaluate": False}


def _broker(url: str) -> dict[str, int]:
    with redis.Redis.from_url(url) as b:
        return {"unacked": int(b.hlen("unacked")), "queue": int(b.llen(QUEUE))}


def _idle(svc: sh.Service, worker: sh.Proc, timeout: float = 60.0) -> None:
    """Nothing queued or unacked in the broker, and the worker has its pool process."""
    url = svc.env["LIPSYNC_BROKER_URL"]
    deadline = time.monotonic() + timeout
    while _broker(url) != {"unacked": 0, "queue": 0} or not sh.pool_children(worker.proc.pid):
        assert time.monotonic() < deadline, (_broker(url), svc.logs())
        time.sleep(0.1)


def test_a_pool_process_killed_anywhere_in_a_job_leaves_one_result_and_no_second_run(
    redis_server: sh.RedisServer, tmp_path: Path, media: dict[str, Path]
) -> None:
    with sh.service(redis_server, tmp_path, broker_db=DB_KILL) as svc:
        with redis.Redis.from_url(svc.env["LIPSYNC_BROKER_URL"]) as b:
            b.flushdb()
        worker = svc.start_worker("w1")
        settings, store = svc.settings(), svc.store()
        producer = create_celery(settings, with_tasks=False)

        def send() -> str:
            job_id = make_job(settings, store, media["astronaut"], media["speech"], OPTIONS)
            producer.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE)
            return job_id

        start = time.monotonic()
        first = send()
        wait_job(store, first, lambda j: j.finished, 180)
        life = time.monotonic() - start
        _idle(svc, worker)
        rng = random.Random(SEED)
        report = []
        for point in range(POINTS):
            delay = rng.uniform(0.0, 1.2 * life)
            job_id = send()
            time.sleep(delay)
            killed = sh.pool_children(worker.proc.pid)
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            state_then = store.jobs.get(job_id)
            wait_job(store, job_id, lambda j: j.finished, 240)
            _idle(svc, worker)
            job = store.jobs.get(job_id)
            assert job is not None
            ended = rf"job {job_id} (succeeded|failed|canceled)\b"
            said = re.findall(ended, worker.log.read_text())
            report.append(
                f"{point}: {delay:.2f} s ({state_then.state if state_then else '?'}), "
                f"{job.state}, attempts {job.attempts}, logged {said}"
            )
            context = (SEED, report, svc.logs())
            assert job.state == "succeeded", context
            assert 1 <= job.attempts <= 2, context
            assert len(said) <= 1, context
            assert (settings.results_dir / f"{job_id}.mp4").is_file(), context
        results = sorted(p.name for p in settings.results_dir.iterdir())
        assert len(results) == POINTS + 1, results  # one file per job, nothing else
        print(f"seed {SEED}, a job's life {life:.2f} s", *report, sep="\n")
        producer.close()
