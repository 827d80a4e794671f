"""Helpers for the worker tests: lay out a job the way push does."""

from __future__ import annotations

import shutil
import time
import uuid
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
