"""The quality task: ``lipsync evaluate``'s numbers for a succeeded job, after its result.

A job is ``succeeded`` (its download ready, its webhook due) as soon as its video is
written; its measurement follows as a task of its own (``lipsync.quality``) sent at the
lowest priority of the job queue, so any job waiting is started before it. Its state lives
on the job's record (``q_state`` ..., :class:`service.jobs.record.QualityRecord`): ``pending``,
``running``, then ``ready`` (its numbers), ``failed`` (why in its note) or ``skipped``.

A running measurement stops within a second of a cancel (terminate or DELETE of the job:
``skipped``, note ``canceled``), of its worker's stop (handed back: ``pending`` again, the
attempt not counted) and of a job arriving in the queue (handed back the same way, so the
worker renders that job first; at most :data:`MAX_YIELDS` times per job). Each end is
recorded by a Lua script that only its claimant can run once (:mod:`service.jobs.lua`),
so a redelivered message cannot record twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from service.errors import public_message, user_names
from service.jobs import JobRecord, JobStore
from service.layout import job_paths, remove_job_files
from service.settings import Settings
from worker.lease import Renewer, lease_holder, retrying
from worker.stopper import Stopper

log = logging.getLogger("lipsync.worker")

#: How often one job's measurement makes way for a job that is waiting (then it finishes
#: even with jobs waiting, so that a busy server still measures).
MAX_YIELDS = 5
#: The file the measurement's child creates in the job's work dir as it starts ``lipsync
#: evaluate`` itself (worker/evaluate_child.py): the measurement proper is under way.
STARTED = "quality.started"


class QualityFlag:
    """``should_cancel()`` of a measurement: its cancel flag, its worker's drain mark, and
    (while it may still yield) a job waiting in the queue. :attr:`reason` says which."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        worker: str = "",
        may_yield: bool = True,
        min_interval_s: float = 0.2,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.worker = worker
        self.may_yield = may_yield
        self.min_interval_s = min_interval_s
        self.reason = ""  # "canceled", "draining" or "yield"
        self._last = 0.0

    def __call__(self) -> bool:
        if self.reason:
            return True
        now = time.monotonic()
        if now - self._last < self.min_interval_s:
            return False
        self._last = now
        try:
            canceled, draining = self.store.quality.stop_requested(self.job_id, self.worker)
            if canceled:
                self.reason = "canceled"
            elif draining:
                self.reason = "draining"
            elif self.may_yield and self.store.stats.queue_depth() > 0:
                self.reason = "yield"
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            log.warning("stop check of the measurement of %s failed", self.job_id, exc_info=True)
        return bool(self.reason)


def run_quality(
    job_id: str,
    settings: Settings,
    store: JobStore,
    worker: str = "",
    send_again: Callable[[str], object] | None = None,
    keep_visible: Callable[[], object] | None = None,
) -> str:
    """Measure one succeeded job's result; returns what happened (``ready``, ``failed``,
    ``skipped``, ``handed_back``, or why it did not run). ``keep_visible()``, called every
    few seconds while it measures, keeps the broker from delivering its message again."""
    if store.workers.is_draining(worker):
        if send_again is not None:
            send_again(job_id)
        return "handed_back"
    holder = lease_holder()
    outcome = retrying(
        lambda: store.quality.claim(job_id, holder, settings.max_attempts),
        f"claim of the measurement of {job_id}",
    )
    if outcome != "run":
        log.info("measurement of %s not run: %s", job_id, outcome)
        if outcome in ("skipped", "failed", "ready"):
            remove_job_files(settings, job_id)
        return outcome
    record = store.jobs.get(job_id)
    if record is None:
        return "missing"
    flag = QualityFlag(store, job_id, worker, may_yield=store.quality.yields(job_id) < MAX_YIELDS)
    from lipsync.errors import Canceled

    try:
        with Renewer(f"measurement of {job_id}", keep_visible), Stopper(flag):
            state, note, metrics = measure(record, settings, flag)
    except SoftTimeLimitExceeded:
        state, note, metrics = "failed", "the measurement ran past its time limit", None
    except (_Stopped, Canceled):
        if flag.reason in ("canceled", ""):
            state, note, metrics = "skipped", "canceled", None
        else:
            back = retrying(
                lambda: store.quality.hand_back(job_id, holder),
                f"hand-back of the measurement of {job_id}",
            )
            if back == "pending":
                if flag.reason == "yield":
                    store.quality.count_yield(job_id)
                if send_again is not None:
                    send_again(job_id)
                log.info("measurement of %s handed back (%s)", job_id, flag.reason)
                return "handed_back"
            remove_job_files(settings, job_id)
            return back
    done = retrying(
        lambda: store.quality.finish(job_id, holder, state, note, metrics),
        f"end of the measurement of {job_id}",
    )
    remove_job_files(settings, job_id)
    log.info("measurement of %s %s", job_id, done)
    return done


class _Stopped(Exception):
    """The measurement was stopped (cancel, drain or yield: see :attr:`QualityFlag.reason`)."""


def measure(
    record: JobRecord, settings: Settings, should_cancel: QualityFlag
) -> tuple[str, str | None, dict[str, Any] | None]:
    """(state, note, metrics) of the job's result: ``ready`` with ``lipsync evaluate``'s
    numbers, or ``failed`` and why (a measurement problem never fails the job). Raises
    :class:`_Stopped` within ``POLL_S`` of ``should_cancel`` turning true: the measurement
    runs in a child process (:mod:`worker.evaluate_child`), killed then."""
    paths = job_paths(settings, record.id)
    inputs = _inputs(record, settings)
    if inputs is None:
        return "failed", "the job's inputs are gone", None
    video, audio = inputs
    paths.work.mkdir(parents=True, exist_ok=True)
    out = paths.work / "quality.json"
    out.unlink(missing_ok=True)
    (paths.work / STARTED).unlink(missing_ok=True)
    limits = settings.media_limits
    args = {
        "result": str(paths.result),
        "audio": str(audio),
        "source": str(video),
        "models_dir": str(settings.models_dir),
        "out": str(out),
        "started": str(paths.work / STARTED),
        "limits": {
            "max_width": limits.max_width,
            "max_height": limits.max_height,
            "max_duration_s": limits.max_duration_s,
            "max_streams": limits.max_streams,
            "max_file_bytes": limits.max_file_bytes,
            "probe_timeout_s": limits.probe_timeout_s,
        },
    }
    code = _run_child(args, should_cancel)
    try:
        answer = json.loads(out.read_text())
    except (OSError, ValueError):
        log.warning("the measurement of %s ended (exit %s) without an answer", record.id, code)
        return "failed", f"evaluation failed (exit status {code})", None
    finally:
        shutil.rmtree(paths.work, ignore_errors=True)
    if "metrics" in answer:
        return "ready", None, dict(answer["metrics"])
    error = answer.get("error") or {}
    if error.get("code") == "internal_error":
        return "failed", f"evaluation failed ({error.get('message')})", None
    message = str(error.get("message") or "evaluation failed")
    return "failed", public_message(message, settings, user_names(record)), None


POLL_S = 0.1


def _run_child(args: dict[str, Any], should_cancel: QualityFlag) -> int | None:
    """Run the measurement child to its end; kill it (and raise :class:`_Stopped`) when
    ``should_cancel`` turns true, or when anything (the soft time limit) interrupts."""
    root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.evaluate_child", json.dumps(args)],
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=root,
    )
    try:
        while True:
            try:
                return proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            if should_cancel():
                raise _Stopped(should_cancel.reason)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _inputs(record: JobRecord, settings: Settings) -> tuple[Path, Path] | None:
    raw = record.raw_inputs or json.dumps({"video": record.video, "audio": record.audio})
    data = json.loads(raw)
    video = settings.data_dir / str(data.get("video") or "")
    audio = settings.data_dir / str(data.get("audio") or "")
    if not (data.get("video") and data.get("audio") and video.is_file() and audio.is_file()):
        return None
    return video, audio
