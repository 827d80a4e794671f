"""Job leases and the requeuer on a real Redis: a running job is never started twice, a dead
runner's job is run again (or ends), a queued job whose message was lost is sent again once,
and a measurement whose runner or message was lost comes back the same way."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from service.jobs import JobStore, WaitingMessages
from service.queue import create_celery, quality_task_id, send_job
from service.settings import Settings
from tests.app import service_harness as sh
from tests.worker.jobkit import make_job
from worker.cleanup import OrphanRequeuer
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


def test_requeuer_resends_a_queued_job_whose_message_was_lost(
    settings: Settings, store: JobStore, media: dict[str, Path], tmp_path: Path
) -> None:
    """A queued job whose message is in no broker list (taken by a process that died before
    its claim) is sent again once ``lost_message_s`` has passed since it was last sent; one
    whose message waits is left alone, and two requeuers scanning at once send it once."""
    with sh.private_redis(tmp_path / "broker") as broker_redis:  # a broker of its own
        _resends_lost_messages(settings, store, media, broker_redis.url)


def _resends_lost_messages(
    settings: Settings, store: JobStore, media: dict[str, Path], broker: str
) -> None:
    s = settings.model_copy(update={"lost_message_s": 0.5, "broker_url": broker})
    producer = create_celery(s, with_tasks=False)
    queue = WaitingMessages.from_url(broker)
    lost = make_job(s, store, media["astronaut"], media["speech"])
    waiting = make_job(s, store, media["astronaut"], media["speech"])
    running = make_job(s, store, media["astronaut"], media["speech"])
    send_job(producer, waiting)  # a real message, waiting in the broker's list
    assert store.leases.claim(running, 3, "w", lease_holder(), LEASE_S) == "run"
    assert queue.waiting([lost, waiting, running]) == {waiting}
    sent: list[str] = []
    first = OrphanRequeuer(s, store, sent.append, grace_s=0.3, waiting=queue.waiting)
    second = OrphanRequeuer(s, store, sent.append, grace_s=0.3, waiting=queue.waiting)
    assert first.scan() == {} and sent == []  # pushed just now: its message is on its way
    time.sleep(0.6)
    assert {**first.scan(), **second.scan()} == {lost: "resent"}
    assert sent == [lost]
    assert first.scan() == {} and second.scan() == {}  # sent again just now
    job = store.jobs.get(lost)
    assert job is not None and job.state == "queued" and job.attempts == 0
    time.sleep(0.6)  # still no message (nothing was really sent): once per lost_message_s
    assert first.scan() == {lost: "resent"}
    producer.close()
    queue.close()


def test_requeuer_brings_back_a_measurement_whose_runner_or_message_was_lost(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    s = settings.model_copy(update={"lost_message_s": 0.5})
    pending = make_job(s, store, media["astronaut"], media["speech"])
    dead = make_job(s, store, media["astronaut"], media["speech"])
    alive = make_job(s, store, media["astronaut"], media["speech"])
    for job_id in (pending, dead, alive):
        assert store.leases.claim(job_id, 3, "w", lease_holder(), LEASE_S) == "run"
        assert store.jobs.finish(job_id, "succeeded", q_state="pending")
    assert store.quality.claim(dead, _dead_holder(), 3) == "run"
    assert store.quality.claim(alive, lease_holder(), 3) == "run"
    # a late copy of a running measurement's message is turned away
    assert store.quality.claim(alive, "otherhost:1:1", 3) == "running"
    sent: list[str] = []
    requeuer = OrphanRequeuer(
        s, store, lambda _: None, waiting=lambda ids: set(), send_quality=sent.append,
        task_id=quality_task_id,
    )  # fmt: skip
    assert requeuer.scan() == {dead: "measurement pending"}
    assert sent == [dead]
    record = store.jobs.get(dead)
    assert record is not None and record.quality is not None
    assert record.quality.state == "pending"
    time.sleep(0.6)
    assert requeuer.scan() == {pending: "measurement resent", dead: "measurement resent"}
    assert store.quality.finish(alive, lease_holder(), "ready") == "ready"
    assert set(store.quality.measuring()) == {pending, dead}  # a finished one leaves the set
