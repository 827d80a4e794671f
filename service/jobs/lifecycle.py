"""The moves of a job's life that span more than one concern of the store, or its files:
what the API's routes and the worker call (the table of moves is :mod:`service.jobs.states`).

* :func:`submit`: the record, its owner's index and Idempotency-Key, then its message;
* :func:`cancel`: terminate a job, or the measurement of its result;
* :func:`delete`: cancel, wait for the runner to stop, then remove every trace;
* :func:`hand_back`: a stopping worker gives its running job back to the queue.

They are plain blocking functions (the API runs them in its thread pool).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from typing import Literal, NamedTuple

from service.jobs.broker import drop_queued_message
from service.jobs.record import JobRecord
from service.jobs.store import JobStore
from service.layout import job_paths, remove_job_files
from service.settings import Settings

log = logging.getLogger("lipsync.jobs")


class IdempotencyConflict(Exception):
    """The Idempotency-Key is bound to a job pushed with another payload."""


def submit(
    store: JobStore,
    job: JobRecord,
    send: Callable[[str], object],
    idempotency_key: str | None = None,
    digest: str = "",
) -> str:
    """Move ``submit``: write the queued ``job``, add it to its owner's index, then send its
    message (``send(job.id)``); the id of the job that stands for the push.

    With ``idempotency_key`` (of this owner): when the key names a live job pushed with the
    same payload (``digest``), that job's id is returned and nothing is written; another
    payload raises :class:`IdempotencyConflict`; a key whose job has expired is taken over.
    When the message cannot be sent, the record, its index entry and the key's binding are
    removed again and the error is raised."""
    if idempotency_key is not None:
        earlier = _bind_key(store, job, idempotency_key, digest)
        if earlier is not None:
            return earlier
    store.jobs.create(job)
    try:
        store.jobs.index(job, idempotency_key)  # GET /jobs lists it
        send(job.id)
    except Exception:
        store.jobs.purge(job.id, job.owner, idempotency_key)
        raise
    return job.id


def _bind_key(store: JobStore, job: JobRecord, key: str, digest: str) -> str | None:
    """Bind the Idempotency-Key to ``job``; or the id of the live job it already names."""
    taken = store.jobs.claim_idempotency(job.owner, key, job.id, digest)
    if taken is None:
        return None
    other_id, _, other_digest = taken.partition(" ")
    if other_digest != digest:
        raise IdempotencyConflict(key)
    if store.jobs.get(other_id) is not None:
        return other_id
    store.jobs.release_idempotency(job.owner, key)
    store.jobs.claim_idempotency(job.owner, key, job.id, digest)
    return None


class Cancel(NamedTuple):
    """What a cancel reached: the ``job`` (the outcome of move ``cancel``) or the
    ``quality`` measurement of its result (of move ``q_cancel``)."""

    target: Literal["job", "quality"]
    outcome: str | None

    @property
    def stopping(self) -> bool:
        """It was running: flagged, and its runner stops at its next check."""
        return self.outcome == "canceling"


def measuring(job: JobRecord) -> bool:
    """The job has succeeded and its result is still to be measured."""
    return job.state == "succeeded" and job.quality is not None and not job.quality.finished


def cancel(store: JobStore, settings: Settings, job: JobRecord) -> Cancel:
    """Terminate ``job``: a queued one never starts, a running one is flagged; for a
    succeeded job whose result is still being measured, the measurement (its result
    stays). The inputs of whatever ended before it started are removed now."""
    if measuring(job):
        outcome: str | None = store.quality.request_cancel(job.id)
        if outcome == "skipped":  # it never started: the inputs it would have read can go
            remove_job_files(settings, job.id)
        return Cancel("quality", outcome)
    outcome = store.jobs.request_cancel(job.id)
    if outcome == "canceled":  # it never started: its uploads can go now
        remove_job_files(settings, job.id)
    return Cancel("job", outcome)


def delete(store: JobStore, settings: Settings, job: JobRecord, poll_s: float = 0.1) -> bool:
    """Remove every trace of ``job``: its webhook (a deleted job gets none, not even of its
    cancel), a cancel if it runs or is measured, then every Redis key naming it, its queued
    message in the broker, and its files (uploads, work dir, result). A runner is waited
    for ``LIPSYNC_DELETE_WAIT_S`` at most (it then removes its files and writes nothing
    more); False when it had not stopped by then (its leftovers go with the periodic
    cleanup)."""
    if job.webhook is not None:
        store.webhooks.drop(job.id)
    stopped = True
    if (not job.finished or measuring(job)) and cancel(store, settings, job).stopping:
        stopped = _wait_stopped(store, job.id, settings.delete_wait_s, poll_s)
        if not stopped:
            log.warning(
                "job %s still running %.0fs after its delete; its leftovers go with the "
                "periodic cleanup",
                job.id,
                settings.delete_wait_s,
            )
    store.jobs.purge(job.id, job.owner)
    if job.started_at is None:  # queued, or canceled before it started: its message waits
        drop_queued_message(settings.effective_broker_url, job.id, settings.redis_timeout_s)
    remove_job_files(settings, job.id, result=True)
    return stopped


def _wait_stopped(store: JobStore, job_id: str, wait_s: float, poll_s: float) -> bool:
    """Wait for a canceled running job (or measurement) to reach a final state."""
    deadline = time.monotonic() + wait_s
    while True:
        job = store.jobs.get(job_id)
        if job is None or (job.finished and not measuring(job)):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def hand_back(store: JobStore, settings: Settings, job_id: str, holder: str) -> str:
    """Move ``hand_back``: the worker running the job (as lease ``holder``) is being
    stopped, so the job goes back to ``queued`` with its attempt given back. Its work dir
    goes; its uploads stay for the next worker (unless a cancel came meanwhile: then the
    job is ``canceled`` and they go too). Returns the outcome of the move (``handed_back``,
    ``canceled``, ``busy``, another state, ``missing``); the caller puts its message back
    on the queue after ``handed_back``."""
    shutil.rmtree(job_paths(settings, job_id).work, ignore_errors=True)
    outcome = store.leases.hand_back(job_id, holder) or "missing"
    if outcome == "canceled":
        remove_job_files(settings, job_id)
    return outcome
