"""The caller's own jobs: list them, delete one (``/api/v1/lipsync/jobs``).

Listing reads the owner's index in Redis (``{prefix}:owner:{owner}``, job ids by creation
time), newest first, a page at a time; records that expired drop out of it. Deleting cancels
a running job, waits (``LIPSYNC_DELETE_WAIT_S`` at most) for its worker to stop, then removes
every Redis key of the job and its files: uploads, work dir and result.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.deps import OwnerDep, SettingsDep, StoreDep
from app.errors import problem
from app.routers.jobs import load_own_job
from app.schemas import (
    COMMON_RESPONSES,
    EXAMPLE_JOB_LIST,
    EXAMPLE_TASK_ID,
    JobList,
    JobStatus,
    json_example,
    route_responses,
)
from service import jobs

log = logging.getLogger("lipsync.api")

router = APIRouter(prefix="/api/v1/lipsync", tags=["jobs"], responses=COMMON_RESPONSES)

#: A page cursor: the creation time and id of the last job of the previous page. Any string
#: of this form is a valid cursor (it names a point in the list, not a stored object).
CURSOR_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,17})?-[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_LIST_PARAMS = frozenset({"state", "limit", "cursor"})


def encode_cursor(cursor: tuple[float, str] | None) -> str | None:
    if cursor is None:
        return None
    text = f"{cursor[0]!r}-{cursor[1]}"
    return text if _CURSOR.match(text) else f"{cursor[0]:.6f}-{cursor[1]}"


def decode_cursor(text: str | None) -> tuple[float, str] | None:
    if text is None:
        return None
    score, _, job_id = text.partition("-")
    return float(score), job_id


@router.get(
    "/jobs",
    response_model=JobList,
    responses=route_responses(ok={200: json_example(EXAMPLE_JOB_LIST)}),
)
async def list_jobs(
    request: Request,
    store: StoreDep,
    owner: OwnerDep,
    state: Annotated[
        Literal["queued", "running", "succeeded", "failed", "canceled"] | None,
        Query(description="only jobs in this state"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="jobs per page")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            max_length=100,
            description="next_cursor of the previous page",
            examples=[f"1735732800.123-{EXAMPLE_TASK_ID}"],
        ),
    ] = None,
) -> JobList:
    """The caller's own jobs (those of its API key), newest first, ``limit`` per page; follow
    ``next_cursor`` for the next. A page may hold fewer than ``limit`` jobs and still have a
    cursor (with a ``state`` filter, at most 1000 jobs are looked at per page). An unknown
    query parameter is 422, so a misspelt filter never lists everything."""
    for name in request.query_params:
        if name not in _LIST_PARAMS:
            raise problem(422, f"{name}: unknown query parameter", "invalid_request", name)
    records, after = await run_in_threadpool(
        store.jobs.list_owned, owner, state, limit, decode_cursor(cursor)
    )
    return JobList(
        jobs=[JobStatus.from_record(r) for r in records], next_cursor=encode_cursor(after)
    )


@router.delete(
    "/jobs/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=route_responses(
        "not_found", ok={204: {"description": "deleted: nothing of the job is left"}}
    ),
)
async def delete(
    task_id: Annotated[str, Path(description="the id push returned", examples=[EXAMPLE_TASK_ID])],
    settings: SettingsDep,
    store: StoreDep,
    owner: OwnerDep,
) -> Response:
    """Delete one of the caller's jobs: a queued one is canceled, a running one is canceled
    and waited for (``LIPSYNC_DELETE_WAIT_S``), then its uploads, work files, result and
    record go. Afterwards status, download and events answer 404 for it."""
    job = await run_in_threadpool(load_own_job, store, owner, task_id)
    await run_in_threadpool(jobs.delete, store, settings, job)
    log.info("job %s deleted by %s", task_id, owner)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
