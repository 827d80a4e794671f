"""The job store's Redis keys and Lua scripts (service/jobs/), against a real private
redis-server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from service.jobs import TERMINAL_STATES, JobRecord, JobStore
from tests.app.service_harness import RedisServer

TTL = 600


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    """A store under a fresh key prefix; its keys are removed afterwards."""
    st = JobStore.from_url(redis_server.url, f"ts{uuid.uuid4().hex[:8]}", TTL)
    yield st
    keys = list(st.client.scan_iter(f"{st.prefix}:*"))
    if keys:
        st.client.delete(*keys)
    st.client.close()


def new_job(store: JobStore, owner: str = "alice", **options: Any) -> JobRecord:
    job = JobRecord(
        id=uuid.uuid4().hex,
        owner=owner,
        state="queued",
        created_at=time.time(),
        audio="uploads/x/audio.wav",
        video="uploads/x/video.png",
        options=options or {"fps": 25},
    )
    store.jobs.create(job)
    return job


def h(store: JobStore, job_id: str) -> dict[str, str]:
    return dict(store.client.hgetall(store.keys.job(job_id)))


def ttl(store: JobStore, key: str) -> int:
    return int(store.client.ttl(key))


def zset(store: JobStore, key: str) -> list[str]:
    return [str(x) for x in store.client.zrange(key, 0, -1)]


def running(store: JobStore, holder: str = "", lease_s: float = 0) -> str:
    job = new_job(store)
    assert store.leases.claim(job.id, 3, "w1", holder, lease_s) == "run"
    return job.id


def test_keys_are_namespaced_by_prefix(store: JobStore) -> None:
    p = store.prefix
    assert store.keys.job("abc") == f"{p}:job:abc"
    assert store.keys.lease("abc") == f"{p}:lease:abc"
    assert store.keys.idem("alice", "k1") == f"{p}:idem:alice:k1"
    assert (store.keys.queued, store.keys.running) == (f"{p}:queued", f"{p}:running")
    assert store.keys.finished == f"{p}:stats:finished"
    assert store.keys.workers == f"{p}:workers"


def test_create_writes_the_hash_queue_and_ttl(store: JobStore) -> None:
    assert store.ping()
    job = new_job(store, fps=30, sync_mode="loop")
    data = h(store, job.id)
    assert data == {
        "id": job.id,
        "owner": "alice",
        "state": "queued",
        "created_at": repr(job.created_at),
        "audio": "uploads/x/audio.wav",
        "video": "uploads/x/video.png",
        "options": json.dumps({"fps": 30, "sync_mode": "loop"}),
        "progress": "0",
        "stage": "queued",
        "attempts": "0",
    }
    assert 0 < ttl(store, store.keys.job(job.id)) <= TTL
    assert store.client.zscore(store.keys.queued, job.id) == pytest.approx(job.created_at)
    assert (store.stats.queue_depth(), store.stats.running_count()) == (1, 0)
    assert store.jobs.exists(job.id)
    got = store.jobs.get(job.id)
    assert got is not None
    assert (got.id, got.owner, got.state, got.options) == (job.id, "alice", "queued", job.options)
    assert got.created_at == job.created_at and got.started_at is None and not got.finished
    assert got.error is None and got.result is None and got.attempts == 0


def test_get_missing_or_partial_record_is_none(store: JobStore) -> None:
    assert store.jobs.get("nope") is None
    # e.g. a late progress write
    store.client.hset(store.keys.job("half"), mapping={"progress": "0.5"})
    assert store.jobs.get("half") is None
    assert not store.jobs.exists("nope")


def test_queue_depth_and_active_ids_follow_the_states(store: JobStore) -> None:
    jobs = [new_job(store) for _ in range(3)]
    assert store.stats.queue_depth() == 3
    assert store.jobs.active_ids() == {"queued": [j.id for j in jobs], "running": []}
    assert store.leases.claim(jobs[1].id, 3, "w1") == "run"
    assert (store.stats.queue_depth(), store.stats.running_count()) == (2, 1)
    assert store.jobs.active_ids() == {"queued": [jobs[0].id, jobs[2].id], "running": [jobs[1].id]}
    store.jobs.forget_active(jobs[0].id)
    kept = store.jobs.exists(jobs[0].id)
    assert store.stats.queue_depth() == 1 and kept, "record kept, queue entry gone"
    store.jobs.purge(jobs[1].id, "alice")
    assert not store.jobs.exists(jobs[1].id) and store.stats.running_count() == 0
    assert store.jobs.active_ids() == {"queued": [jobs[2].id], "running": []}


# claim ----------------------------------------------------------------------------------------


def test_claim_moves_a_queued_job_to_running_with_a_lease(store: JobStore) -> None:
    job = new_job(store)
    before = time.time()
    assert store.leases.claim(job.id, 3, "worker-a", "holder-1", 30) == "run"
    data = h(store, job.id)
    assert data["state"] == "running" and data["stage"] == "starting"
    assert data["worker"] == "worker-a" and data["attempts"] == "1" and data["progress"] == "0"
    assert before <= float(data["started_at"]) <= time.time()
    assert zset(store, store.keys.queued) == [] and zset(store, store.keys.running) == [job.id]
    assert store.leases.holder(job.id) == "holder-1"
    assert 29_000 < int(store.client.pttl(store.keys.lease(job.id))) <= 30_000
    rec = store.jobs.get(job.id)
    assert rec is not None and rec.worker == "worker-a" and rec.attempts == 1


def test_claim_while_the_lease_is_held_is_busy(store: JobStore) -> None:
    job_id = running(store, "holder-1", 30)
    assert store.leases.claim(job_id, 3, "worker-b", "holder-2", 30) == "busy"
    assert h(store, job_id)["attempts"] == "1" and h(store, job_id)["worker"] == "w1"
    assert store.leases.holder(job_id) == "holder-1"


def test_claim_without_holder_takes_no_lease_and_reruns_a_lost_job(store: JobStore) -> None:
    job_id = running(store)
    assert store.leases.holder(job_id) is None
    # no lease: the runner is gone, a redelivered message runs it again
    assert store.leases.claim(job_id, 3, "worker-b") == "run"
    assert h(store, job_id)["attempts"] == "2" and h(store, job_id)["worker"] == "worker-b"


def test_claim_gives_up_after_max_attempts(store: JobStore) -> None:
    job = new_job(store)
    assert [store.leases.claim(job.id, 2, f"w{i}") for i in range(2)] == ["run", "run"]
    assert store.leases.claim(job.id, 2, "w3") == "exhausted"
    data = h(store, job.id)
    assert data["state"] == "failed" and data["stage"] == "failed" and data["attempts"] == "3"
    error = json.loads(data["error"])
    assert error["code"] == "worker_lost"
    assert error["message"] == "the job was started 2 times and its worker was lost each time"
    assert zset(store, store.keys.running) == [] and zset(store, store.keys.queued) == []
    assert store.stats.finished_counts() == {"failed": 1}
    assert 0 < ttl(store, store.keys.job(job.id)) <= TTL
    assert store.leases.claim(job.id, 2, "w4") == "failed", "a finished job is never claimed again"


def test_claim_of_missing_or_finished_jobs(store: JobStore) -> None:
    assert store.leases.claim("nope", 3, "w1") == "missing"
    assert not store.jobs.exists("nope"), "claim never creates a record"
    job_id = running(store)
    assert store.jobs.finish(job_id, "succeeded")
    assert store.leases.claim(job_id, 3, "w1") == "succeeded"
    assert h(store, job_id)["state"] == "succeeded"


def test_claim_after_a_cancel_request_cancels(store: JobStore) -> None:
    job_id = running(store)  # running, no lease: its runner is gone
    assert store.jobs.request_cancel(job_id) == "canceling"
    assert store.leases.claim(job_id, 3, "w2") == "canceled"
    data = h(store, job_id)
    assert data["state"] == "canceled" and data["stage"] == "canceled" and data["attempts"] == "1"
    assert zset(store, store.keys.running) == []
    assert store.stats.finished_counts() == {"canceled": 1}


# cancel ---------------------------------------------------------------------------------------


def test_cancel_a_queued_job_finishes_it_at_once(store: JobStore) -> None:
    job = new_job(store)
    assert store.jobs.request_cancel(job.id) == "canceled"
    data = h(store, job.id)
    assert data["state"] == "canceled" and data["cancel"] == "1" and data["stage"] == "canceled"
    assert float(data["finished_at"]) >= job.created_at
    assert store.stats.queue_depth() == 0
    assert store.stats.finished_counts() == {"canceled": 1}
    assert 0 < ttl(store, store.keys.job(job.id)) <= TTL
    assert store.leases.claim(job.id, 3, "w1") == "canceled", "its message later finds it canceled"
    assert store.jobs.request_cancel(job.id) == "canceled", "again: harmless"
    assert store.stats.finished_counts() == {"canceled": 1}, "counted once"


def test_cancel_a_running_job_only_flags_it(store: JobStore) -> None:
    job_id = running(store, "holder-1", 30)
    assert not store.jobs.cancel_requested(job_id)
    assert store.jobs.request_cancel(job_id) == "canceling"
    assert store.jobs.cancel_requested(job_id)
    assert h(store, job_id)["state"] == "running" and store.stats.running_count() == 1
    rec = store.jobs.get(job_id)
    assert rec is not None and rec.cancel_requested and rec.finished_at is None
    assert store.jobs.finish(job_id, "canceled", stage="canceled")
    assert store.jobs.request_cancel(job_id) == "canceled"


@pytest.mark.parametrize("final", ["succeeded", "failed"])
def test_cancel_a_finished_job_answers_its_state(store: JobStore, final: str) -> None:
    job_id = running(store)
    assert store.jobs.finish(job_id, final)  # type: ignore[arg-type]
    before = h(store, job_id)
    assert store.jobs.request_cancel(job_id) == final
    assert h(store, job_id) == before, "nothing changed"
    assert store.jobs.request_cancel("nope") is None
    assert not store.jobs.exists("nope")


# finish / progress ------------------------------------------------------------------------------


def test_finish_records_fields_and_drops_the_lease(store: JobStore) -> None:
    job_id = running(store, "holder-1", 30)
    result = {"file": f"{job_id}.mp4", "frames": 50, "timings": {"engine": 1.5}}
    assert store.jobs.finish(job_id, "succeeded", stage="done", progress=1.0, result=result)
    data = h(store, job_id)
    assert data["state"] == "succeeded" and data["stage"] == "done" and data["progress"] == "1.0"
    assert json.loads(data["result"]) == result
    assert float(data["finished_at"]) >= float(data["started_at"])
    assert store.leases.holder(job_id) is None
    assert store.stats.running_count() == 0
    assert store.stats.finished_counts() == {"succeeded": 1}
    assert 0 < ttl(store, store.keys.job(job_id)) <= TTL
    rec = store.jobs.get(job_id)
    assert rec is not None and rec.finished and rec.result == result and rec.progress == 1.0


def test_finish_only_from_running(store: JobStore) -> None:
    queued = new_job(store)
    assert not store.jobs.finish(queued.id, "succeeded")
    assert h(store, queued.id)["state"] == "queued"
    job_id = running(store)
    assert store.jobs.finish(job_id, "failed", error={"code": "no_face", "message": "none"})
    assert not store.jobs.finish(job_id, "succeeded"), "a second finish loses"
    assert h(store, job_id)["state"] == "failed"
    assert store.stats.finished_counts() == {"failed": 1}
    assert not store.jobs.finish("nope", "succeeded") and not store.jobs.exists("nope")
    assert set(store.stats.finished_counts()) <= TERMINAL_STATES


def test_fail_stale(store: JobStore) -> None:
    job_id = running(store)
    assert store.jobs.fail_stale(job_id, "timeout", "it ran too long")
    rec = store.jobs.get(job_id)
    assert rec is not None and rec.state == "failed" and rec.stage == "failed"
    assert rec.error == {"code": "timeout", "message": "it ran too long"}


def test_progress_only_while_running_and_never_backwards(store: JobStore) -> None:
    queued = new_job(store)
    store.jobs.set_progress(queued.id, "engine", 0.5)
    assert h(store, queued.id)["progress"] == "0" and h(store, queued.id)["stage"] == "queued"
    job_id = running(store)
    store.jobs.set_progress(job_id, "detect", 0.25)
    store.jobs.set_progress(job_id, "engine", 0.5)
    store.jobs.set_progress(job_id, "engine", 0.4)
    data = h(store, job_id)
    assert (data["stage"], float(data["progress"])) == ("engine", 0.5)
    assert store.jobs.finish(job_id, "succeeded")
    store.jobs.set_progress(job_id, "late", 0.9)
    assert h(store, job_id)["stage"] == "engine" and float(h(store, job_id)["progress"]) == 0.5
    store.jobs.set_progress("gone", "engine", 0.5)
    assert not store.client.exists(store.keys.job("gone")), "an expired record is not recreated"


# leases ----------------------------------------------------------------------------------------


def test_renew_lease_by_its_holder_only(store: JobStore) -> None:
    job_id = running(store, "holder-1", 0.5)
    assert store.leases.renew(job_id, "holder-1", 60)
    assert 59_000 < int(store.client.pttl(store.keys.lease(job_id))) <= 60_000
    assert not store.leases.renew(job_id, "holder-2", 60)
    assert store.leases.holder(job_id) == "holder-1"
    assert store.jobs.finish(job_id, "succeeded")
    assert not store.leases.renew(job_id, "holder-1", 60), "not once the job left running"
    assert store.leases.holder(job_id) is None


def test_renew_retakes_a_lapsed_lease_of_a_running_job(store: JobStore) -> None:
    job_id = running(store, "holder-1", 0.05)
    time.sleep(0.15)
    assert store.leases.holder(job_id) is None
    assert store.leases.renew(job_id, "holder-1", 5)
    assert store.leases.holder(job_id) == "holder-1"


def test_break_lease_only_for_the_named_holder(store: JobStore) -> None:
    job_id = running(store, "holder-1", 30)
    assert not store.leases.break_dead(job_id, "holder-2")
    assert store.leases.holder(job_id) == "holder-1"
    assert store.leases.break_dead(job_id, "holder-1")
    assert store.leases.holder(job_id) is None
    assert not store.leases.break_dead(job_id, "holder-1")


def test_claim_after_a_lost_runner_runs_again_or_times_out(store: JobStore) -> None:
    job_id = running(store, "holder-1", 30)
    assert store.leases.claim(job_id, 3, "w2", "holder-2", 30, 60) == "busy"
    assert store.leases.break_dead(job_id, "holder-1")
    # lost 10 s after it started, within a 60 s limit: it runs again
    store.client.hset(store.keys.job(job_id), "started_at", repr(time.time() - 10))
    assert store.leases.claim(job_id, 3, "w2", "holder-2", 30, 60) == "run"
    data = h(store, job_id)
    assert (data["state"], data["attempts"], data["worker"]) == ("running", "2", "w2")
    assert store.leases.holder(job_id) == "holder-2"
    # lost past the limit: it fails (timeout), whatever attempts are left
    assert store.leases.break_dead(job_id, "holder-2")
    store.client.hset(store.keys.job(job_id), "started_at", repr(time.time() - 61))
    assert store.leases.claim(job_id, 3, "w3", "holder-3", 30, 60) == "timeout"
    data = h(store, job_id)
    assert data["state"] == "failed" and json.loads(data["error"])["code"] == "timeout"
    assert store.stats.running_count() == 0 and store.leases.holder(job_id) is None


# idempotency -----------------------------------------------------------------------------------


def test_idempotency_key_binds_once_per_owner(store: JobStore) -> None:
    assert store.jobs.claim_idempotency("alice", "k1", "job1", "d1") is None
    assert store.client.get(store.keys.idem("alice", "k1")) == "job1 d1"
    assert 0 < ttl(store, store.keys.idem("alice", "k1")) <= TTL
    assert store.jobs.claim_idempotency("alice", "k1", "job2", "d2") == "job1 d1"
    assert store.client.get(store.keys.idem("alice", "k1")) == "job1 d1", "the first binding stays"
    assert store.jobs.claim_idempotency("bob", "k1", "job3", "d1") is None, "another owner's key"
    store.jobs.release_idempotency("alice", "k1")
    assert store.client.get(store.keys.idem("alice", "k1")) is None
    assert store.jobs.claim_idempotency("alice", "k1", "job4", "d4") is None
    assert store.client.get(store.keys.idem("bob", "k1")) == "job3 d1"


# workers and stats ---------------------------------------------------------------------------


def test_worker_heartbeats(store: JobStore) -> None:
    store.workers.heartbeat("w1")
    store.workers.heartbeat("w2")
    assert sorted(store.workers.live()) == ["w1", "w2"]
    store.client.zadd(store.keys.workers, {"w2": time.time() - 120})  # last seen two minutes ago
    assert store.workers.live(max_age_s=30) == ["w1"]
    assert sorted(store.workers.live(max_age_s=300)) == ["w1", "w2"]
    store.workers.remove("w1")
    assert store.workers.live() == []


def test_stage_seconds_accumulate(store: JobStore) -> None:
    assert store.stats.stage_seconds() == {}
    store.stats.record_stage_seconds({"decode": 0.5, "engine": 2.0})
    store.stats.record_stage_seconds({"engine": 1.25})
    assert store.stats.stage_seconds() == {"decode": (0.5, 1), "engine": (3.25, 2)}


def test_store_on_a_dead_server_raises_redis_errors() -> None:
    from tests.app.service_harness import free_port

    st = JobStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "dead", TTL, timeout_s=0.5)
    with pytest.raises(redis.RedisError):
        st.stats.queue_depth()
