"""Running one job: claim it, call :func:`lipsync.run`, publish the outcome.

Plain functions (the Celery task in :mod:`worker.tasks` is a thin wrapper), so the whole
life of a job can be exercised against a real Redis without a broker. The pipeline is
imported only inside :func:`run_job`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from app.settings import Settings
from app.store import JobRecord, JobState, JobStore

if TYPE_CHECKING:
    from lipsync.engines import EngineCache
    from lipsync.options import RunOptions

log = logging.getLogger("lipsync.worker")

_ENGINES: EngineCache | None = None
_T = TypeVar("_T")

# A running job's lease: taken when it is claimed, renewed while it runs, dropped when it
# ends. A job that is "running" without one has lost its runner and is run again.
LEASE_S = 30.0
LEASE_RENEW_S = 5.0
# How long a final state is retried while Redis is unreachable (e.g. restarting).
PUBLISH_RETRY_S = 60.0


def engine_cache() -> EngineCache:
    """The per-process engine cache: models load once per worker process, not once per job."""
    global _ENGINES
    if _ENGINES is None:
        from lipsync.engines import EngineCache

        _ENGINES = EngineCache()
    return _ENGINES


def result_name(job_id: str) -> str:
    return f"{job_id}.mp4"


def job_paths(settings: Settings, job_id: str) -> dict[str, Path]:
    return {
        "uploads": settings.uploads_dir / job_id,
        "work": settings.work_dir / job_id,
        "result": settings.results_dir / result_name(job_id),
    }


def remove_job_files(settings: Settings, job_id: str, *, result: bool = False) -> None:
    """Delete a job's uploads and work dir (and its result when asked)."""
    paths = job_paths(settings, job_id)
    shutil.rmtree(paths["uploads"], ignore_errors=True)
    shutil.rmtree(paths["work"], ignore_errors=True)
    if result:
        paths["result"].unlink(missing_ok=True)


def _process_start(pid: int | str) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None if it is gone or a
    zombie: with the pid it names one process even after the pid is reused (a restarted
    container numbers its processes from 1 again)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[:1] == ["Z"] else fields[19]


def lease_holder() -> str:
    """This process as a lease holder: ``host:pid:start``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def holder_is_dead(holder: str) -> bool:
    """True when ``holder`` is a process on this host that no longer runs (or a zombie)."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        return _process_start(parts[1]) != parts[2]
    except OSError:  # no /proc: cannot tell, so the lease must lapse
        return False


class LeaseKeeper:
    """Renews a running job's lease from a thread, so the lease lapses only if we die."""

    def __init__(self, store: JobStore, job_id: str, holder: str) -> None:
        self.store, self.job_id, self.holder = store, job_id, holder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lipsync-lease", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            try:
                self.store.renew_lease(self.job_id, self.holder, LEASE_S)
            except Exception:
                log.warning("lease renewal for %s failed", self.job_id, exc_info=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _retrying(call: Callable[[], _T], what: str, budget_s: float = PUBLISH_RETRY_S) -> _T:
    """``call()``, retried while Redis is unreachable (a restart), for at most ``budget_s``."""
    deadline = time.monotonic() + budget_s
    delay = 0.2
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: Redis unreachable, retrying in %.1f s", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def public_message(message: str, settings: Settings) -> str:
    """An error message fit for clients: paths inside the data dir (FFmpeg quotes the file
    it failed on) are cut down to the file's name, so server paths never leak."""
    roots = {str(settings.data_dir), str(settings.data_dir.resolve())}
    for root in sorted(roots, key=len, reverse=True):
        tail = r"/(?:[^\s'\"/]+/)*([^\s'\"/]+)"
        message = re.sub(r"(?<![\w.-])" + re.escape(root) + tail, r"\1", message)
    return message


def build_run_options(options: dict[str, Any], settings: Settings) -> RunOptions:
    """The validated push options plus the worker's own settings -> :class:`RunOptions`."""
    from lipsync.options import RunOptions

    enhancer = str(options.get("enhancer") or settings.default_enhancer)
    if enhancer.startswith("onnx:") and "/" not in enhancer:  # a bare name: a file in models/
        enhancer = f"onnx:{settings.models_dir / enhancer.removeprefix('onnx:')}"
    kwargs: dict[str, Any] = {
        "engine": options.get("engine") or settings.default_engine,
        "enhancer": enhancer,
        "device": settings.device,
        "models_dir": settings.models_dir,
        "limits": settings.media_limits,
    }
    if options.get("sync_mode"):
        kwargs["sync_mode"] = options["sync_mode"]
    if options.get("detector"):
        kwargs["detector"] = options["detector"]
    if options.get("fps") is not None:
        kwargs["fps"] = float(options["fps"])
    if options.get("pads") is not None:
        kwargs["pads"] = tuple(int(p) for p in options["pads"])
    if options.get("face_index") is not None:
        kwargs["face_index"] = int(options["face_index"])
    if options.get("face_point") is not None:
        x, y = options["face_point"]
        kwargs["face_point"] = (int(x), int(y))
    # The service's output cap applies to every job; a push's max_size can only lower it.
    caps = [int(c) for c in (settings.max_output_size, options.get("max_size")) if c is not None]
    if caps:
        kwargs["max_size"] = min(caps)
    return RunOptions(**kwargs)


class ProgressReporter:
    """``progress(stage, fraction)`` for :func:`lipsync.run`, throttled Redis writes."""

    def __init__(
        self, store: JobStore, job_id: str, min_interval_s: float = 0.25, scale: float = 1.0
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.min_interval_s = min_interval_s
        self.scale = scale  # the pipeline's 0..1 maps to 0..scale (the rest: evaluation)
        self._stage = ""
        self._last = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last < self.min_interval_s and fraction < 1.0:
            return
        self._stage, self._last = stage, now
        try:
            value = self.scale * max(0.0, min(1.0, float(fraction)))
            self.store.set_progress(self.job_id, stage, value)
        except Exception:  # a progress hiccup must not fail the job
            log.warning("progress update for %s failed", self.job_id, exc_info=True)


class CancelFlag:
    """``should_cancel()`` for :func:`lipsync.run`: polls the job's Redis cancel flag."""

    def __init__(self, store: JobStore, job_id: str, min_interval_s: float = 0.2) -> None:
        self.store = store
        self.job_id = job_id
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._canceled = False

    def __call__(self) -> bool:
        if self._canceled:
            return True
        now = time.monotonic()
        if now - self._last >= self.min_interval_s:
            self._last = now
            try:
                self._canceled = self.store.cancel_requested(self.job_id)
            except Exception:
                log.warning("cancel check for %s failed", self.job_id, exc_info=True)
        return self._canceled


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


def _result_payload(job_id: str, result: Any) -> dict[str, Any]:
    info = result.engine_info
    return {
        "file": result_name(job_id),
        "duration_s": round(float(result.duration_s), 3),
        "frames": int(result.frames),
        "no_face_frames": int(result.no_face_frames),
        "width": int(result.width),
        "height": int(result.height),
        "fps": float(result.fps),
        "engine": str(result.engine),
        # Engines with more than one way to draw (retrieval: the person's own mouths, or
        # the viseme warp for stills and videos with too little mouth variety) say which ran.
        "engine_path": str(info["path"]) if "path" in info else None,
        "engine_note": str(info["reason"]) if "reason" in info else None,
        "timings": {k: round(float(v), 3) for k, v in result.timings.items()},
    }


EVALUATE_SHARE = 0.9  # of the job's progress bar: the pipeline; the rest is the evaluation


def _quality(
    video: Path, audio: Path, settings: Settings, source: Path | None = None
) -> dict[str, Any]:
    """``lipsync evaluate``'s numbers for a finished output (``quality``), or why there are
    none (``quality_note``): a measurement problem never fails the job. Running past the
    job's time limit does: the limit is the whole job's budget, evaluation included.

    ``source`` is the job's input: when it is a video (not a still) it is the reference, for
    the articulation and mouth sharpness ratios (None for stills)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from lipsync.errors import LipsyncError
    from lipsync.evaluate import evaluate
    from lipsync.media.probe import probe

    t0 = time.monotonic()
    reference = None
    if source is not None:
        try:
            if not probe(source, settings.media_limits, kind="video").is_image:
                reference = source
        except LipsyncError:  # measured without the input, then
            log.warning("probing %s for the evaluation failed", source.name, exc_info=True)
    try:
        report = evaluate(
            video, audio, reference=reference, models_dir=settings.models_dir, visemes=False
        )
    except SoftTimeLimitExceeded:
        raise
    except LipsyncError as exc:
        return {"quality": None, "quality_note": public_message(exc.message, settings)}
    except Exception as exc:
        log.warning("evaluating %s failed", video.name, exc_info=True)
        return {"quality": None, "quality_note": f"evaluation failed ({type(exc).__name__})"}
    cal = report.sync.calibrated
    ref = report.reference_metrics
    return {
        "quality": {
            "face_found_rate": report.face_found_rate,
            "sync_offset_frames": None if cal is None else cal.offset_frames,
            "sync_offset_ms": None if cal is None else cal.offset_ms,
            "sync_score": None if cal is None else cal.score,
            "sync_confidence": None if cal is None else cal.confidence,
            "envelope_r_at_zero": report.sync.r_at_zero,
            "pause_frames": report.pauses.pause_frames,
            "pause_closed_share": report.pauses.closed_share,
            "lse_d": None if report.lse is None else report.lse.lse_d,
            "lse_c": None if report.lse is None else report.lse.lse_c,
            "lse_note": report.lse_note,
            # With a video input: the output's speech-time opening and lip-box sharpness
            # over the input's own (None for stills, or with too few frames).
            "articulation_ratio": None if ref is None else ref.articulation_ratio,
            "sharpness_ratio": None if ref is None else ref.sharpness_ratio,
            "seconds": round(time.monotonic() - t0, 3),
        }
    }


def run_job(job_id: str, settings: Settings, store: JobStore, worker: str = "") -> str:
    """Run one job to an end state; returns what happened (``succeeded``, ``canceled``...).

    Safe on redelivery: a finished or canceled job is not run again, and a re-run after a
    crash starts from a clean work dir and replaces the result atomically.
    """
    holder = lease_holder()

    def claim() -> str:
        return _retrying(
            lambda: store.claim(job_id, settings.max_attempts, worker, holder, LEASE_S),
            f"claim of job {job_id}",
        )

    outcome = claim()
    if outcome == "busy":  # a redelivered copy: is the runner alive, or did it just die here?
        current = store.lease_holder(job_id)
        if current is not None and holder_is_dead(current) and store.break_lease(job_id, current):
            outcome = claim()
    if outcome != "run":
        log.info("job %s not run: %s", job_id, outcome)
        if outcome in ("canceled", "exhausted", "missing"):
            remove_job_files(settings, job_id)
        return outcome
    record = store.get(job_id)
    if record is None:  # expired between claim and read
        remove_job_files(settings, job_id)
        return "missing"
    return _execute(record, settings, store, holder)


def _execute(record: JobRecord, settings: Settings, store: JobStore, holder: str) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    from lipsync.errors import Canceled, LipsyncError

    job_id = record.id
    paths = job_paths(settings, job_id)
    work = paths["work"]
    shutil.rmtree(work, ignore_errors=True)  # leftovers of an attempt whose worker was lost
    work.mkdir(parents=True, exist_ok=True)
    paths["result"].parent.mkdir(parents=True, exist_ok=True)
    partial = work / f"{job_id}.part.mp4"
    state: JobState = "failed"
    fields: dict[str, Any] = {"stage": "failed"}
    timings: dict[str, float] = {}
    try:
        import lipsync

        options = build_run_options(record.options, settings)
        progress = ProgressReporter(
            store, job_id, scale=EVALUATE_SHARE if settings.evaluate_results else 1.0
        )
        cancel = CancelFlag(store, job_id)
        with LeaseKeeper(store, job_id, holder), job_tempdir(work / "tmp"):
            result = lipsync.run(
                settings.data_dir / record.video,
                settings.data_dir / record.audio,
                partial,
                options,
                progress=progress,
                should_cancel=cancel,
                engines=engine_cache(),
            )
            if not partial.is_file() or partial.stat().st_size == 0:
                raise RuntimeError("the pipeline reported success but wrote no output")
            payload = _result_payload(job_id, result)
            if settings.evaluate_results:
                progress.scale = 1.0
                progress("evaluate", EVALUATE_SHARE)
                payload.update(
                    _quality(
                        partial,
                        settings.data_dir / record.audio,
                        settings,
                        settings.data_dir / record.video,
                    )
                )
        # The pipeline checks between batches; a cancel that came after its last check (in
        # the evaluation, say) is honoured here, before the result is published.
        if cancel():
            raise Canceled("the job was canceled")
        os.replace(partial, paths["result"])  # atomic: same volume, never a half file
        state = "succeeded"
        fields = {"progress": "1.0", "stage": "done", "result": payload}
        timings = dict(result.timings)
    except Canceled:
        state, fields = "canceled", {"stage": "canceled"}
    except LipsyncError as exc:
        fields["error"] = {"code": exc.code, "message": public_message(exc.message, settings)}
    except SoftTimeLimitExceeded:
        message = f"the job ran past its time limit ({settings.soft_time_limit_s}s)"
        fields["error"] = {"code": "timeout", "message": message}
    except Exception as exc:
        log.exception("job %s failed with an unexpected error", job_id)
        fields["error"] = {
            "code": "internal_error",
            "message": f"internal error ({type(exc).__name__})",
        }
    recorded = False
    try:
        _retrying(lambda: store.finish(job_id, state, **fields), f"final state of job {job_id}")
        recorded = True
    finally:
        if recorded:  # uploads and work dir; the result stays
            remove_job_files(settings, job_id)
        else:  # keep the uploads: the job runs again once its lease lapses
            shutil.rmtree(work, ignore_errors=True)
    if timings:
        try:
            store.record_stage_seconds(timings)
        except redis.RedisError:
            log.warning("stage timings of %s not recorded", job_id, exc_info=True)
    log.info("job %s %s", job_id, state)
    return state
