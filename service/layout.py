"""Where a job's files live under the shared data directory.

``uploads/<id>/`` holds the pushed files, ``work/<id>/`` the worker's scratch space (the
partial output and the pipeline's temp files), ``results/<id>.mp4`` the finished video.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings


def result_name(job_id: str) -> str:
    """The finished video's file name (what ``/download`` serves)."""
    return f"{job_id}.mp4"


@dataclass(frozen=True)
class JobPaths:
    uploads: Path
    work: Path
    result: Path


def job_paths(settings: Settings, job_id: str) -> JobPaths:
    return JobPaths(
        uploads=settings.uploads_dir / job_id,
        work=settings.work_dir / job_id,
        result=settings.results_dir / result_name(job_id),
    )


def remove_job_files(settings: Settings, job_id: str, *, result: bool = False) -> None:
    """Delete a job's uploads and work dir (and its result when asked)."""
    paths = job_paths(settings, job_id)
    shutil.rmtree(paths.uploads, ignore_errors=True)
    shutil.rmtree(paths.work, ignore_errors=True)
    if result:
        paths.result.unlink(missing_ok=True)
