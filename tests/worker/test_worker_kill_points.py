"""``kill -9`` of the pool process running a job, at 20 random points of the job: each time
the job ends ``succeeded`` once, with one result file, and it never runs twice.

A real Celery worker (prefork, one pool process) on a private redis-server; the requeuer's
timings are shortened by settings (heartbeat 0.5 s, a lost message sent again after 2 s).
The kill points are random delays after the job's message is sent, spread over the length
of a warm run of the same short job and a bit past it, one in four of them within its first
60 ms: before the pool process takes the message, between its acknowledgement and the claim
(the job stays ``queued`` with no message: the requeuer sends it again), in each stage of
the pipeline, after the result. Set ``LIPSYNC_KILL_SEED`` to replay a run (its seed is
printed, and named in every failure).

What the service records is what is counted: the job's ``attempts`` (each claim that
starts it counts one), the requeuer's log line for each runner it found lost, the worker's
log line for each run that reached its end (:func:`service_harness.job_executions`), the
finished-jobs counter and the result files.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from service.jobs import JobStore
from service.queue import create_celery, send_job
from tests.app import service_harness as sh
from tests.worker.jobkit import make_job

pytestmark = pytest.mark.slow

KILLS = 20
BROKER_DB = 15  # a broker database of its own (other tests use 1 to 14)
ENV = {
    "LIPSYNC_HEARTBEAT_S": "0.5",
    "LIPSYNC_LOST_MESSAGE_S": "2",
    "LIPSYNC_EVALUATE_RESULTS": "false",  # the job alone: no measurement task after it
}


def _finished(store: JobStore, job_id: str, why: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.jobs.get(job_id)
        if job is not None and job.finished:
            return
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish ({why}); last {store.jobs.get(job_id)}")


def _one_pool(worker: sh.Proc, killed: set[int], timeout: float = 30.0) -> int:
    """The worker's pool process: after a kill Celery reaps the dead one (a zombie until
    then) and starts another."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = [c for c in sh.pool_children(worker.proc.pid) if c not in killed]
        if len(children) == 1 and not _zombie(children[0]):
            return children[0]
        time.sleep(0.01)
    raise AssertionError(f"no single pool process: {sh.pool_children(worker.proc.pid)}")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _logged(svc: sh.Service, needle: str, timeout: float = 30.0) -> str:
    """The worker's log once ``needle`` is in it."""
    deadline = time.monotonic() + timeout
    while needle not in (log := svc.worker_log()):
        assert time.monotonic() < deadline, f"{needle!r} not logged\n{svc.logs()}"
        time.sleep(0.02)
    return log


def _succeeded_count(store: JobStore) -> int:
    return int(store.client.hget(store.keys.finished, "succeeded") or 0)


def test_pool_process_killed_at_random_points_gives_one_result_and_no_second_run(
    redis_server: sh.RedisServer, tmp_path: Path, media: dict[str, Path]
) -> None:
    seed = int(os.environ.get("LIPSYNC_KILL_SEED") or time.time_ns() % 2**32)
    print(f"\nkill points: seed {seed} (LIPSYNC_KILL_SEED={seed} replays it)")
    rng = random.Random(seed)
    with sh.service(redis_server, tmp_path, broker_db=BROKER_DB, **ENV) as svc:
        worker = svc.start_worker()
        settings, store = svc.settings(), svc.store()
        producer = create_celery(settings, with_tasks=False)
        results = settings.results_dir

        def run(why: str) -> tuple[str, float]:
            job_id = make_job(settings, store, media["astronaut"], media["speech"])
            t0 = time.monotonic()
            send_job(producer, job_id)
            _finished(store, job_id, why)
            return job_id, time.monotonic() - t0

        run("warm-up")  # the pool process loads the pipeline once
        warm = [run("warm-up")[1] for _ in range(2)]
        span = max(warm) * 1.3  # up to a little past the end of the job
        print(f"kill points: a warm run takes {min(warm):.2f}-{max(warm):.2f} s; "
              f"kills spread over 0-{span:.2f} s after the send")  # fmt: skip

        where: Counter[str] = Counter()
        done: list[str] = []
        killed: set[int] = set()
        for trial in range(KILLS):
            # one in four in the first 60 ms: the delivery, the acknowledgement, the claim
            delay = rng.uniform(0.0, 0.06 if rng.random() < 0.25 else span)
            pool = _one_pool(worker, killed)
            before = _succeeded_count(store)
            job_id = make_job(settings, store, media["astronaut"], media["speech"])
            send_job(producer, job_id)
            time.sleep(delay)
            os.kill(pool, signal.SIGKILL)
            killed.add(pool)
            seen = store.jobs.get(job_id)
            stage = "?" if seen is None else f"{seen.state}/{seen.stage}"
            where[stage] += 1
            case = f"seed {seed}, kill {trial + 1} at {delay:.3f} s ({stage}), job {job_id}"
            _finished(store, job_id, case)
            job = store.jobs.get(job_id)
            assert job is not None and job.state == "succeeded", (case, job, svc.logs())
            done.append(job_id)
            log = _logged(svc, f"job {job_id} succeeded")  # logged after it is recorded
            # one run reached its end, and one result counted and written
            assert sh.job_executions(log, job_id) == 1, (case, log[-6000:])
            assert _succeeded_count(store) == before + 1, case
            assert (results / f"{job_id}.mp4").is_file(), case
            # each claim that started the job counted an attempt: the first, plus one
            # for each runner the requeuer found dead (this one kill: at most one)
            lost = log.count(f"job {job_id} lost its runner: queued")
            assert lost <= 1 and job.attempts == 1 + lost, (case, job.attempts, lost)
            assert store.leases.holder(job_id) is None, case
        print(f"kill points: state/stage seen just after each kill: {dict(where)}")
        log = svc.worker_log()
        print(
            f"kill points: runners found dead and requeued {log.count('lost its runner')}, "
            f"lost messages sent again {log.count('no message of it in the broker')}, "
            f"late copies turned away {log.count(' not run: ')}"
        )
        # the warm-up jobs and each killed one: one file each, nothing else
        names = sorted(p.name for p in results.iterdir())
        assert len(names) == 3 + KILLS and all(f"{j}.mp4" in names for j in done), names
        assert store.jobs.active_ids() == {"queued": [], "running": []}
        time.sleep(2.5)  # past the lost-message bound: nothing is sent or run again
        assert store.jobs.active_ids() == {"queued": [], "running": []}
        log = svc.worker_log()
        assert all(sh.job_executions(log, j) == 1 for j in done), log[-6000:]
        producer.close()
