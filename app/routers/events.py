"""Live progress as Server-Sent Events (``GET /api/v1/lipsync/events?task_id=``).

The stream reads the job's record every ``LIPSYNC_EVENTS_POLL_S`` and sends an
``event: status`` (``data``: the job's status JSON, as ``/status`` gives it) each time its
state, stage, progress, cancel flag or ``quality.state`` changes; a ``: keep-alive`` comment
when nothing changed for ``LIPSYNC_EVENTS_KEEPALIVE_S``. It ends after the final state's
event (with the result or error in it), or for a succeeded job whose result is measured,
after the event that carries the measurement's end (``quality.state`` ready, failed or
skipped): the ``succeeded`` event comes first, the download is ready from it on. A job that
vanishes meanwhile (deleted, expired) ends it with an ``event: error`` carrying the usual
error body (``not_found``); so does Redis going away (``unavailable``). Authentication and
404 are as for ``/status``, before the stream starts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app.deps import OwnerDep, SettingsDep, StoreDep
from app.errors import problem
from app.routers.jobs import load_own_job
from app.schemas import (
    COMMON_RESPONSES,
    EXAMPLE_EVENTS,
    EXAMPLE_TASK_ID,
    JobStatus,
    route_responses,
    sse_response,
)
from service.jobs import JobRecord, JobStore, StoreError
from service.settings import Settings

log = logging.getLogger("lipsync.api")

router = APIRouter(prefix="/api/v1/lipsync", tags=["jobs"], responses=COMMON_RESPONSES)

_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _error(code: str, message: str) -> str:
    return _event("error", {"detail": {"code": code, "message": message}})


class OpenStreams:
    """The event streams open in this API process, per owner (an API key's digest), so
    one key cannot hold every connection and Redis poll (``LIPSYNC_EVENTS_MAX_PER_KEY``)."""

    def __init__(self) -> None:
        self._open: dict[str, set[object]] = {}

    def open(self, owner: str, limit: int) -> object | None:
        """A token for one more stream of ``owner``, or None when it has ``limit`` open."""
        streams = self._open.setdefault(owner, set())
        if len(streams) >= limit:
            return None
        token = object()
        streams.add(token)
        return token

    def close(self, owner: str, token: object) -> None:
        """Idempotent: the stream's end and the response's end both call it."""
        streams = self._open.get(owner)
        if streams is not None:
            streams.discard(token)
            if not streams:
                del self._open[owner]

    def count(self, owner: str) -> int:
        return len(self._open.get(owner, ()))


def open_streams(request: Request) -> OpenStreams:
    streams = getattr(request.app.state, "open_streams", None)
    if streams is None:
        streams = request.app.state.open_streams = OpenStreams()
    return streams


async def status_events(
    request: Request,
    settings: Settings,
    store: JobStore,
    owner: str,
    job: JobRecord,
    release: Any = None,
) -> AsyncIterator[str]:
    try:
        async for chunk in _status_events(request, settings, store, owner, job):
            yield chunk
    finally:
        if release is not None:
            release()


async def _status_events(
    request: Request, settings: Settings, store: JobStore, owner: str, job: JobRecord
) -> AsyncIterator[str]:
    yield ": job status events\nretry: 3000\n\n"
    last: tuple[Any, ...] | None = None
    quiet_since = time.monotonic()
    while True:
        body = JobStatus.from_record(job)
        quality = body.quality
        seen = (
            body.state,
            body.stage,
            body.progress,
            body.cancel_requested,
            None if quality is None else (quality.state, quality.cancel_requested),
        )
        if seen != last:
            last, quiet_since = seen, time.monotonic()
            yield _event("status", body.model_dump(mode="json"))
            if job.finished and (quality is None or quality.finished):
                return
        elif time.monotonic() - quiet_since >= settings.events_keepalive_s:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(settings.events_poll_s)
        if await request.is_disconnected():
            return
        try:
            fresh = await run_in_threadpool(store.jobs.get, job.id)
        except StoreError as exc:
            log.warning("events of %s: Redis error %s", job.id, exc)
            yield _error("unavailable", "the job store (Redis) is unavailable; retry shortly")
            return
        if fresh is None or fresh.owner != owner:
            yield _error("not_found", "no such task (deleted or expired)")
            return
        job = fresh


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses=route_responses(
        "not_found", "too_many_streams", ok={200: sse_response(EXAMPLE_EVENTS)}
    ),
)
async def events(
    request: Request,
    task_id: Annotated[str, Query(description="the id push returned", examples=[EXAMPLE_TASK_ID])],
    settings: SettingsDep,
    store: StoreDep,
    owner: OwnerDep,
) -> StreamingResponse:
    """Follow a job live (Server-Sent Events): one ``event: status`` per change of state,
    stage or progress, ending with the final status. Send ``X-API-Key`` as for ``/status``
    (browsers: ``fetch()`` with a streaming reader, since ``EventSource`` cannot send
    headers). At most ``LIPSYNC_EVENTS_MAX_PER_KEY`` streams per key are open at once;
    one more is answered 429 ``too_many_streams``."""
    job = await run_in_threadpool(load_own_job, store, owner, task_id)
    streams = open_streams(request)
    token = streams.open(owner, settings.events_max_per_key)
    if token is None:
        message = f"{settings.events_max_per_key} event streams of this key are open; close one"
        headers = {"Retry-After": str(min(settings.retry_after_s, 10))}
        raise problem(429, message, "too_many_streams", headers=headers)

    def release() -> None:
        streams.close(owner, token)

    return StreamingResponse(
        status_events(request, settings, store, owner, job, release),
        media_type="text/event-stream",
        headers=_HEADERS,
        background=BackgroundTask(release),
    )
