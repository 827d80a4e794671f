"""The caller's own jobs: list them, delete one (``/api/v1/lipsync/jobs``).

Listing reads the owner's index in Redis (``{prefix}:owner:{owner}``, job ids by creation
time), newest first, a page at a time; records that expired drop out of it. Deleting cancels
a running job, waits (``LIPSYNC_DELETE_WAIT_S`` at most) for its worker to stop, then removes
every Redis key of the job and its files: uploads, work dir and result.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Annotated, Literal

import redis
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
from service import store_lua
from service.layout import remove_job_files
from service.queue import QUEUE
from service.settings import Settings
from service.store import JobStore

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
        store.list_owned, owner, state, limit, decode_cursor(cursor)
    )
    return JobList(
        jobs=[JobStatus.from_record(r) for r in records], next_cursor=encode_cursor(after)
    )


async def _wait_stopped(store: JobStore, task_id: str, wait_s: float) -> bool:
    """Wait for a canceled running job (or measurement) to reach a final state (its worker
    has then removed its uploads and work dir and writes nothing more). False when it did
    not in time."""
    deadline = time.monotonic() + wait_s
    while True:
        job = await run_in_threadpool(store.get, task_id)
        if job is None or (job.finished and (job.quality is None or job.quality.finished)):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


#: The broker's lists of the job queue: kombu's Redis transport keeps one per priority step
#: (``lipsync``, then ``lipsync\x06\x163`` ...).
QUEUE_LISTS = [QUEUE] + [f"{QUEUE}\x06\x16{p}" for p in (3, 6, 9)]


def drop_queued_message(settings: Settings, task_id: str) -> int:
    """Take a deleted job's message out of the broker's queue (its Celery task id is the job
    id), so no broker key names it either; a worker would drop it anyway, but only when it
    got to it. Only for a Redis broker; any trouble is logged, never raised: the job is
    deleted already, and the worker still skips a message whose record is gone."""
    url = settings.effective_broker_url
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return 0
    try:
        with redis.Redis.from_url(
            url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
        ) as r:
            return int(
                r.eval(store_lua.DROP_QUEUED_MESSAGE, len(QUEUE_LISTS), *QUEUE_LISTS, task_id)
            )
    except redis.RedisError as exc:
        log.warning("job %s: its queued message stays in the broker (%s)", task_id, exc)
        return 0


async def delete_job(settings: Settings, store: JobStore, owner: str, task_id: str) -> None:
    """Cancel (if it runs), then remove every trace of one of ``owner``'s jobs."""
    job = await run_in_threadpool(load_own_job, store, owner, task_id)
    if job.webhook is not None:  # a deleted job gets no webhook, not even of its cancel
        await run_in_threadpool(store.drop_webhook, task_id)
    outcome: str | None = None
    if not job.finished:
        outcome = await run_in_threadpool(store.request_cancel, task_id)
    elif job.quality is not None and not job.quality.finished:  # its measurement runs
        outcome = await run_in_threadpool(store.request_quality_cancel, task_id)
    if outcome == "canceling" and not await _wait_stopped(store, task_id, settings.delete_wait_s):
        log.warning(
            "job %s still running %.0fs after its delete; its leftovers go with the "
            "periodic cleanup",
            task_id,
            settings.delete_wait_s,
        )
    await run_in_threadpool(store.purge, task_id, owner)
    if job.started_at is None:  # queued, or canceled before it started: its message waits
        await run_in_threadpool(drop_queued_message, settings, task_id)
    await run_in_threadpool(remove_job_files, settings, task_id, result=True)
    log.info("job %s deleted by %s", task_id, owner)


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
    await delete_job(settings, store, owner, task_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
