"""A job's life in the worker against a real Redis and the real pipeline (no broker needed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from service.jobs import JobRecord, JobStore
from service.settings import Settings
from tests import media_factory as mf
from tests.worker.jobkit import make_job
from worker.jobs import run_job
from worker.progress import CancelFlag, ProgressReporter
from worker.quality import run_quality


def _leftovers(settings: Settings, job_id: str) -> list[Path]:
    return [p for p in (settings.uploads_dir / job_id, settings.work_dir / job_id) if p.exists()]


def test_success_then_redelivery_does_not_run_again(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech"])
    assert run_job(job_id, settings, store, worker="w1") == "succeeded"
    job = store.jobs.get(job_id)
    assert job is not None and job.state == "succeeded" and job.attempts == 1
    assert job.result is not None and job.result["file"] == f"{job_id}.mp4"
    # the result first: its measurement is pending, its own task, and keeps the inputs
    assert job.quality is not None and job.quality.state == "pending"
    assert _leftovers(settings, job_id) == [settings.uploads_dir / job_id]
    assert run_quality(job_id, settings, store, worker="w1") == "ready"
    job = store.jobs.get(job_id)
    assert job is not None and job.quality is not None and job.quality.metrics is not None
    assert job.quality.metrics["face_found_rate"] > 0.95  # measured by lipsync evaluate
    result = settings.results_dir / f"{job_id}.mp4"
    stamp = result.stat().st_mtime_ns
    assert _leftovers(settings, job_id) == []
    # a redelivered measurement is not run again either
    assert run_quality(job_id, settings, store, worker="w2") == "ready"

    # the broker delivers the same message again (e.g. a lost ack): nothing is redone
    assert run_job(job_id, settings, store, worker="w2") == "succeeded"
    assert result.stat().st_mtime_ns == stamp
    assert store.jobs.get(job_id).attempts == 1  # type: ignore[union-attr]
    assert sorted(p.name for p in settings.results_dir.iterdir()) == [f"{job_id}.mp4"]


def test_rerun_after_a_lost_worker_replaces_partial_output(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech"])
    # first attempt: claimed, wrote half a file, then its worker died
    assert store.leases.claim(job_id, settings.max_attempts, "dead-worker") == "run"
    work = settings.work_dir / job_id
    work.mkdir(parents=True)
    (work / f"{job_id}.part.mp4").write_bytes(b"\0" * 1000)
    (work / "tmp").mkdir()
    (work / "tmp" / "frames.raw").write_bytes(b"\0" * 1000)

    assert run_job(job_id, settings, store, worker="w2") == "succeeded"
    job = store.jobs.get(job_id)
    assert job is not None and job.attempts == 2 and job.worker == "w2"
    assert _leftovers(settings, job_id) == [settings.uploads_dir / job_id]  # to be measured
    assert [p.name for p in settings.results_dir.iterdir()] == [f"{job_id}.mp4"]
    import av

    with av.open(str(settings.results_dir / f"{job_id}.mp4")) as c:
        assert c.streams.video[0].frames > 0


def test_worker_lost_too_often_fails_the_job(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech"])
    for _ in range(settings.max_attempts):
        assert store.leases.claim(job_id, settings.max_attempts, "crashy") == "run"
    assert run_job(job_id, settings, store) == "exhausted"
    job = store.jobs.get(job_id)
    assert job is not None and job.state == "failed"
    assert job.error is not None and job.error["code"] == "worker_lost"
    assert _leftovers(settings, job_id) == []


def test_canceled_job_never_runs(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech"])
    assert store.jobs.request_cancel(job_id) == "canceled"
    assert run_job(job_id, settings, store) == "canceled"
    job = store.jobs.get(job_id)
    assert job is not None and job.state == "canceled"
    assert job.started_at is None and job.attempts == 0
    assert _leftovers(settings, job_id) == []
    assert not (settings.results_dir / f"{job_id}.mp4").exists()
    assert store.stats.queue_depth() == 0


def _cancel_when(
    settings: Settings,
    store: JobStore,
    job_id: str,
    reached: Callable[[JobRecord], bool],
    join_s: float,
) -> JobRecord:
    """Run the job on a thread, ask to cancel it once ``reached`` holds for its record, and
    check that it ends canceled with nothing left behind; returns the final record."""
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(run_job(job_id, settings, store)))
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = store.jobs.get(job_id)
        if job is not None and reached(job):
            break
        time.sleep(0.02)
    assert store.jobs.request_cancel(job_id) == "canceling"
    thread.join(timeout=join_s)
    assert not thread.is_alive()
    assert outcome == ["canceled"]
    job = store.jobs.get(job_id)
    assert job is not None and job.state == "canceled"
    assert _leftovers(settings, job_id) == []
    assert not (settings.results_dir / f"{job_id}.mp4").exists()
    return job


def test_cancel_while_running_stops_between_batches(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech_long"])
    job = _cancel_when(
        settings, store, job_id, lambda j: j.state == "running" and j.progress >= 0.5, 15
    )
    assert job.progress < 1.0


def test_invalid_options_fail_with_a_typed_error(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech"], {"fps": 500})
    assert run_job(job_id, settings, store) == "failed"
    job = store.jobs.get(job_id)
    assert job is not None and job.error == {
        "code": "invalid_option",
        "message": "fps must be between 1 and 120",
    }


def test_progress_and_cancel_helpers(settings: Settings, store: JobStore) -> None:
    # progress never resurrects a missing (expired) record and never goes backwards
    ProgressReporter(store, "0" * 32)("render", 0.5)
    assert not store.jobs.exists("0" * 32)
    job_id = "1" * 32
    from service.jobs import JobRecord

    store.jobs.create(JobRecord(id=job_id, owner="o", state="queued", created_at=time.time()))
    assert store.leases.claim(job_id, 3, "w") == "run"
    report = ProgressReporter(store, job_id, min_interval_s=0)
    report("render", 0.6)
    report("render", 0.4)
    job = store.jobs.get(job_id)
    assert job is not None and job.progress == 0.6 and job.stage == "render"
    flag = CancelFlag(store, job_id, min_interval_s=0)
    assert flag() is False
    assert store.jobs.request_cancel(job_id) == "canceling"
    assert flag() is True


def test_result_carries_evaluate_numbers_unless_switched_off(
    settings: Settings, store: JobStore, media: dict[str, Path], tmp_path: Path
) -> None:
    job_id = make_job(settings, store, media["astronaut"], media["speech_long"])
    assert run_job(job_id, settings, store) == "succeeded"
    assert run_quality(job_id, settings, store) == "ready"
    job = store.jobs.get(job_id)
    assert job is not None and job.quality is not None
    quality = job.quality.metrics
    assert quality is not None
    # A still: the default engine fell back to the viseme warp, driven by this speech: no
    # offset, a clear score.
    assert quality["face_found_rate"] > 0.95
    assert abs(quality["sync_offset_frames"]) <= 1
    assert quality["sync_score"] > 0.5 and quality["sync_confidence"] > 0.1
    assert quality["pause_frames"] >= 0 and quality["seconds"] > 0
    # No input video to compare with: no articulation or sharpness ratio, but the keys are there.
    assert quality["articulation_ratio"] is None and quality["sharpness_ratio"] is None

    # A video input is the reference: the viseme engine opens the closed mouth of this
    # (silent) moving photo to the speech, so the output's speech-time opening is well above
    # the input's, and its mouth is still a real, textured one.
    video = mf.write_video(tmp_path / "moving.mp4", mf.moving_portrait_frames(50))
    job_id = make_job(settings, store, video, media["speech"], {"engine": "viseme"})
    assert run_job(job_id, settings, store) == "succeeded"
    assert run_quality(job_id, settings, store) == "ready"
    job = store.jobs.get(job_id)
    assert job is not None and job.quality is not None
    moving = job.quality.metrics
    assert moving is not None
    assert set(moving) == set(quality)
    # (1.05: the default face mesh reads this photo's shut mouth as shut and the engine opens
    # it about as a speaker does: 1.17-1.25 on an Intel Xeon VM, 1.08 on an AMD EPYC one, where
    # the mesh's float arithmetic differs; dlib68's landmarks had it open wider, ~1.75)
    assert moving["articulation_ratio"] is not None and moving["articulation_ratio"] > 1.05
    assert moving["sharpness_ratio"] is not None and 0.3 < moving["sharpness_ratio"] < 3

    quiet = settings.model_copy(update={"evaluate_results": False})
    job_id = make_job(quiet, store, media["astronaut"], media["speech"])
    assert run_job(job_id, quiet, store) == "succeeded"
    job = store.jobs.get(job_id)
    assert job is not None and job.quality is not None and job.quality.state == "skipped"
    assert "LIPSYNC_EVALUATE_RESULTS" in (job.quality.note or "")
    assert _leftovers(settings, job_id) == []  # nothing to measure: the inputs went at once
    # off for one job (the push's evaluate=false)
    job_id = make_job(settings, store, media["astronaut"], media["speech"], {"evaluate": False})
    assert run_job(job_id, settings, store) == "succeeded"
    job = store.jobs.get(job_id)
    assert job is not None and job.quality is not None and job.quality.state == "skipped"
    assert job.quality.note == "evaluate=false"
    assert run_quality(job_id, settings, store) == "skipped"


def test_result_says_which_path_the_engine_took(
    settings: Settings, store: JobStore, media: dict[str, Path]
) -> None:
    """A still pushed with ``engine=retrieval``: no other mouths to re-use, so the viseme
    warp ran, and the result says so and why."""
    quiet = settings.model_copy(update={"evaluate_results": False})
    job_id = make_job(quiet, store, media["astronaut"], media["speech"], {"engine": "retrieval"})
    assert run_job(job_id, quiet, store) == "succeeded"
    job = store.jobs.get(job_id)
    assert job is not None and job.result is not None
    assert job.result["engine"] == "retrieval"
    assert job.result["engine_path"] == "viseme"
    assert "still image" in job.result["engine_note"]
    # nothing in front of the astronaut's mouth: no frame cut around an object, and the
    # service's result says so as the CLI's --json does (the key, with a count)
    assert job.result["occluded_frames"] == 0
    assert job.result["frames_kept_original"]["count"] == 0
