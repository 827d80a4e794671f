"""Job leases on a real Redis: a running job is never started twice, a dead runner's job is
run again (or ends), without waiting for the broker's visibility timeout."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from service.jobs import JobStore
from service.settings import Settings
from tests.worker.jobkit import make_job
from worker.cleanup import OrphanRequeuer
from worker.jobs import run_job
from worker.lease import (
    LEASE_S,
    _process_start,
    holder_is_dead,
    lease_holder,
    started_after_me,
)


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


def _requeuer(settings: Settings, store: JobStore) -> tuple[OrphanRequeuer, list[str]]:
    sent: list[str] = []
    return OrphanRequeuer(settings, store, sent.append, grace_s=0.3), sent


def test_orphan_requeuer_requeues_jobs_whose_lease_lapsed(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    alive = make_job(settings, store, media["astronaut"], media["speech"])
    lapsed = make_job(settings, store, media["astronaut"], media["speech"])
    dead = make_job(settings, store, media["astronaut"], media["speech"])
    assert store.leases.claim(alive, 3, "w", lease_holder(), LEASE_S) == "run"
    assert store.leases.claim(lapsed, 3, "w", "otherhost:1", 0.2) == "run"
    assert store.leases.claim(dead, 3, "w", _dead_holder(), LEASE_S) == "run"
    requeuer, sent = _requeuer(settings, store)
    time.sleep(0.3)
    # a dead local holder is requeued at once; a lapsed lease only after the grace period
    assert requeuer.scan() == {dead: "queued"}
    assert requeuer.scan() == {}
    time.sleep(0.4)
    assert requeuer.scan() == {lapsed: "queued"}
    assert sent == [dead, lapsed]
    for job_id in (dead, lapsed):
        job = store.jobs.get(job_id)
        assert job is not None and job.state == "queued" and job.attempts == 1
    assert store.jobs.get(alive).state == "running"  # type: ignore[union-attr]
    assert set(store.jobs.active_ids()["queued"]) == {dead, lapsed}
    # a lapsed lease that comes back within the grace period (Redis restarted) is kept
    store.client.delete(store.keys.lease(alive))
    assert requeuer.scan() == {}
    assert store.leases.renew(alive, lease_holder(), LEASE_S)
    time.sleep(0.4)
    assert requeuer.scan() == {}


def test_orphan_requeuer_ends_canceled_and_overdue_jobs(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    canceled = make_job(settings, store, media["astronaut"], media["speech"])
    overdue = make_job(settings, store, media["astronaut"], media["speech"])
    for job_id in (canceled, overdue):
        assert store.leases.claim(job_id, 3, "w", _dead_holder(), LEASE_S) == "run"
    assert store.jobs.request_cancel(canceled) == "canceling"
    store.client.hset(store.keys.job(overdue), "started_at", repr(time.time() - 4000))
    requeuer, sent = _requeuer(settings, store)
    assert requeuer.scan() == {canceled: "canceled", overdue: "timeout"}
    assert sent == []
    job = store.jobs.get(overdue)
    assert job is not None and job.state == "failed" and job.error is not None
    assert job.error["code"] == "timeout"
    assert store.jobs.get(canceled).state == "canceled"  # type: ignore[union-attr]
    for job_id in (canceled, overdue):
        assert not (settings.uploads_dir / job_id).exists()
    assert store.jobs.active_ids() == {"queued": [], "running": []}


def _dead_child_holder() -> str:
    """The holder name of a process started after this one (as a pool process this worker
    forked would be), which has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        holder = f"{socket.gethostname()}:{proc.pid}:{_process_start(proc.pid)}"
    finally:
        proc.kill()
        proc.wait()
    assert holder_is_dead(holder) and started_after_me(holder)
    return holder


def test_a_dead_pool_process_of_this_worker_is_left_to_celery_for_a_while(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    """Celery requeues the message of a killed pool process itself; the worker's own
    requeuer steps in only if nothing has claimed the job after ``own_pool_grace_s``. A job
    of another worker node (or a runner older than this process) is requeued at once."""
    own = make_job(settings, store, media["astronaut"], media["speech"])
    other_node = make_job(settings, store, media["astronaut"], media["speech"])
    older = make_job(settings, store, media["astronaut"], media["speech"])
    assert store.leases.claim(own, 3, "w1@host", _dead_child_holder(), LEASE_S) == "run"
    assert store.leases.claim(other_node, 3, "w2@host", _dead_child_holder(), LEASE_S) == "run"
    older_holder = _dead_holder().rsplit(":", 1)[0] + ":1"  # started just after boot
    assert store.leases.claim(older, 3, "w1@host", older_holder, LEASE_S) == "run"
    sent: list[str] = []
    requeuer = OrphanRequeuer(
        settings, store, sent.append, grace_s=0.3, node="w1@host", own_pool_grace_s=0.5
    )
    assert requeuer.scan() == {other_node: "queued", older: "queued"}
    assert store.jobs.get(own).state == "running"  # type: ignore[union-attr]
    # the next pool process claims it (as the redelivered message would): nothing to do
    assert store.leases.break_dead(own, store.leases.holder(own) or "")
    assert store.leases.claim(own, 3, "w1@host", lease_holder(), LEASE_S) == "run"
    time.sleep(0.6)
    assert requeuer.scan() == {}
    # that runner dies too and nothing claims the job: requeued once the grace has passed
    store.client.set(store.keys.lease(own), _dead_child_holder())
    assert requeuer.scan() == {}
    time.sleep(0.6)
    assert requeuer.scan() == {own: "queued"}
    assert sent == [other_node, older, own]
