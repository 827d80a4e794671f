"""The lifecycle functions the API and the worker call (service/jobs/lifecycle.py), on a
real private redis-server and a real data dir: submit (its undo, its Idempotency-Key),
cancel, delete and hand-back, with what each leaves in Redis and on disk."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import jobs
from service.jobs import JobRecord, JobStore
from service.jobs.broker import QUEUE_LISTS
from service.layout import job_paths
from service.settings import Settings
from tests.app.service_harness import RedisServer


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    s = Settings(
        redis_url=redis_server.url,
        broker_url=redis_server.db_url(7),
        redis_prefix=f"lc{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "data",
        delete_wait_s=0.3,
    )
    s.ensure_dirs()
    return s


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    with JobStore.from_url(settings.redis_url, settings.redis_prefix, 600) as st:
        yield st
        keys = list(st.client.scan_iter(f"{st.prefix}:*"))
        if keys:
            st.client.delete(*keys)


def _job(settings: Settings, owner: str = "alice") -> JobRecord:
    """A queued job's record with its uploads dir on disk (not yet written to Redis)."""
    job = JobRecord(id=uuid.uuid4().hex, owner=owner, state="queued", created_at=time.time())
    uploads = job_paths(settings, job.id).uploads
    uploads.mkdir(parents=True)
    (uploads / "audio.wav").write_bytes(b"RIFF")
    return job


def _service_keys(store: JobStore, job_id: str) -> list[str]:
    """Every key of the store that names the job, or holds it in a set."""
    c, k = store.client, store.keys
    named = [key for key in c.scan_iter(f"{store.prefix}:*") if job_id in key]
    in_sets = [
        key
        for key in (k.queued, k.running, k.webhooks, k.owner("alice"))
        if c.zscore(key, job_id) is not None
    ]
    return named + in_sets


def test_submit_writes_indexes_then_sends(store: JobStore, settings: Settings) -> None:
    job = _job(settings)
    sent: list[str] = []
    assert jobs.submit(store, job, sent.append) == job.id
    assert sent == [job.id]
    assert store.jobs.get(job.id).state == "queued"  # type: ignore[union-attr]
    assert store.jobs.list_owned("alice")[0][0].id == job.id


def test_a_submit_whose_message_cannot_be_sent_leaves_nothing(
    store: JobStore, settings: Settings
) -> None:
    job = _job(settings)

    def broker_down(job_id: str) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        jobs.submit(store, job, broker_down, idempotency_key="k1", digest="d1")
    assert _service_keys(store, job.id) == []
    assert store.client.get(store.keys.idem("alice", "k1")) is None, "the key is free again"
    again = _job(settings)
    assert jobs.submit(store, again, lambda _: None, "k1", "d1") == again.id


def test_submit_with_an_idempotency_key(store: JobStore, settings: Settings) -> None:
    first = _job(settings)
    assert jobs.submit(store, first, lambda _: None, "k1", "d1") == first.id
    second = _job(settings)
    sent: list[str] = []
    assert jobs.submit(store, second, sent.append, "k1", "d1") == first.id, "same payload"
    assert sent == [] and store.jobs.get(second.id) is None, "nothing written for it"
    with pytest.raises(jobs.IdempotencyConflict):
        jobs.submit(store, _job(settings), sent.append, "k1", "another payload")
    assert jobs.submit(store, _job(settings, owner="bob"), sent.append, "k1", "d2") != first.id
    store.client.delete(store.keys.job(first.id))  # the job expired: its key is taken over
    third = _job(settings)
    assert jobs.submit(store, third, sent.append, "k1", "d1") == third.id
    assert store.client.get(store.keys.idem("alice", "k1")) == f"{third.id} d1"


def test_cancel_a_queued_a_running_job_and_a_measurement(
    store: JobStore, settings: Settings
) -> None:
    queued, running = _job(settings), _job(settings)
    for job in (queued, running):
        jobs.submit(store, job, lambda _: None)
    assert store.leases.claim(running.id, 3, "w1", "h1", 30) == "run"

    done = jobs.cancel(store, settings, store.jobs.get(queued.id))  # type: ignore[arg-type]
    assert done == ("job", "canceled") and not done.stopping
    assert not job_paths(settings, queued.id).uploads.exists(), "it never starts: inputs go"
    done = jobs.cancel(store, settings, store.jobs.get(running.id))  # type: ignore[arg-type]
    assert done == ("job", "canceling") and done.stopping
    assert job_paths(settings, running.id).uploads.exists(), "its runner removes them"

    inputs = json.dumps({"video": "", "audio": ""})
    done_fields = {"stage": "done", "q_state": "pending", "q_inputs": inputs}
    measured = _job(settings)
    jobs.submit(store, measured, lambda _: None)
    assert store.leases.claim(measured.id, 3, "w1") == "run"
    assert store.jobs.finish(measured.id, "succeeded", **done_fields)
    done = jobs.cancel(store, settings, store.jobs.get(measured.id))  # type: ignore[arg-type]
    assert done == ("quality", "skipped")
    record = store.jobs.get(measured.id)
    assert record is not None and record.state == "succeeded"
    assert record.quality is not None and record.quality.state == "skipped"


def test_delete_removes_every_trace(store: JobStore, settings: Settings) -> None:
    job = _job(settings)
    message = json.dumps({"headers": {"id": job.id}})
    with JobStore.from_url(settings.effective_broker_url) as broker:
        broker.client.lpush(QUEUE_LISTS[0], message)
        jobs.submit(store, job, lambda _: None, "k1", "d1")
        assert jobs.delete(store, settings, store.jobs.get(job.id))  # type: ignore[arg-type]
        left = broker.client.lrange(QUEUE_LISTS[0], 0, -1)
        assert message not in left, "its message left the broker's queue"
    assert _service_keys(store, job.id) == []
    assert store.client.get(store.keys.idem("alice", "k1")) is None
    assert not job_paths(settings, job.id).uploads.exists()


def test_delete_of_a_job_whose_runner_does_not_stop(store: JobStore, settings: Settings) -> None:
    job = _job(settings)
    jobs.submit(store, job, lambda _: None)
    assert store.leases.claim(job.id, 3, "w1", "h1", 30) == "run"
    started = time.monotonic()
    assert not jobs.delete(store, settings, store.jobs.get(job.id))  # type: ignore[arg-type]
    assert settings.delete_wait_s <= time.monotonic() - started < 5
    assert _service_keys(store, job.id) == [], "deleted all the same"


def test_hand_back_keeps_the_uploads_and_drops_the_work_dir(
    store: JobStore, settings: Settings
) -> None:
    job = _job(settings)
    jobs.submit(store, job, lambda _: None)
    assert store.leases.claim(job.id, 3, "w1", "h1", 30) == "run"
    paths = job_paths(settings, job.id)
    paths.work.mkdir(parents=True)
    assert jobs.hand_back(store, settings, job.id, "h2") == "busy"
    assert jobs.hand_back(store, settings, job.id, "h1") == "handed_back"
    assert paths.uploads.exists() and not paths.work.exists()
    record = store.jobs.get(job.id)
    assert record is not None and (record.state, record.attempts) == ("queued", 0)
    assert jobs.hand_back(store, settings, uuid.uuid4().hex, "h1") == "missing"
    assert store.leases.claim(job.id, 3, "w1", "h1", 30) == "run"
    assert store.jobs.request_cancel(job.id) == "canceling"
    assert jobs.hand_back(store, settings, job.id, "h1") == "canceled"
    assert not paths.uploads.exists(), "a cancel came meanwhile: its inputs go"
