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
from worker.lease import LEASE_RENEW_S, holder_is_dead

log = logging.getLogger("lipsync.cleanup")

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_WORKER_FORGET_S = 3600.0
# A lapsed lease is trusted only after this long (its runner renews every LEASE_RENEW_S;
# after a Redis restart every lease may have expired while the runners still live).
ORPHAN_GRACE_S = 2 * LEASE_RENEW_S


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
    """Brings lost jobs back: the one owner of redelivery (Celery acknowledges a message as
    its task starts and never redelivers it; docs/RELIABILITY.md). Every worker runs
    :meth:`scan` from its heartbeat thread; each move is a script that acts only from the
    state it expects, so several workers scanning at once send a job once.

    * **Lost runner.** A ``running`` job whose lease has lapsed (for ``grace_s``, so a Redis
      restart that outlived the leases is not mistaken for dead runners), or whose lease
      holder is a dead process on this host (a killed pool process, a worker killed with
      it), goes back to ``queued`` and its message is sent again; one that had already run
      past the soft time limit fails with ``timeout`` instead, and one whose cancel was
      requested becomes ``canceled``. Its attempt count still bounds how often it runs.
    * **Lost message.** A ``queued`` job whose message was sent ``lost_s`` ago or more and
      which no message in the broker's queue names (``waiting``: it was taken by a process
      that died before claiming the job, or never sent) is sent again.
    * **Measurements.** The same for the measurement of a succeeded job: a running one whose
      runner is a dead local process, or has run past the hard time limit, goes back to
      ``pending``; a pending one whose message was lost is sent again (``send_quality``).

    A message sent again that turns out not to be needed (the first was still on its way)
    is turned away by the claim: it only ever starts a job that nothing runs.
    """

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        send: Callable[[str], object],
        grace_s: float = ORPHAN_GRACE_S,
        waiting: Callable[[list[str]], set[str]] | None = None,
        send_quality: Callable[[str], object] | None = None,
        task_id: Callable[[str], str] = lambda job_id: job_id,
    ) -> None:
        """``waiting(task ids)``: those with a message waiting in the broker (None: lost
        messages are not looked for); ``task_id``: the task id of a job's measurement."""
        self.settings = settings
        self.store = store
        self.send = send
        self.grace_s = grace_s
        self.lost_s = settings.lost_message_s
        self.waiting = waiting
        self.send_quality = send_quality
        self.quality_task_id = task_id
        self._lapsed: dict[str, float] = {}  # job id -> when its lease was first seen gone

    def reset(self) -> None:
        """Forget what was seen (after Redis was unreachable, nothing seen before counts)."""
        self._lapsed.clear()

    def scan(self) -> dict[str, str]:
        """Requeue (or end) lost jobs and measurements; returns job id -> what was done."""
        done = self._lost_runners()
        if self.waiting is not None:
            done.update(self._lost_messages())
        if self.send_quality is not None:
            done.update(self._lost_measurements())
        return done

    def _lost_runners(self) -> dict[str, str]:
        done: dict[str, str] = {}
        running = self.store.jobs.active_ids()["running"]
        for job_id in set(self._lapsed) - set(running):
            del self._lapsed[job_id]
        now = time.monotonic()
        for job_id in running:
            holder = self.store.leases.holder(job_id)
            if holder is not None:
                self._lapsed.pop(job_id, None)
                if not holder_is_dead(holder) or not self.store.leases.break_dead(job_id, holder):
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

    def _lost_messages(self) -> dict[str, str]:
        assert self.waiting is not None
        now = time.time()
        queued = self.store.jobs.active_ids()["queued"]
        sent_at = self.store.jobs.sent_at(queued)
        due = [job_id for job_id, sent in sent_at.items() if now - sent >= self.lost_s]
        if not due:
            return {}
        done: dict[str, str] = {}
        waiting = self.waiting(due)
        for job_id in due:
            if job_id not in waiting and self.store.leases.resend(job_id, self.lost_s):
                self.send(job_id)
                done[job_id] = "resent"
                log.warning("job %s: no message of it in the broker; sent again", job_id)
        return done

    def _lost_measurements(self) -> dict[str, str]:
        assert self.send_quality is not None
        done: dict[str, str] = {}
        now = time.time()
        overdue = self.settings.hard_time_limit_s + 60.0
        due: list[str] = []
        for job_id, (sent, state, holder, started) in self.store.quality.measuring().items():
            if state == "pending" and now - sent >= self.lost_s:
                due.append(job_id)
            elif state == "running" and holder:
                if not holder_is_dead(holder) and not (started and now - started > overdue):
                    continue
                outcome = self.store.quality.requeue(job_id, holder)
                if outcome == "pending":
                    self.send_quality(job_id)
                elif outcome == "skipped":
                    remove_job_files(self.settings, job_id)
                done[job_id] = f"measurement {outcome}"
                log.warning("the measurement of %s lost its runner: %s", job_id, outcome)
        if due and self.waiting is not None:
            waiting = self.waiting([self.quality_task_id(j) for j in due])
            for job_id in due:
                if self.quality_task_id(job_id) in waiting:
                    continue
                if self.store.quality.resend(job_id, self.lost_s):
                    self.send_quality(job_id)
                    done[job_id] = "measurement resent"
                    log.warning("the measurement of %s: no message in the broker; sent again",
                                job_id)  # fmt: skip
        return done
