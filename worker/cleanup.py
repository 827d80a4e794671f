"""Expiry of uploads, results and work dirs, and repair of stale job bookkeeping.

Run periodically (Celery beat, task ``lipsync.cleanup``). Everything here is idempotent, so
several workers running it at once is harmless.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from service.jobs import JobStore
from service.layout import remove_job_files
from service.settings import Settings

log = logging.getLogger("lipsync.cleanup")

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_WORKER_FORGET_S = 3600.0


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
