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
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import Headers
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from app.deps import OwnerDep, SettingsDep, StoreDep
from app.errors import problem
from app.schemas import (
    COMMON_RESPONSES,
    DOWNLOAD_HEADERS,
    DOWNLOAD_RESPONSES,
    EXAMPLE_TASK_ID,
    download_media_type,
    header,
    route_responses,
)
from service.jobs import JobStore
from service.layout import result_name
from service.settings import Settings

router = APIRouter(prefix="/api/v1/lipsync", tags=["results"], responses=COMMON_RESPONSES)

_RESULT_NAME = re.compile(r"^([0-9a-f]{32})\.mp4$")
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")


def _not_found() -> HTTPException:
    return problem(404, "no such result", "not_found")


class ResultFile(FileResponse):
    """The MP4 with byte ranges as HTTP says (RFC 9110 section 14): a Range header that
    cannot be parsed or is invalid (``bytes=100-0``) is ignored (200, the whole file), one
    that no byte of the file satisfies is 416 in the error envelope with ``Content-Range:
    bytes */<size>``."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # ignored: the whole file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http_range = Headers(scope=scope).get("range")
        if http_range is not None and self.stat_result is not None:
            size = self.stat_result.st_size
            try:
                self._parse_range_header(http_range, size)
            except RangeNotSatisfiable:
                detail = {
                    "code": "range_not_satisfiable",
                    "message": f"no byte of the range is in the file ({size} bytes)",
                }
                headers = {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}
                answer = JSONResponse({"detail": detail}, status_code=416, headers=headers)
                await answer(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


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
    job = store.jobs.get(job_id)
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


def _download_responses() -> dict[int | str, dict[str, Any]]:
    """The download's answers: the file's (DOWNLOAD_RESPONSES), the common errors, and the
    416 in the error envelope with the file's size in Content-Range (ResultFile)."""
    responses = route_responses("not_found", "range_not_satisfiable", ok=DOWNLOAD_RESPONSES)
    responses[416] = {
        **responses[416],
        "headers": {
            "Content-Range": header(
                "`bytes */<size>`", {"type": "string", "pattern": r"^bytes \*/[0-9]+$"}
            )
        },
    }
    return responses


@router.get(
    "/download",
    response_class=FileResponse,
    responses=_download_responses(),
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
) -> ResultFile:
    """Download a finished job's MP4 by result name or task id."""
    path = resolve_result(settings, store, owner, file_path, task_id)
    return ResultFile(
        path,
        stat_result=os.stat(path),
        media_type=download_media_type(request.headers.get("accept")),
        filename=path.name,
        content_disposition_type="attachment",
        headers={"Cache-Control": "private, max-age=3600"},
    )
