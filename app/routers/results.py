"""Results: download a finished job's MP4 (``/api/v1/lipsync/download``).

Only a result *name* that push/status handed out (``<task_id>.mp4``) or a task id is
accepted, never a path: the name must match a strict pattern, belong to one of the caller's
succeeded jobs, and resolve to a regular file directly inside the results directory (a
symlink is refused even when it points inside). Anything else is 404.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse

from app.deps import OwnerDep, SettingsDep, StoreDep
from app.errors import problem
from app.schemas import (
    COMMON_RESPONSES,
    DOWNLOAD_HEADERS,
    DOWNLOAD_RESPONSES,
    EXAMPLE_TASK_ID,
    download_media_type,
    route_responses,
)
from service.layout import result_name
from service.settings import Settings
from service.store import JobStore

router = APIRouter(prefix="/api/v1/lipsync", tags=["results"], responses=COMMON_RESPONSES)

_RESULT_NAME = re.compile(r"^([0-9a-f]{32})\.mp4$")
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")


def _not_found() -> HTTPException:
    return problem(404, "no such result", "not_found")


def resolve_result(
    settings: Settings, store: JobStore, owner: str, file_path: str | None, task_id: str | None
) -> Path:
    """The result file for the caller, or raises 404."""
    if (file_path is None) == (task_id is None):
        raise _not_found()
    if task_id is not None:
        if not _TASK_ID.fullmatch(task_id):
            raise _not_found()
        job_id = task_id
    else:
        match = _RESULT_NAME.fullmatch(file_path or "")
        if match is None:
            raise _not_found()
        job_id = match.group(1)
    job = store.get(job_id)
    if job is None or job.owner != owner or job.state != "succeeded" or not job.result:
        raise _not_found()
    name = result_name(job_id)
    if job.result.get("file") != name:
        raise _not_found()
    results = settings.results_dir.resolve()
    candidate = results / name
    try:
        info = os.lstat(candidate)
    except OSError:
        raise _not_found() from None
    if not stat.S_ISREG(info.st_mode) or candidate.resolve().parent != results:
        raise _not_found()
    return candidate


@router.get(
    "/download",
    response_class=FileResponse,
    responses=route_responses("not_found", ok=DOWNLOAD_RESPONSES),
    openapi_extra={"parameters": DOWNLOAD_HEADERS},
)
def download(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    owner: OwnerDep,
    file_path: Annotated[
        str | None,
        Query(
            description="the result name status returned, e.g. <task_id>.mp4",
            examples=[f"{EXAMPLE_TASK_ID}.mp4"],
        ),
    ] = None,
    task_id: Annotated[
        str | None, Query(description="or the task id", examples=[EXAMPLE_TASK_ID])
    ] = None,
) -> FileResponse:
    """Download a finished job's MP4 by result name or task id."""
    path = resolve_result(settings, store, owner, file_path, task_id)
    return FileResponse(
        path,
        media_type=download_media_type(request.headers.get("accept")),
        filename=path.name,
        content_disposition_type="attachment",
        headers={"Cache-Control": "private, max-age=3600"},
    )
