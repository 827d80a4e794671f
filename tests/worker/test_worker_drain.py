"""An operator's stop: the running job goes back to the queue without counting an attempt.

Real processes: a private redis-server, real Celery workers (``service_harness``), SIGTERM
to the worker's main process as ``docker stop`` or scripts/up.sh send it. Also: the pool
process renders at a lower CPU priority, the hand-back script is atomic and idempotent, a
job that ends leaves no unacked broker message behind, and the beat runs as its own process
that a stop takes down with nothing left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import kombu
import pytest
import redis

from service.jobs import BrokerMessages, JobRecord, JobStore
from service.queue import QUEUE, TASK_PROCESS, create_celery
from service.settings import Settings
from tests.app import service_harness as sh
from tests.worker.jobkit import make_job, wait_job

# Broker databases of their own (other tests use 1 to 9), so queues and unacked hashes
# hold only this module's messages.
DB_DRAIN, DB_TIDY, DB_BEAT = 10, 11, 12
STOP_BOUND_S = 10.0


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 19 s of speech: a viseme render of it takes longer than a stop."""
    text = " ".join(["This is a longer piece of speech for the drain test, it goes on."] * 4)
    return sh.speech(tmp_path_factory.mktemp("drain") / "long.wav", text, speed=140)


def _nice(pid: int) -> int:
    """The nice value of a process (field 19 of /proc/<pid>/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16])


def _pool_nice(worker_pid: int, want: int, timeout: float = 30.0) -> tuple[int, int]:
    """The worker's one pool process and its nice value, once it reads ``want`` or the
    timeout passes: the heartbeat can come before the pool process has run its init hook
    (which lowers its priority), so the value is read until it settles."""
    deadline = time.monotonic() + timeout
    while True:
        (pool,) = sh.pool_children(worker_pid)
        nice = _nice(pool)
        if nice == want or time.monotonic() > deadline:
            return pool, nice
        time.sleep(0.05)


def test_sigterm_hands_the_running_job_back_and_the_next_worker_finishes_it(
    redis_server: sh.RedisServer,
    tmp_path: Path,
    media: dict[str, Path],
    long_speech: Path,
) -> None:
    with sh.service(redis_server, tmp_path, broker_db=DB_DRAIN) as svc:
        svc.flush_broker()
        w1 = svc.start_worker("w1")
        # the render runs below the API's priority; the main process is left alone
        pool, nice = _pool_nice(w1.proc.pid, 10)
        assert nice == 10 and _nice(w1.proc.pid) == 0
        settings, store = svc.settings(), svc.store()
        producer = create_celery(settings, with_tasks=False)
        job_id = make_job(settings, store, media["astronaut"], long_speech, {"engine": "viseme"})
        producer.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE)
        wait_job(store, job_id, lambda j: j.state == "running" and j.progress >= 0.1, 120)
        assert svc.broker_keys()["unacked"] == 1  # delivered, not acked while it runs

        t0 = time.monotonic()
        w1.proc.send_signal(signal.SIGTERM)  # what docker stop and scripts/up.sh send
        w1.proc.wait(timeout=60)
        took = time.monotonic() - t0
        assert took < STOP_BOUND_S, (took, sh.tail(w1.log))
        assert w1.proc.returncode == 0
        assert not Path(f"/proc/{pool}").exists()

        job = store.jobs.get(job_id)
        assert job is not None, sh.tail(w1.log)
        print(f"\ndrain: SIGTERM to exit {took:.2f} s; job {job.state}, attempts {job.attempts}")
        assert (job.state, job.stage, job.attempts, job.progress) == ("queued", "queued", 0, 0)
        assert job.started_at is None and job.worker == ""
        assert store.jobs.active_ids() == {"queued": [job_id], "running": []}
        assert store.leases.holder(job_id) is None
        assert not store.workers.is_draining(f"{svc.prefix}-w1@{socket.gethostname()}")  # cleared
        # its message is back on the queue, nothing is left unacked
        assert svc.broker_keys() == {"unacked": 0, "unacked_index": 0, "queue": 1}
        assert (settings.uploads_dir / job_id).is_dir()  # the next worker needs them
        assert not (settings.work_dir / job_id).exists()
        assert f"job {job_id} handed back to the queue" in w1.log.read_text()

        svc.env["LIPSYNC_WORKER_NICE"] = "5"  # the priority is configurable
        w2 = svc.start_worker("w2")
        assert _pool_nice(w2.proc.pid, 5)[1] == 5
        wait_job(store, job_id, lambda j: j.finished, 240)
        job = store.jobs.get(job_id)
        assert job is not None and job.state == "succeeded", (job, svc.logs())
        print(f"drain: next worker: job {job.state}, attempts {job.attempts}")
        assert job.attempts == 1  # the stop did not count
        svc.wait_log(f"job {job_id} succeeded")
        assert sh.job_executions(svc.worker_log(), job_id) == 1
        assert (settings.results_dir / f"{job_id}.mp4").is_file()
        # its measurement follows as a task of its own; once it is over, nothing is left
        wait_job(store, job_id, lambda j: j.quality is not None and j.quality.finished, 240)
        svc.wait_broker_empty()
        producer.close()


def test_hand_back_is_atomic_and_idempotent(store: JobStore, settings: Settings) -> None:
    job_id = "a" * 32
    store.jobs.create(JobRecord(id=job_id, owner="o", state="queued", created_at=100.0))
    assert store.leases.claim(job_id, 3, "w@h", "host:1:1", 30) == "run"
    assert store.leases.hand_back(job_id, "host:2:2") == "busy"  # not the lease holder's: untouched
    assert store.jobs.get(job_id).state == "running"  # type: ignore[union-attr]
    assert store.leases.hand_back(job_id, "host:1:1") == "handed_back"
    job = store.jobs.get(job_id)
    assert job is not None and (job.state, job.attempts, job.worker) == ("queued", 0, "")
    assert store.client.zscore(store.keys.queued, job_id) == 100.0  # keeps its place in the queue
    assert store.leases.holder(job_id) is None
    assert store.leases.hand_back(job_id, "host:1:1") == "queued"  # again: nothing changes
    assert store.jobs.get(job_id).attempts == 0  # type: ignore[union-attr]
    # a second start counts one attempt; a terminate during the run wins over the hand-back
    assert store.leases.claim(job_id, 3, "w@h", "host:1:1", 30) == "run"
    assert store.jobs.request_cancel(job_id) == "canceling"
    assert store.leases.hand_back(job_id, "host:1:1") == "canceled"
    assert store.jobs.get(job_id).state == "canceled"  # type: ignore[union-attr]
    assert store.leases.hand_back("b" * 32, "host:1:1") is None
    # the drain mark lives for its time-to-live and is per worker
    store.workers.set_draining("w@h", 30)
    assert store.workers.is_draining("w@h") and not store.workers.is_draining("v@h")
    assert store.jobs.stop_requested(job_id, "w@h") == (True, True)
    store.workers.clear_draining("w@h")
    assert not store.workers.is_draining("w@h") and not store.workers.is_draining("")


def test_a_running_task_keeps_its_message_from_the_broker_s_sweep(
    redis_server: sh.RedisServer, tmp_path: Path
) -> None:
    """kombu's own sweep (``restore_visible``) puts back on the queue a delivered message
    older than the visibility timeout; a task's renewals (:meth:`BrokerMessages.extend`)
    keep its message out of it, and once they stop the sweep brings it back."""
    url = redis_server.db_url(DB_TIDY)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    settings = Settings(redis_url=redis_server.url, broker_url=url, data_dir=tmp_path)
    producer = create_celery(settings, with_tasks=False)
    visibility = 1.0
    producer.conf.broker_transport_options = {"visibility_timeout": visibility}
    running, other = "a" * 32, "b" * 32
    msgs = BrokerMessages(client)
    with producer.connection_for_read() as conn:
        channel = conn.default_channel
        queue = kombu.Queue(QUEUE, channel=channel)
        for task_id in (running, other):
            producer.send_task(TASK_PROCESS, args=[task_id], task_id=task_id, queue=QUEUE)
            assert queue.get(no_ack=False) is not None  # delivered, not acked: in "unacked"
        assert client.hlen("unacked") == 2 and client.llen(QUEUE) == 0
        deadline = time.monotonic() + 3 * visibility
        while time.monotonic() < deadline:
            assert msgs.extend(running) == 1
            time.sleep(visibility / 4)
            channel.qos.restore_visible(num=10, interval=1)
        # the other message went back to the queue at the first sweep past its timeout ...
        assert client.llen(QUEUE) == 1
        assert json.loads(client.lindex(QUEUE, 0) or "")["headers"]["id"] == other
        assert msgs.extend(other) == 0
        # ... the renewed one is still delivered, until its renewals stop
        assert client.hlen("unacked") == 1
        time.sleep(visibility + 0.2)
        channel.qos.restore_visible(num=10, interval=1)
        assert client.hlen("unacked") == 0 and client.llen(QUEUE) == 2
        assert msgs.extend(running) == 0
    client.flushdb()
    client.close()


def test_finished_job_leaves_no_unacked_message_after_its_worker_was_killed(
    redis_server: sh.RedisServer, tmp_path: Path, media: dict[str, Path]
) -> None:
    """kill -9 of a worker mid-job: the broker puts the dead worker's own message back once
    the visibility timeout has passed (no second copy); once the job has run, the broker
    holds nothing of it."""
    with sh.service(redis_server, tmp_path, broker_db=DB_TIDY) as svc:
        svc.flush_broker()
        svc.start_worker("w1")
        settings, store = svc.settings(), svc.store()
        producer = create_celery(settings, with_tasks=False)
        job_id = make_job(settings, store, media["astronaut"], media["speech_long"])
        producer.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE)
        wait_job(store, job_id, lambda j: j.state == "running" and j.progress >= 0.2, 120)
        svc.kill_worker("w1")
        assert svc.broker_keys()["unacked"] == 1  # the dead worker's delivery
        svc.start_worker("w2")
        wait_job(store, job_id, lambda j: j.finished, 240)
        job = store.jobs.get(job_id)
        assert job is not None and job.state == "succeeded" and job.attempts == 2, svc.logs()
        wait_job(store, job_id, lambda j: j.quality is not None and j.quality.finished, 240)
        svc.wait_broker_empty()
        producer.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_beat_runs_as_its_own_process_and_a_stop_leaves_nothing_behind(
    redis_server: sh.RedisServer, tmp_path: Path
) -> None:
    """scripts/up.sh's way: beat (``celery beat``) is a child of its own, in its own process
    group with the worker; SIGTERM stops both and no process of either group is left."""
    env = sh.service_env(
        redis_server.url,
        tmp_path / "data",
        LIPSYNC_REDIS_PREFIX=f"b{os.urandom(4).hex()}",
        LIPSYNC_BROKER_URL=redis_server.db_url(DB_BEAT),
    )
    (tmp_path / "data").mkdir()
    beat_log = tmp_path / "beat.log"
    with beat_log.open("ab") as out:
        beat = subprocess.Popen(
            [sh.PYTHON, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel=INFO",
             "--schedule", str(tmp_path / "data" / "celerybeat-schedule")],
            cwd=sh.REPO, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "beat: Starting..." not in beat_log.read_text(errors="replace"):
            assert beat.poll() is None and time.monotonic() < deadline, sh.tail(beat_log)
            time.sleep(0.2)
        t0 = time.monotonic()
        beat.send_signal(signal.SIGTERM)
        beat.wait(timeout=STOP_BOUND_S)
        assert time.monotonic() - t0 < STOP_BOUND_S
        deadline = time.monotonic() + 5
        while _group_alive(beat.pid):
            assert time.monotonic() < deadline, "a process of beat's group outlived it"
            time.sleep(0.05)
    finally:
        sh.stop(beat)
