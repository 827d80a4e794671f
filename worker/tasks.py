"""Celery tasks (thin) and worker signals: start-up checks and the liveness heartbeat."""

from __future__ import annotations

import logging
import socket
import threading
from functools import lru_cache
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

from service.queue import QUEUE, TASK_CLEANUP, TASK_PROCESS, check_visibility, settings_of
from service.settings import Settings
from service.store import JobStore
from worker.celery_app import app
from worker.cleanup import OrphanRequeuer, run_cleanup
from worker.jobs import run_job

log = logging.getLogger("lipsync.worker")

HEARTBEAT_INTERVAL_S = 5.0


@lru_cache(maxsize=1)
def _settings() -> Settings:
    return settings_of(app)


@lru_cache(maxsize=1)
def _store() -> JobStore:
    s = _settings()
    return JobStore.from_url(s.redis_url, s.redis_prefix, s.result_ttl_s, s.redis_timeout_s)


@app.task(name=TASK_PROCESS, bind=True)
def process(self: Any, job_id: str) -> str:
    """Run one lip-sync job by id (the record in Redis says everything else)."""
    return run_job(job_id, _settings(), _store(), worker=str(self.request.hostname or ""))


@app.task(name=TASK_CLEANUP)
def cleanup() -> dict[str, int]:
    """Delete expired uploads and results; fail jobs whose worker was lost."""
    return run_cleanup(_settings(), _store())


def _send_again(job_id: str) -> None:
    app.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE)


class _Heartbeat:
    """Marks this worker alive in Redis (``/readyz`` reads it) while the main process lives,
    and requeues jobs whose runner died (:class:`worker.cleanup.OrphanRequeuer`)."""

    def __init__(self) -> None:
        self.name = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._orphans: OrphanRequeuer | None = None

    def start(self, name: str) -> None:
        self.name = name
        self._thread = threading.Thread(target=self._loop, name="lipsync-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self._orphans = OrphanRequeuer(_settings(), _store(), _send_again)
        while not self._stop.is_set():
            try:
                _store().heartbeat(self.name)
                self._orphans.scan()
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
                self._orphans.reset()
            self._stop.wait(HEARTBEAT_INTERVAL_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            _store().remove_worker(self.name)
        except Exception:
            log.warning("could not unregister worker %s", self.name, exc_info=True)


_heartbeat = _Heartbeat()


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    check_visibility(app.conf)  # refuse to start when redelivery could double-run a job
    _settings().ensure_dirs()


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    name = str(getattr(sender, "hostname", "") or f"worker@{socket.gethostname()}")
    _heartbeat.start(name)


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    _heartbeat.stop()
