"""The pipeline's callbacks for a job: progress into Redis, cancel flag from Redis."""

from __future__ import annotations

import logging
import time

from celery.exceptions import SoftTimeLimitExceeded

from service.jobs import JobStore

log = logging.getLogger("lipsync.worker")


class ProgressReporter:
    """``progress(stage, fraction)`` for :func:`lipsync.run`, throttled Redis writes."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        min_interval_s: float = 0.25,
        scale: float = 1.0,
        offset: float = 0.0,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.min_interval_s = min_interval_s
        # a step's 0..1 maps to offset..offset+scale of the job's bar (the fetch of URL
        # inputs takes the first FETCH_SHARE of it, the pipeline the rest)
        self.scale = scale
        self.offset = offset
        self._stage = ""
        self._last = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last < self.min_interval_s and fraction < 1.0:
            return
        self._stage, self._last = stage, now
        try:
            value = self.offset + self.scale * max(0.0, min(1.0, float(fraction)))
            self.store.jobs.set_progress(self.job_id, stage, value)
        except SoftTimeLimitExceeded:  # signalled while waiting on Redis: not a hiccup
            raise
        except Exception:  # a progress hiccup must not fail the job
            log.warning("progress update for %s failed", self.job_id, exc_info=True)


class Drained(Exception):
    """The worker running the job is being stopped by its operator: the job goes back to the
    queue (not a failure, no attempt counted)."""


class CancelFlag:
    """``should_cancel()`` for :func:`lipsync.run`: polls the job's Redis cancel flag and,
    with ``worker``, that worker's drain mark (set when an operator stops it). Either one
    stops the pipeline at its next check; :attr:`canceled` and :attr:`draining` say which."""

    def __init__(
        self, store: JobStore, job_id: str, min_interval_s: float = 0.2, worker: str = ""
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.worker = worker
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self.canceled = False
        self.draining = False

    def __call__(self) -> bool:
        if self.canceled or self.draining:
            return True
        now = time.monotonic()
        if now - self._last >= self.min_interval_s:
            self._last = now
            try:
                stop = self.store.jobs.stop_requested(self.job_id, self.worker)
                self.canceled, self.draining = stop
            except SoftTimeLimitExceeded:  # signalled while waiting on Redis: not a hiccup
                raise
            except Exception:
                log.warning("cancel check for %s failed", self.job_id, exc_info=True)
        return self.canceled or self.draining

    def cancel_requested(self) -> bool:
        """A fresh look at the cancel flag alone (the drain mark does not count)."""
        if not self.canceled:
            try:
                self.canceled = self.store.jobs.cancel_requested(self.job_id)
            except SoftTimeLimitExceeded:  # signalled while waiting on Redis: not a hiccup
                raise
            except Exception:
                log.warning("cancel check for %s failed", self.job_id, exc_info=True)
        return self.canceled
