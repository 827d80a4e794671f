"""Expiry of uploads, results and work dirs, and repair of stale job bookkeeping.

Run periodically (Celery beat, task ``lipsync.cleanup``). Everything here is idempotent, so
several workers running it at once is harmless.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from service.jobs import JobStore
from service.layout import remove_job_files
from service.settings import Settings
from worker.lease import LEASE_RENEW_S, holder_is_dead, started_after_me

log = logging.getLogger("lipsync.cleanup")

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_WORKER_FORGET_S = 3600.0
# A lapsed lease is trusted only after this long (its runner renews every LEASE_RENEW_S;
# after a Redis restart every lease may have expired while the runners still live).
ORPHAN_GRACE_S = 2 * LEASE_RENEW_S
# A dead pool process of this very worker is left this long to Celery, which puts its
# message back on the queue (task_reject_on_worker_lost) for the next pool process, whose
# claim breaks the dead lease: requeuing it here as well would send a second message, from
# the main process's heartbeat thread while the pool forks the replacement process.
OWN_POOL_GRACE_S = 15.0


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def run_cleanup(settings: Settings, store: JobStore, now: float | None = None) -> dict[str, int]:
    """Delete what has expired; returns counts of what was removed or repaired."""
    now = time.time() if now is None else now
    ttl = float(settings.result_ttl_s)
    # A file whose job record is gone is kept this long (an upload may still be streaming).
    grace = min(3600.0, ttl)
    counts = {"uploads": 0, "results": 0, "work": 0, "stale_jobs": 0, "dangling": 0}

    def job_alive(job_id: str) -> tuple[bool, bool]:
        """(record exists, job still queued or running, or its result still measured:
        the measurement reads the job's uploads)."""
        record = store.jobs.get(job_id) if _JOB_ID.match(job_id) else None
        if record is None:
            return False, False
        measuring = record.quality is not None and not record.quality.finished
        return True, not record.finished or measuring

    # Jobs that ran past the hard limit without a final state: their worker was lost.
    limit = settings.hard_time_limit_s + 60.0
    for job_id in store.jobs.active_ids()["running"]:
        record = store.jobs.get(job_id)
        if record is None:
            store.jobs.forget_active(job_id)
            counts["dangling"] += 1
        elif record.state == "running" and (record.started_at or now) + limit < now:
            message = "the job ran past its hard time limit and its worker was lost"
            if store.jobs.fail_stale(job_id, "timeout", message):
                remove_job_files(settings, job_id)
                counts["stale_jobs"] += 1
    for job_id in store.jobs.active_ids()["queued"]:
        if not store.jobs.exists(job_id):
            store.jobs.forget_active(job_id)
            counts["dangling"] += 1

    for folder, key in ((settings.uploads_dir, "uploads"), (settings.work_dir, "work")):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            exists, active = job_alive(entry.name)
            age = _age(entry, now)
            if active and age < ttl + settings.hard_time_limit_s:
                continue
            if (exists and not active) or age > grace:
                _remove(entry)
                counts[key] += 1

    if settings.results_dir.is_dir():
        for entry in settings.results_dir.iterdir():
            exists, _ = job_alive(entry.name.removesuffix(".mp4"))
            age = _age(entry, now)
            if age > ttl or (not exists and age > grace):
                _remove(entry)
                counts["results"] += 1

    store.workers.forget_silent(now - _WORKER_FORGET_S)
    if any(counts.values()):
        log.info("cleanup: %s", counts)
    return counts


class OrphanRequeuer:
    """Runs again the jobs whose runner is gone, e.g. after ``kill -9`` of a whole worker.

    The broker would redeliver such a job only after its visibility timeout (hours). A job
    is orphaned when it is ``running`` but its lease has lapsed (for ``grace_s``, so a
    Redis restart that outlived the leases is not mistaken for dead runners), or its lease
    holder is a dead process on this host. It goes back to ``queued`` and its message is
    sent again; a job that had already run past the soft time limit fails with ``timeout``
    instead, and one whose cancel was requested becomes ``canceled``. The job's attempt
    count still bounds how often it runs. Every worker runs this from its heartbeat thread.
    """

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        send: Callable[[str], object],
        grace_s: float = ORPHAN_GRACE_S,
        node: str = "",
        own_pool_grace_s: float = OWN_POOL_GRACE_S,
    ) -> None:
        """``node``: this worker's name (a job it claimed whose runner started after this
        process is one of its pool processes: see :data:`OWN_POOL_GRACE_S`)."""
        self.settings = settings
        self.store = store
        self.send = send
        self.grace_s = grace_s
        self.node = node
        self.own_pool_grace_s = own_pool_grace_s
        self._lapsed: dict[str, float] = {}  # job id -> when its lease was first seen gone
        self._own_dead: dict[str, float] = {}  # job id -> when its own pool runner was seen dead

    def reset(self) -> None:
        """Forget what was seen (after Redis was unreachable, nothing seen before counts)."""
        self._lapsed.clear()
        self._own_dead.clear()

    def _left_to_the_pool(self, job_id: str, holder: str, now: float) -> bool:
        """Whether the dead ``holder`` was a pool process of this worker, dead for less than
        ``own_pool_grace_s``: Celery requeues its job."""
        if not self.node or not started_after_me(holder):
            return False
        record = self.store.jobs.get(job_id)
        if record is None or record.worker != self.node:
            return False
        return now - self._own_dead.setdefault(job_id, now) < self.own_pool_grace_s

    def scan(self) -> dict[str, str]:
        """Requeue (or end) orphaned jobs; returns job id -> what was done."""
        done: dict[str, str] = {}
        running = self.store.jobs.active_ids()["running"]
        for seen in (self._lapsed, self._own_dead):
            for job_id in set(seen) - set(running):
                del seen[job_id]
        now = time.monotonic()
        for job_id in running:
            holder = self.store.leases.holder(job_id)
            if holder is not None:
                self._lapsed.pop(job_id, None)
                if not holder_is_dead(holder):
                    self._own_dead.pop(job_id, None)  # a new runner has it
                    continue
                if self._left_to_the_pool(job_id, holder, now):
                    continue
                if not self.store.leases.break_dead(job_id, holder):
                    continue
            elif now - self._lapsed.setdefault(job_id, now) < self.grace_s:
                continue
            self._lapsed.pop(job_id, None)
            record = self.store.jobs.get(job_id)
            if record is None or record.state != "running":
                continue
            if (
                record.started_at
                and time.time() - record.started_at > self.settings.soft_time_limit_s
            ):
                message = "the job ran past its time limit and its worker was lost"
                if self.store.jobs.fail_stale(job_id, "timeout", message):
                    remove_job_files(self.settings, job_id)
                    done[job_id] = "timeout"
                continue
            outcome = self.store.leases.requeue_orphan(job_id)
            if outcome == "canceled":
                remove_job_files(self.settings, job_id)
            elif outcome == "queued":
                self.send(job_id)
            if outcome:
                done[job_id] = outcome
                log.warning("job %s lost its runner: %s", job_id, outcome)
        return done
