"""Running one job: claim it, call :func:`lipsync.run`, publish the outcome.

Plain functions (the Celery task in :mod:`worker.tasks` is a thin wrapper), so the whole
life of a job can be exercised against a real Redis without a broker. The pipeline is
imported only inside :func:`run_job`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service import jobs
from service.errors import public_message, user_names
from service.jobs import JobRecord, JobState, JobStore, StoreError
from service.layout import job_paths, remove_job_files, result_name
from service.options import build_run_options, wants_evaluation
from service.settings import Settings
from worker.lease import LEASE_S, holder_is_dead, lease_holder, lease_keeper, retrying
from worker.progress import CancelFlag, Drained, ProgressReporter
from worker.stopper import Stopper

if TYPE_CHECKING:
    from lipsync.engines import EngineCache
    from lipsync.types import Result

log = logging.getLogger("lipsync.worker")

_ENGINES: EngineCache | None = None


def engine_cache() -> EngineCache:
    """The per-process engine cache: models load once per worker process, not once per job."""
    global _ENGINES
    if _ENGINES is None:
        from lipsync.engines import EngineCache

        _ENGINES = EngineCache()
    return _ENGINES


@contextmanager
def job_tempdir(path: Path) -> Iterator[Path]:
    """Point ``tempfile`` (and child processes, via TMPDIR) at the job's work dir.

    One job runs per worker process, so whatever the pipeline writes through ``tempfile``
    lands in the job's own directory and is removed with it when the job ends or is canceled.
    """
    path.mkdir(parents=True, exist_ok=True)
    old_tempdir, old_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(path)
    os.environ["TMPDIR"] = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env


def _result_payload(job_id: str, result: Result) -> dict[str, Any]:
    report = result.engine_report
    return {
        "file": result_name(job_id),
        "duration_s": round(float(result.duration_s), 3),
        "frames": int(result.frames),
        "no_face_frames": int(result.no_face_frames),
        "width": int(result.width),
        "height": int(result.height),
        "fps": float(result.fps),
        "engine": str(result.engine),
        # Which way the engine drew (retrieval: the person's own mouths, or the viseme warp
        # for stills and videos with too little mouth variety) and why.
        "engine_path": report.path if report else None,
        "engine_note": report.reason if report else None,
        "timings": {k: round(float(v), 3) for k, v in result.timings.items()},
        # Edited footage: the shots, the face chosen in each, the people and how each was
        # drawn, and the frames left as they were (their face could not be trusted).
        "shots": result.shots,
        "shot_faces": result.shot_faces,
        "people": result.people,
        "frames_kept_original": result.frames_kept_original,
        # Frames whose new mouth was cut around something in front of the face.
        "occluded_frames": int(result.occluded_frames),
    }


def run_job(
    job_id: str,
    settings: Settings,
    store: JobStore,
    worker: str = "",
    keep_visible: Callable[[], object] | None = None,
) -> str:
    """Run one job to an end state; returns what happened (``succeeded``, ``canceled``...).

    Safe on redelivery: a finished or canceled job is not run again, a copy delivered while
    its runner lives is ``busy``, and a re-run after a lost runner starts from a clean work
    dir and replaces the result atomically. ``keep_visible()``, called with each renewal of
    the job's lease, keeps the broker from delivering its message again while it runs.

    When worker node ``worker`` is being stopped (its drain mark in Redis, set by
    :mod:`worker.tasks` at shutdown), the job is not started, or stops at the pipeline's
    next check and goes back to ``queued`` with its attempt given back (returns
    ``handed_back``: the caller puts its message back on the queue).
    """
    holder = lease_holder()
    if store.workers.is_draining(worker):  # delivered while it stops: leave it to the next
        log.info("job %s not started: worker %s is stopping", job_id, worker)
        return "handed_back"

    def claim() -> str:
        return retrying(
            lambda: store.leases.claim(
                job_id, settings.max_attempts, worker, holder, LEASE_S, settings.soft_time_limit_s
            ),
            f"claim of job {job_id}",
        )

    outcome = claim()
    if outcome == "busy":  # a redelivered copy: is the runner alive, or did it just die here?
        current = store.leases.holder(job_id)
        if current and holder_is_dead(current) and store.leases.break_dead(job_id, current):
            outcome = claim()
    if outcome != "run":
        log.info("job %s not run: %s", job_id, outcome)
        if outcome in ("canceled", "exhausted", "missing", "timeout"):
            remove_job_files(settings, job_id)
        return outcome
    record = store.jobs.get(job_id)
    if record is None:  # expired between claim and read
        remove_job_files(settings, job_id)
        return "missing"
    return _execute(record, Runner(settings, store, holder, worker, keep_visible))


@dataclass(frozen=True)
class Runner:
    """Who runs a claimed job: its settings and store, the lease holder, the worker node,
    and how its broker message is kept from being delivered again while it runs."""

    settings: Settings
    store: JobStore
    holder: str
    worker: str = ""
    keep_visible: Callable[[], object] | None = None


def _render(
    record: JobRecord, run: Runner, partial: Path
) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """Run the pipeline into ``partial``; the result payload, the seconds per stage and
    the inputs it ran on (relative to the data dir: the quality task measures against them).
    Raises what the pipeline raises, and :class:`Drained` when the worker is being stopped.

    Every stage (fetch, probe, analysis, render, encode) stops within a second of a
    terminate, a DELETE or an operator's stop: at its next check, or by the
    :class:`~worker.stopper.Stopper`. The result is not measured here: that is the job's
    quality task, after the result is published (:mod:`worker.quality`)."""
    settings, store, worker = run.settings, run.store, run.worker
    import lipsync
    from lipsync.errors import Canceled
    from worker.fetch import FETCH_SHARE, fetch_extra_audio, fetch_inputs

    job_id = record.id
    options = build_run_options(record.options, settings)
    fetches = bool(
        record.video_url or record.audio_url or any(e.get("url") for e in record.extra_audio)
    )
    progress = ProgressReporter(store, job_id, scale=FETCH_SHARE if fetches else 1.0)
    cancel = CancelFlag(store, job_id, worker=worker)
    with (
        lease_keeper(store, job_id, run.holder, run.keep_visible),
        job_tempdir(partial.parent / "tmp"),
    ):
        try:
            with Stopper(cancel):
                # URL inputs are fetched first (stage "fetching", worker/fetch.py)
                video, audio = fetch_inputs(record, settings, progress, cancel)
                more = fetch_extra_audio(record, settings, progress, cancel)
                if fetches:  # the pipeline's bar follows the fetch's share
                    progress.offset, progress.scale = FETCH_SHARE, 1.0 - FETCH_SHARE
                result = lipsync.run(
                    video,
                    [audio, *more] if more else audio,
                    partial,
                    options,
                    progress=progress,
                    should_cancel=cancel,
                    engines=engine_cache(),
                )
        except Exception as exc:
            # A stop lands as Canceled; a library step it interrupted may have wrapped it
            # in an error of its own (the encoder's flush: output_error). Still a stop.
            stopped = cancel.draining or cancel.cancel_requested()
            if not isinstance(exc, Canceled) and not (stopped and _caused_by(exc, Canceled)):
                raise
            if cancel.draining and not cancel.cancel_requested():
                raise Drained(f"worker {worker} is stopping") from None
            if isinstance(exc, Canceled):
                raise
            raise Canceled("the job was stopped") from exc
        if not partial.is_file() or partial.stat().st_size == 0:
            raise RuntimeError("the pipeline reported success but wrote no output")
        payload = _result_payload(job_id, result)
    # A cancel that came after the pipeline's last check is honoured here, before the
    # result is published. A stop that came that late is not: the result is published.
    if cancel.cancel_requested():
        raise Canceled("the job was canceled")
    inputs = {"video": _relative(video, settings), "audio": _relative(audio, settings)}
    return payload, dict(result.timings), inputs


def _relative(path: Path, settings: Settings) -> str:
    return str(path.relative_to(settings.data_dir))


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` is, or was raised while handling, a ``kind``: the soft time limit and
    a stop are exceptions raised wherever the job is, and a library may turn them into its
    own (an import interrupted by one ends as an ImportError, an encoder's flush as an
    output error)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, the soft time limit."""
    from celery.exceptions import SoftTimeLimitExceeded

    return _caused_by(exc, SoftTimeLimitExceeded)


def _outcome(record: JobRecord, run: Runner) -> tuple[JobState, dict[str, Any], dict[str, float]]:
    """Run the job; its end state, the fields to publish with it, and its stage timings
    (``queued``: the worker is being stopped, the job goes back to the queue)."""
    settings = run.settings
    from celery.exceptions import SoftTimeLimitExceeded

    from lipsync.errors import Canceled, LipsyncError

    paths = job_paths(settings, record.id)
    partial = paths.work / f"{record.id}.part.mp4"
    fields: dict[str, Any] = {"stage": "failed"}
    try:
        payload, timings, inputs = _render(record, run, partial)
        os.replace(partial, paths.result)  # atomic: same volume, never a half file
        done: dict[str, Any] = {"progress": "1.0", "stage": "done", "result": payload}
        measure, why_not = wants_evaluation(record.options, settings)
        if measure:
            done.update({"q_state": "pending", "q_inputs": inputs})
        else:
            done.update({"q_state": "skipped", "q_note": why_not})
        return "succeeded", done, timings
    except Canceled:
        return "canceled", {"stage": "canceled"}, {}
    except Drained:
        return "queued", {}, {}
    except SoftTimeLimitExceeded:
        message = f"the job ran past its time limit ({settings.soft_time_limit_s}s)"
        fields["error"] = {"code": "timeout", "message": message}
    except Exception as exc:
        if _timed_out(exc):
            message = f"the job ran past its time limit ({settings.soft_time_limit_s}s)"
            fields["error"] = {"code": "timeout", "message": message}
            return "failed", fields, {}
        if isinstance(exc, LipsyncError):
            message = public_message(exc.message, settings, user_names(record))
            fields["error"] = {"code": exc.code, "message": message}
            return "failed", fields, {}
        log.exception("job %s failed with an unexpected error", record.id)
        fields["error"] = {
            "code": "internal_error",
            "message": f"internal error ({type(exc).__name__})",
        }
    return "failed", fields, {}


def _hand_back(job_id: str, settings: Settings, store: JobStore, holder: str) -> str:
    """The worker is stopping: the job back to ``queued`` (attempt given back,
    :func:`service.jobs.hand_back`); its caller puts its message back on the queue."""
    outcome = retrying(
        lambda: jobs.hand_back(store, settings, job_id, holder), f"hand-back of job {job_id}"
    )
    if outcome == "handed_back":
        log.info("job %s handed back to the queue: its worker is stopping", job_id)
        return "handed_back"
    log.info("job %s not handed back: %s", job_id, outcome)
    return outcome


def _execute(record: JobRecord, run: Runner) -> str:
    settings, store = run.settings, run.store
    job_id = record.id
    paths = job_paths(settings, job_id)
    shutil.rmtree(paths.work, ignore_errors=True)  # leftovers of an attempt whose worker died
    paths.work.mkdir(parents=True, exist_ok=True)
    paths.result.parent.mkdir(parents=True, exist_ok=True)
    state, fields, timings = _outcome(record, run)
    if state == "queued":
        return _hand_back(job_id, settings, store, run.holder)
    recorded = False
    try:
        retrying(lambda: store.jobs.finish(job_id, state, **fields), f"final state of {job_id}")
        recorded = True
    finally:
        if recorded and fields.get("q_state") != "pending":  # uploads, work dir; not the result
            remove_job_files(settings, job_id)
        else:  # keep the uploads: the job runs again once its lease lapses, or is measured
            shutil.rmtree(paths.work, ignore_errors=True)
    if timings:
        try:
            store.stats.record_stage_seconds(timings)
        except StoreError:
            log.warning("stage timings of %s not recorded", job_id, exc_info=True)
    log.info("job %s %s", job_id, state)
    return state
