"""Job leases on a real Redis: a running job is never started twice, a lost runner's job is
run again (or ends) by the copy of its message the broker delivers again, and a running
job's message stays undelivered for as long as its runner renews it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from service.jobs import JobStore
from service.queue import QUEUE, TASK_PROCESS, create_celery
from service.settings import Settings
from tests.app import service_harness as sh
from tests.worker.jobkit import make_job, wait_job
from worker.jobs import run_job
from worker.lease import LEASE_S, holder_is_dead, lease_holder


def _dead_holder() -> str:
    """The lease holder name of a process on this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:12345"


def test_holder_is_dead_only_for_exited_local_processes() -> None:
    me = lease_holder()
    assert not holder_is_dead(me)
    assert holder_is_dead(_dead_holder())
    host, pid, _start = me.split(":")
    assert holder_is_dead(f"{host}:{pid}:1")  # the pid lives, but as another process
    assert not holder_is_dead(f"some-other-host:{pid}:{_start}")
    assert not holder_is_dead("garbage")


def test_claim_of_a_running_job_with_a_live_lease_is_busy(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech"])
    assert store.leases.claim(job_id, 3, "w1", "otherhost:1", LEASE_S) == "run"
    # a redelivered copy of the message while the runner (on another host) lives
    assert run_job(job_id, settings, store, worker="w2") == "busy"
    job = store.jobs.get(job_id)
    assert job is not None and job.state == "running" and job.attempts == 1
    assert (settings.uploads_dir / job_id).exists(), "a busy claim leaves the job alone"
    # the lease ends with the job
    assert store.jobs.finish(job_id, "succeeded", result={"file": f"{job_id}.mp4"})
    assert store.leases.holder(job_id) is None


def test_a_dead_local_runner_is_replaced_at_once(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech"])
    dead = _dead_holder()
    assert store.leases.claim(job_id, 3, "w1", dead, LEASE_S) == "run"
    assert store.leases.holder(job_id) == dead
    assert run_job(job_id, settings, store, worker="w2") == "succeeded"
    job = store.jobs.get(job_id)
    assert job is not None and job.attempts == 2 and store.leases.holder(job_id) is None


def test_a_redelivered_job_whose_runner_was_lost_ends_canceled_or_overdue(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    """The copy the broker delivers again after its runner was lost does not run a job that
    was terminated meanwhile, nor one that had already run past its time limit."""
    canceled = make_job(settings, store, media["astronaut"], media["speech"])
    overdue = make_job(settings, store, media["astronaut"], media["speech"])
    for job_id in (canceled, overdue):
        assert store.leases.claim(job_id, 3, "w", _dead_holder(), LEASE_S) == "run"
    assert store.jobs.request_cancel(canceled) == "canceling"
    started = time.time() - settings.soft_time_limit_s - 60
    store.client.hset(store.keys.job(overdue), "started_at", repr(started))
    assert run_job(canceled, settings, store, worker="w2") == "canceled"
    assert run_job(overdue, settings, store, worker="w2") == "timeout"
    job = store.jobs.get(overdue)
    assert job is not None and job.state == "failed" and job.error is not None
    assert job.error["code"] == "timeout" and job.attempts == 1
    assert store.jobs.get(canceled).state == "canceled"  # type: ignore[union-attr]
    for job_id in (canceled, overdue):
        assert not (settings.uploads_dir / job_id).exists()
    assert store.jobs.active_ids() == {"queued": [], "running": []}


def test_a_busy_copy_checks_back_and_runs_the_job_once_its_runner_is_lost(
    redis_server: sh.RedisServer, tmp_path: Path, media: dict[str, Path]
) -> None:
    """A copy of a job's message delivered while another host's runner holds its lease does
    not run it and is not dropped either: it checks back (a Celery retry, after half the
    visibility timeout: 1 s with the test app's 2 s), and once that runner's lease has
    lapsed, the copy runs the job, once."""
    with sh.service(redis_server, tmp_path, broker_db=11) as svc:
        svc.flush_broker()
        svc.start_worker("w1", app="tests.app.short_visibility_app")
        settings, store = svc.settings(), svc.store()
        job_id = make_job(settings, store, media["astronaut"], media["speech"])
        assert store.leases.claim(job_id, 3, "elsewhere", "otherhost:1:1", LEASE_S) == "run"
        producer = create_celery(settings, with_tasks=False)
        producer.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE)
        deadline = time.monotonic() + 60
        while svc.worker_log().count(f"job {job_id} not run: busy") < 2:
            assert time.monotonic() < deadline, svc.logs()
            time.sleep(0.2)
        job = store.jobs.get(job_id)
        assert job is not None and job.state == "running" and job.attempts == 1
        store.client.delete(store.keys.lease(job_id))  # that runner is lost: its lease lapses
        wait_job(store, job_id, lambda j: j.finished, 120)
        job = store.jobs.get(job_id)
        assert job is not None and job.state == "succeeded" and job.attempts == 2, svc.logs()
        svc.wait_log(f"job {job_id} succeeded")
        log = svc.worker_log()
        assert sh.job_executions(log, job_id) == 1
        assert f"Task {TASK_PROCESS}[{job_id}] retry" in log
        # every copy was acked in the end (a retry acks the copy it replaces): nothing is left
        svc.wait_broker_empty(timeout=30)
        producer.close()
