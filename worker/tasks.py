"""Celery tasks (thin) and worker signals: start-up checks, the liveness heartbeat, the
webhook dispatcher, the drain at an operator's stop and the pool processes' lower CPU
priority.

A stop (SIGTERM, Ctrl-C, ``docker stop``) starts Celery's warm shutdown, which would wait
for the running job to finish, or be cut short by a SIGKILL that costs the job an attempt.
Instead the main process sets this worker's drain mark in Redis as the shutdown begins; the
job's pool process sees it at the pipeline's next check (a fraction of a second), hands the
job back to ``queued`` with its attempt given back and rejects its message, which Celery puts
back at the head of the queue, so the worker exits within seconds and the next worker resumes
the job.

The webhook dispatcher (:mod:`worker.webhooks`) is a thread of the main process, started
with the heartbeat when the worker is ready; a stop halts it at once (attempts under way
are aborted and given back) and waits for it a second at most.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from functools import lru_cache
from typing import Any

from celery.exceptions import Reject
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from service.jobs import BrokerMessages, JobStore, StoreError
from service.queue import (
    QUALITY_PRIORITY,
    QUEUE,
    TASK_CLEANUP,
    TASK_PROCESS,
    TASK_QUALITY,
    check_visibility,
    quality_task_id,
    settings_of,
    visibility_timeout_of,
)
from service.settings import Settings
from worker.celery_app import app
from worker.cleanup import run_cleanup
from worker.jobs import run_job
from worker.lease import LEASE_S
from worker.quality import run_quality
from worker.webhooks import WebhookDispatcher

log = logging.getLogger("lipsync.worker")

HEARTBEAT_INTERVAL_S = 5.0
# A copy of a job's message delivered while its runner lives checks back this often.
BUSY_RECHECK_S = LEASE_S
# How long a stopping worker's drain mark lives (its job sees it within a second; a worker
# started again under the same name clears it at once).
DRAIN_MARK_S = 120.0
# The pool processes (the renders) run at this nice value, so that on a shared machine the
# API (nice 0) answers status polls while a job renders; LIPSYNC_WORKER_NICE overrides it
# (0 leaves the priority alone). Nice orders processes of one session and cgroup: in
# docker-compose the containers' CPU shares decide instead.
WORKER_NICE = 10


@lru_cache(maxsize=1)
def _settings() -> Settings:
    return settings_of(app)


@lru_cache(maxsize=1)
def _store() -> JobStore:
    s = _settings()
    return JobStore.from_url(s.redis_url, s.redis_prefix, s.result_ttl_s, s.redis_timeout_s)


@lru_cache(maxsize=1)
def _broker() -> BrokerMessages:
    s = _settings()
    return BrokerMessages.from_url(
        s.effective_broker_url, dict(app.conf.broker_transport_options or {}), s.redis_timeout_s
    )


@app.task(name=TASK_PROCESS, bind=True, max_retries=None)
def process(self: Any, job_id: str) -> str:
    """Run one lip-sync job by id (the record in Redis says everything else)."""
    worker = str(self.request.hostname or "")
    outcome = run_job(
        job_id, _settings(), _store(), worker=worker, keep_visible=lambda: _keep_visible(job_id)
    )
    if outcome == "handed_back":  # the worker is stopping: back at the head of the queue
        raise Reject(f"worker {worker} is stopping", requeue=True)
    if outcome == "busy":
        # A copy delivered while the job's runner lives. It checks again later rather than
        # go: the broker put it back because the runner's own message had gone unrenewed,
        # so if that runner is lost, this copy is what brings the job back.
        raise self.retry(countdown=_recheck_s())
    if outcome == "succeeded":
        _queue_quality(job_id)
    return outcome


def _recheck_s() -> float:
    """When a busy copy checks again: before the broker would deliver it once more (half
    the visibility timeout), at most every BUSY_RECHECK_S."""
    return min(BUSY_RECHECK_S, visibility_timeout_of(app.conf) / 2)


def _keep_visible(task_id: str) -> None:
    _broker().extend(task_id)


@app.task(name=TASK_QUALITY, bind=True)
def quality(self: Any, job_id: str) -> str:
    """Measure a succeeded job's result (``lipsync evaluate``), at the lowest priority."""
    worker = str(self.request.hostname or "")
    return run_quality(
        job_id,
        _settings(),
        _store(),
        worker=worker,
        send_again=_send_quality,
        keep_visible=lambda: _keep_visible(quality_task_id(job_id)),
    )


def _queue_quality(job_id: str) -> None:
    """Send the measurement of a job that has just succeeded, if it is to be measured; a
    send that fails marks it failed (the result is there all the same)."""
    try:
        record = _store().jobs.get(job_id)
        if record is None or record.quality is None or record.quality.state != "pending":
            return
        _send_quality(job_id)
    except Exception:
        log.warning("the measurement of %s could not be queued", job_id, exc_info=True)
        with contextlib.suppress(StoreError):
            _store().quality.unsent(job_id, "could not be queued")


def _send_quality(job_id: str) -> None:
    app.send_task(
        TASK_QUALITY,
        args=[job_id],
        task_id=quality_task_id(job_id),
        queue=QUEUE,
        priority=QUALITY_PRIORITY,
    )


@app.task(name=TASK_CLEANUP)
def cleanup() -> dict[str, int]:
    """Delete expired uploads and results; fail jobs whose worker was lost."""
    return run_cleanup(_settings(), _store())


def worker_nice() -> int:
    """The nice value for the pool processes (``LIPSYNC_WORKER_NICE``, else WORKER_NICE)."""
    raw = os.environ.get("LIPSYNC_WORKER_NICE", "").strip()
    try:
        value = int(raw) if raw else WORKER_NICE
    except ValueError:
        log.warning("LIPSYNC_WORKER_NICE=%r is not a number; using %d", raw, WORKER_NICE)
        value = WORKER_NICE
    return max(0, min(19, value))


class _Heartbeat:
    """Marks this worker alive in Redis (``/readyz`` reads it) while the main process lives."""

    def __init__(self) -> None:
        self.name = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        self.name = name
        self._thread = threading.Thread(target=self._loop, name="lipsync-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                _store().workers.heartbeat(self.name)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            self._stop.wait(HEARTBEAT_INTERVAL_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            _store().workers.remove(self.name)
        except Exception:
            log.warning("could not unregister worker %s", self.name, exc_info=True)


_heartbeat = _Heartbeat()
_dispatcher: list[WebhookDispatcher] = []  # the main process's, once the worker is ready


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    check_visibility(app.conf)  # refuse to start when redelivery could double-run a job
    _settings().ensure_dirs()


@worker_process_init.connect
def _on_pool_process_init(**_: Any) -> None:
    """Each pool process (and the threads and children it starts) renders at a lower CPU
    priority than the API, which shares the machine in ``make up``."""
    target = worker_nice()
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if target > current:
            os.setpriority(os.PRIO_PROCESS, 0, target)
    except OSError:
        log.warning("could not lower the pool process's priority", exc_info=True)


#: The signals that stop a worker: its own threads never take them, so the kernel hands
#: them to the main thread, whose wait in the event loop they end at once. (A signal taken
#: by another thread only sets a flag the main thread reads when its wait ends, seconds
#: later: the running job then saw the drain mark late.)
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP}


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    name = str(getattr(sender, "hostname", "") or f"worker@{socket.gethostname()}")
    try:  # a mark left by an earlier worker of the same name (killed while stopping)
        _store().workers.clear_draining(name)
    except StoreError:
        log.warning("could not clear the drain mark of %s", name, exc_info=True)
    # threads started now inherit the blocked signals (and so do the threads they start)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        _heartbeat.start(name)
        dispatcher = WebhookDispatcher(_settings(), _store(), name)
        dispatcher.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    _dispatcher.append(dispatcher)


@worker_shutting_down.connect
def _on_worker_shutting_down(sender: Any = None, **_: Any) -> None:
    """Runs in the main process's signal handler as a stop begins: set the drain mark, so
    the running job hands itself back instead of holding the stop up. A connection of its
    own (the handler may interrupt the main thread anywhere)."""
    for dispatcher in _dispatcher:  # no new attempt; those under way are aborted
        dispatcher.stop(wait_s=0)
    name = str(sender or "")
    if not name:
        return
    s = _settings()
    try:
        with JobStore.from_url(s.redis_url, s.redis_prefix, timeout_s=s.redis_timeout_s) as store:
            store.workers.set_draining(name, DRAIN_MARK_S)
        log.info("worker %s stopping: drain mark set", name)
    except StoreError:
        log.warning("could not set the drain mark of %s: the running job will finish first",
                    name, exc_info=True)  # fmt: skip


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    for dispatcher in _dispatcher:
        dispatcher.stop()  # their attempts give themselves back: a second at most
    _heartbeat.stop()
    name = _heartbeat.name
    if name:
        try:
            _store().workers.clear_draining(name)
        except Exception:
            log.warning("could not clear the drain mark of %s", name, exc_info=True)
