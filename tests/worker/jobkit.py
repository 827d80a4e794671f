"""Helpers for the worker tests: lay out a job the way push does, wait for its record."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.jobs import JobRecord, JobStore
from service.settings import Settings


def make_job(
    settings: Settings,
    store: JobStore,
    video: Path,
    audio: Path,
    options: dict[str, Any] | None = None,
    owner: str = "public",
) -> str:
    """Lay out uploads the way push does and write the queued record."""
    job_id = uuid.uuid4().hex
    dest = settings.uploads_dir / job_id
    dest.mkdir(parents=True)
    shutil.copy(video, dest / f"video{video.suffix}")
    shutil.copy(audio, dest / f"audio{audio.suffix}")
    store.jobs.create(
        JobRecord(
            id=job_id,
            owner=owner,
            state="queued",
            created_at=time.time(),
            audio=f"uploads/{job_id}/audio{audio.suffix}",
            video=f"uploads/{job_id}/video{video.suffix}",
            options=options or {},
        )
    )
    return job_id


def wait_job(
    store: JobStore, job_id: str, pred: Callable[[JobRecord], bool], timeout: float = 120.0
) -> None:
    """Poll the job's record until ``pred`` holds for it; AssertionError (with the last
    record) when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.jobs.get(job_id)
        if job is not None and pred(job):
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id}: condition not met; last {store.jobs.get(job_id)}")
