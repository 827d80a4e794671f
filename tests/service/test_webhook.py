"""Webhooks below the HTTP API: the signature and its check, the retry schedule, the Lua
claims on a real private redis-server, one delivery attempt against real loopback receivers,
and the dispatcher's stop. No mocks: real Redis, real sockets."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lipsync.client import WebhookSignatureError, verify_webhook
from service.jobs import JobRecord, JobStore, WebhookRecord
from service.settings import Settings
from service.webhook import Attempt, WebhookPolicy, deliver, next_due, schedule, sign
from tests.app.service_harness import RedisServer, free_port
from tests.service.webhook_receiver import Receiver

SECRET = "whsec-test-0123456789abcdef"
ALLOW = WebhookPolicy(connect_timeout_s=1.0, deadline_s=1.0, allow=frozenset({"127.0.0.1"}))


# -- the signature -------------------------------------------------------------------------


def test_signature_verifies_and_rejects_what_it_must() -> None:
    body = json.dumps({"task_id": "a" * 32, "state": "succeeded"}).encode()
    now = 1_700_000_000
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert verify_webhook(SECRET, header, body, now=now + 299)["state"] == "succeeded"
    # with several v1 (a secret being rotated) any one may match; spaces are forgiven
    assert verify_webhook(SECRET, f"t={now}, v1={'0' * 64}, v1={header[-64:]}", body, now=now)

    bad = {
        "a wrong secret": (sign("another-secret-0123456789", body, now), body, now),
        "a changed body": (header, body.replace(b"succeeded", b"failed"), now),
        "an old timestamp": (header, body, now + 301),
        "a time from the future": (header, body, now - 301),
        "a changed timestamp": (header.replace(f"t={now}", f"t={now + 1}"), body, now),
        "no v1": (f"t={now}", body, now),
        "no t": (f"v1={header[-64:]}", body, now),
        "two t": (f"t={now},t={now},v1={header[-64:]}", body, now),
        "empty": ("", body, now),
    }
    for what, (given, payload, at) in bad.items():
        with pytest.raises(WebhookSignatureError):
            verify_webhook(SECRET, given, payload, now=at)
            pytest.fail(what)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(SECRET, None, body, now=now)
    # a tolerance of one's own
    assert verify_webhook(SECRET, header, body, tolerance_s=3600, now=now + 3000)


def test_retry_schedule() -> None:
    minutes = [t / 60 for t in schedule(6, 120.0)]
    assert minutes == [0, 2, 6, 14, 30, 62]  # 6 tries over about an hour
    assert schedule(4, 0.2) == pytest.approx([0, 0.2, 0.6, 1.4])
    assert next_due(100.0, 1, 6, 120.0) == 220.0  # the first retry: one base after
    assert next_due(100.0, 5, 6, 120.0) == 100.0 + 120 * 16
    assert next_due(100.0, 6, 6, 120.0) is None  # no 7th try
    defaults = Settings()
    assert (defaults.webhook_max_attempts, defaults.webhook_backoff_s) == (6, 120.0)
    assert not defaults.webhook_secret.get_secret_value()  # off unless configured
    with pytest.raises(ValueError, match="16 characters"):
        Settings(webhook_secret="short")


# -- claims, leases and outcomes in Redis ----------------------------------------------------


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    st = JobStore.from_url(redis_server.url, f"wh{uuid.uuid4().hex[:8]}", 600)
    yield st
    st.client.close()


def _job(store: JobStore, webhook: str | None = "http://127.0.0.1:9/hook") -> str:
    job_id = uuid.uuid4().hex
    hook = WebhookRecord(url=webhook) if webhook else None
    store.jobs.create(JobRecord(id=job_id, owner="o", state="queued", created_at=time.time(),
                           webhook=hook))  # fmt: skip
    return job_id


def _finished(store: JobStore, **kw: Any) -> str:
    job_id = _job(store, **kw)
    assert store.leases.claim(job_id, 3, "w", "holder", 30) == "run"
    assert store.jobs.finish(job_id, "succeeded", stage="done")
    return job_id


def test_a_final_state_makes_the_delivery_due_atomically(store: JobStore) -> None:
    plain = _finished(store, webhook=None)
    running = _job(store)
    assert store.leases.claim(running, 3, "w", "holder", 30) == "run"
    queued = _job(store)
    hooked = _finished(store)
    assert store.jobs.request_cancel(queued) == "canceled"  # a queued job canceled: final too
    due = store.webhooks.due(10)
    assert set(due) == {hooked, queued}  # not the one without a webhook, nor the running one
    record = store.jobs.get(hooked)
    assert record is not None and record.webhook is not None
    assert record.webhook.state == "pending" and record.webhook.attempts == 0
    assert record.webhook.next_at is not None
    assert store.jobs.get(running).webhook.state == "waiting"  # type: ignore[union-attr]
    assert store.jobs.get(plain).webhook is None  # type: ignore[union-attr]
    # a job that fails because its workers were lost is final too
    lost = _job(store)
    assert store.leases.claim(lost, 1, "w", "h", 30) == "run"
    store.client.delete(store.keys.lease(lost))  # its runner is lost, its lease lapses
    assert store.leases.claim(lost, 1, "w", "h", 30) == "exhausted"
    assert lost in store.webhooks.due(10)


def test_claim_lease_and_outcomes(store: JobStore) -> None:
    queue = store.webhooks
    job_id = _finished(store)
    now = time.time()
    first = queue.claim(job_id, "A", lease_s=30, max_attempts=3, now=now)
    assert first is not None and first.webhook is not None
    assert (first.webhook.state, first.webhook.attempts) == ("delivering", 1)
    assert queue.claim(job_id, "B", 30, 3, now=now) is None  # claimed: nobody else gets it
    assert queue.due(10, now=now + 29) == []
    # A dies mid-attempt: once the lease passes, B takes the delivery over
    second = queue.claim(job_id, "B", 30, 3, now=now + 31)
    assert second is not None and second.webhook is not None and second.webhook.attempts == 2
    assert queue.done(job_id, "A", Attempt(False, 500, "HTTP 500"), now + 40) == "stale"
    assert queue.done(job_id, "B", Attempt(False, None, "timed out"), now + 40) == "pending"
    record = store.jobs.get(job_id)
    assert record is not None and record.webhook is not None
    assert (record.webhook.state, record.webhook.last_code) == ("pending", None)
    assert record.webhook.last_error == "timed out" and record.webhook.next_at == now + 40
    assert queue.claim(job_id, "C", 30, 3, now=now + 39) is None  # not due yet
    third = queue.claim(job_id, "C", 30, 3, now=now + 40)
    assert third is not None and third.webhook is not None and third.webhook.attempts == 3
    # a 2xx is recorded whoever reports it (the stale A too), and ends the delivery for good
    assert queue.done(job_id, "A", Attempt(True, 204), None, now=now + 41) == "delivered"
    assert queue.done(job_id, "C", Attempt(False, 500, "late"), now + 90) == "delivered"
    assert queue.claim(job_id, "D", 30, 3, now=now + 10_000) is None
    assert queue.pending() == 0
    record = store.jobs.get(job_id)
    assert record is not None and record.webhook is not None
    assert (record.webhook.state, record.webhook.attempts, record.webhook.last_code) == (
        "delivered",
        3,
        204,
    )
    assert record.webhook.delivered_at == now + 41 and record.webhook.last_error is None


def test_attempts_run_out_release_and_a_vanished_job(store: JobStore) -> None:
    queue = store.webhooks
    job_id = _finished(store)
    now = time.time()
    for n in (1, 2):
        assert queue.claim(job_id, f"t{n}", 30, 2, now=now) is not None
        after = next_due(now, n, 2, 0.0)
        assert queue.done(job_id, f"t{n}", Attempt(False, 503, "HTTP 503"), after, now) == (
            "pending" if n == 1 else "failed"
        )
    record = store.jobs.get(job_id)
    assert record is not None and record.webhook is not None
    assert (record.webhook.state, record.webhook.attempts, record.webhook.last_code) == (
        "failed",
        2,
        503,
    )
    assert queue.pending() == 0

    # a stopping dispatcher gives its attempt back: uncounted, due at once
    other = _finished(store)
    now = time.time()
    assert queue.claim(other, "S", 30, 6, now=now) is not None
    assert not queue.release(other, "not-mine", now=now)
    assert queue.release(other, "S", now=now)
    record = store.jobs.get(other)
    assert record is not None and record.webhook is not None
    assert (record.webhook.state, record.webhook.attempts) == ("pending", 0)
    assert queue.due(10, now=now) == [other]

    # the record is gone (expired): its entry is dropped when it comes up
    store.client.delete(store.keys.job(other))
    assert queue.claim(other, "S", 30, 6, now=now) is None
    assert queue.pending() == 0


def test_purge_drops_a_pending_delivery(store: JobStore) -> None:
    job_id = _finished(store)
    assert store.webhooks.pending() == 1
    store.jobs.purge(job_id, "o")
    assert store.webhooks.pending() == 0
    assert not [k for k in store.client.scan_iter(f"{store.prefix}:*") if job_id in k]


# -- one attempt, against real receivers -----------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.close()


def test_an_attempt_posts_signed_json_and_reads_the_status(receiver: Receiver) -> None:
    body = b'{"task_id":"x","state":"succeeded"}'
    receiver.script.extend([204, 500, 302])
    assert deliver(receiver.url, body, SECRET, ALLOW) == Attempt(True, 204)
    failed = deliver(receiver.url, body, SECRET, ALLOW)
    assert (failed.ok, failed.code, failed.final) == (False, 500, False)
    receiver.redirect_to = "http://127.0.0.1:9/elsewhere"
    moved = deliver(receiver.url, body, SECRET, ALLOW)  # never followed: a failed attempt
    assert (moved.ok, moved.code) == (False, 302) and "not followed" in moved.error
    got = receiver.received()
    assert len(got) == 3 and all(r.path == "/hook" for r in got)
    first = got[0]
    assert first.body == body and first.headers["Content-Type"] == "application/json"
    assert verify_webhook(SECRET, first.headers["X-Lipsync-Signature"], first.body)


def test_slow_closed_and_refused_receivers(receiver: Receiver) -> None:
    receiver.script.append(("sleep", 3.0))
    started = time.monotonic()
    slow = deliver(receiver.url, b"{}", SECRET, ALLOW)
    took = time.monotonic() - started
    assert not slow.ok and slow.code is None and "longer than 1 s" in slow.error
    assert took < 1.6, took  # the per-attempt limit holds, whatever the receiver does

    closed = deliver(f"http://127.0.0.1:{free_port()}/hook", b"{}", SECRET, ALLOW)
    assert not closed.ok and not closed.final and "cannot connect" in closed.error

    strict = WebhookPolicy(connect_timeout_s=1.0, deadline_s=1.0)  # nothing allowed
    before = len(receiver.received())
    for url in (receiver.url, f"http://[::1]:{receiver.port}/", "http://169.254.169.254/x"):
        refused = deliver(url, b"{}", SECRET, strict)
        assert refused.final and refused.code is None and refused.error.startswith("refused")
    assert len(receiver.received()) == before  # nothing was sent


def test_the_dispatcher_stops_within_a_second_and_gives_the_attempt_back(
    store: JobStore, receiver: Receiver, tmp_path: Any
) -> None:
    from worker.webhooks import WebhookDispatcher

    settings = Settings(
        redis_url="redis://unused",
        redis_prefix=store.prefix,
        data_dir=tmp_path,
        webhook_secret=SECRET,
        webhook_allow="127.0.0.1",
        webhook_timeout_s=20,
        webhook_poll_s=0.05,
    )
    receiver.script.append(("sleep", 10.0))
    job_id = _finished(store, webhook=receiver.url)
    dispatcher = WebhookDispatcher(settings, store, "unit")
    dispatcher.start()
    deadline = time.monotonic() + 10
    while not receiver.received():
        assert time.monotonic() < deadline, "no attempt was made"
        time.sleep(0.02)
    started = time.monotonic()
    stopper = threading.Thread(target=dispatcher.stop)
    stopper.start()
    stopper.join()
    assert time.monotonic() - started < 1.2
    record = store.jobs.get(job_id)
    assert record is not None and record.webhook is not None
    assert (record.webhook.state, record.webhook.attempts) == ("pending", 0)
    assert store.webhooks.due(10) == [job_id]
