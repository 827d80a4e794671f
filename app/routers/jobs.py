"""Jobs: push, terminate, status (``/api/v1/lipsync``)."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.deps import CeleryDep, OwnerDep, SettingsDep, StoreDep
from app.errors import problem
from app.schemas import (
    COMMON_RESPONSES,
    EXAMPLE_PUSHED,
    EXAMPLE_RUNNING,
    EXAMPLE_SUCCEEDED,
    EXAMPLE_TASK_ID,
    TASK_ID_PATTERN,
    JobStatus,
    PushResponse,
    TerminateRequest,
    json_example,
    route_responses,
)
from app.segment_inputs import (
    SegmentRefused,
    check_push_segments,
    extra_audio,
    is_extra_audio_field,
)
from app.uploads import FILE_FIELDS, ParsedUpload, UploadError, UploadTooLarge, receive_multipart
from lipsync.errors import InvalidOption, LipsyncError
from service import jobs
from service.errors import client_file_name, public_message
from service.fetch import FetchRefused, check_url
from service.jobs import JobRecord, JobStore, WebhookRecord
from service.options import build_run_options, parse_push_fields
from service.queue import send_job
from service.settings import Settings

log = logging.getLogger("lipsync.api")

router = APIRouter(prefix="/api/v1/lipsync", tags=["jobs"], responses=COMMON_RESPONSES)

_TASK_ID = re.compile(TASK_ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_PROBE_STATUS = {"unsupported_media": 415, "too_large": 413}
_URL_FIELDS = {name: f"{name}_url" for name in FILE_FIELDS}  # audio_url, video_url
WEBHOOK_FIELD = "webhook_url"
_NOT_OPTIONS = frozenset({*_URL_FIELDS.values(), WEBHOOK_FIELD})


def urls_for(request: Request, settings: Settings, job_id: str) -> PushResponse:
    base = settings.public_base_url.rstrip("/") or str(request.base_url).rstrip("/")
    return PushResponse(
        task_id=job_id,
        status_url=f"{base}{router.prefix}/status?task_id={job_id}",
        download_url=f"{base}{router.prefix}/download?task_id={job_id}",
    )


def load_own_job(store: JobStore, owner: str, task_id: str) -> JobRecord:
    """The caller's job or 404 (unknown, expired, malformed, or someone else's)."""
    job = store.jobs.get(task_id) if _TASK_ID.match(task_id) else None
    if job is None or job.owner != owner:
        raise problem(404, "no such task", "not_found")
    return job


def _validate_options(fields: dict[str, str], settings: Settings) -> dict[str, Any]:
    """The push's option fields, checked as declared (lipsync/options.py) and as the job
    will run them (with this server's settings); 422 naming the field otherwise."""
    try:
        options = parse_push_fields(fields)
        build_run_options(options, settings)
    except InvalidOption as exc:
        raise problem(422, exc.message, exc.code, exc.field) from exc
    return options


def _check_weights(options: dict[str, Any], settings: Settings) -> None:
    """422 ``model_missing`` naming the files when the job's engine lacks its weights."""
    from lipsync.registry import EngineTable

    name = options.get("engine") or settings.default_engine
    spec = EngineTable().get(str(name))
    missing = spec.missing_weights(settings.models_dir) if spec else ()
    if missing:
        files = ", ".join(missing)
        message = (
            f"engine {name} needs weights files missing from the server's models/: {files} "
            f"(on the server: lipsync models pull {name})"
        )
        raise problem(422, message, "model_missing", "engine")


def _probe(path: Path, kind: str, settings: Settings) -> None:
    from lipsync.media.probe import probe_bounded

    probe_bounded(path, settings.media_limits, kind, settings.probe_timeout_s)  # type: ignore[arg-type]


async def _probe_upload(upload: ParsedUpload, settings: Settings) -> None:
    kinds = {n: n for n in ("video", "audio") if n in upload.files}  # not the URL inputs
    results = await asyncio.gather(
        *(run_in_threadpool(_probe, upload.files[n].path, kinds[n], settings) for n in kinds),
        return_exceptions=True,
    )
    names = {f.path.name: client_file_name(f.filename) for f in upload.files.values()}
    for name, outcome in zip(kinds, results, strict=True):
        if isinstance(outcome, LipsyncError):
            code = _PROBE_STATUS.get(outcome.code, 422)
            message = public_message(outcome.message, settings, names)
            raise problem(code, f"{name}: {message}", outcome.code, field=name)
        if isinstance(outcome, BaseException):
            log.error("probe of %s failed", name, exc_info=outcome)
            raise problem(422, f"{name}: could not be read as media", "corrupt_media", field=name)


@router.post(
    "/push",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PushResponse,
    responses=route_responses(
        "idempotency",
        "unsupported_media",
        "invalid_option",
        "model_missing",
        "invalid_upload",
        "missing_field",
        "empty_field",
        "invalid_header",
        "corrupt_media",
        "audio_empty",
        "conflicting_fields",
        "invalid_url",
        "fetch_refused",
        "webhooks_disabled",
        "queue_full",
        ok={202: json_example(EXAMPLE_PUSHED)},
    ),
)
async def push(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    celery: CeleryDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Upload speech (``audio``) and a face video or image (``video``), or give either as an
    http(s) URL (``audio_url``, ``video_url``: fetched by the worker); queue a job. With
    ``webhook_url`` the job's final status is POSTed there, signed (``X-Lipsync-Signature``)."""
    await _admit(request, settings, store, idempotency_key)
    job_id = uuid.uuid4().hex
    dest = settings.uploads_dir / job_id
    dest.mkdir(parents=True, exist_ok=False)
    keep = False
    try:
        upload, urls = await _receive(request, settings, dest)
        webhook = _webhook(upload, settings)
        fields = {
            k: v
            for k, v in upload.fields.items()
            if k not in _NOT_OPTIONS and not is_extra_audio_field(k)
        }
        options = _validate_options(fields, settings)
        _check_weights(options, settings)
        await _probe_upload(upload, settings)
        extra = await run_in_threadpool(_check_segments, upload, options, settings)
        job = JobRecord(
            id=job_id,
            owner=owner,
            state="queued",
            created_at=time.time(),
            audio=_saved(upload, "audio", settings),
            video=_saved(upload, "video", settings),
            options=options,
            audio_url=urls.get("audio", ""),
            video_url=urls.get("video", ""),
            webhook=WebhookRecord(url=webhook) if webhook else None,
            video_name=_given_name(upload, "video"),
            audio_name=_given_name(upload, "audio"),
            extra_audio=extra,
        )
        digest = upload.digest() if idempotency_key is not None else ""
        try:
            pushed = await run_in_threadpool(
                jobs.submit, store, job, partial(send_job, celery), idempotency_key, digest
            )
        except jobs.IdempotencyConflict as exc:
            message = "this Idempotency-Key was used with another payload"
            raise problem(409, message, "idempotency") from exc
        keep = pushed == job_id
        if keep:
            log.info("job %s queued for %s", job_id, owner)
        return urls_for(request, settings, pushed)
    finally:
        if not keep:
            shutil.rmtree(dest, ignore_errors=True)


def _check_segments(
    upload: ParsedUpload, options: dict[str, Any], settings: Settings
) -> list[dict[str, str]]:
    """The push's audio inputs after the first (``audio_1``…, ``audio_url_1``…), and its
    segments checked against all its inputs (app/segment_inputs.py); 422 otherwise."""
    files = {name: saved.path for name, saved in upload.files.items()}
    try:
        extra = extra_audio(files, upload.fields, settings)
        check_push_segments(options, files.get("video"), files.get("audio"), extra, settings)
    except SegmentRefused as exc:
        raise problem(422, exc.message, exc.code, exc.field) from exc
    except InvalidOption as exc:
        raise problem(422, exc.message, exc.code, exc.field) from exc
    except LipsyncError as exc:
        raise problem(422, exc.message, exc.code, "segments") from exc
    return extra.inputs


async def _admit(
    request: Request, settings: Settings, store: JobStore, idempotency_key: str | None
) -> None:
    """Refuse before reading the body: a bad key header, a full queue, a declared oversize."""
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise problem(422, "Idempotency-Key must be 1-255 printable characters", "invalid_header")
    depth = await run_in_threadpool(store.stats.queue_depth)
    if depth >= settings.max_queue_depth:
        message = f"{depth} jobs are waiting; retry later"
        headers = {"Retry-After": str(settings.retry_after_s)}
        raise problem(429, message, "queue_full", headers=headers)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise problem(413, f"upload exceeds {settings.max_upload_bytes} bytes", "too_large")


def _given_name(upload: ParsedUpload, name: str) -> str:
    saved = upload.files.get(name)
    return client_file_name(saved.filename) if saved is not None else ""


def _saved(upload: ParsedUpload, name: str, settings: Settings) -> str:
    saved = upload.files.get(name)
    return str(saved.path.relative_to(settings.data_dir)) if saved is not None else ""


def _url_inputs(upload: ParsedUpload) -> dict[str, str]:
    """The inputs given as URLs (``audio_url``/``video_url``; a blank one counts as absent),
    checked for form only (scheme, length, host): the worker resolves and fetches them."""
    urls: dict[str, str] = {}
    for name, field in _URL_FIELDS.items():
        url = upload.fields.get(field, "").strip()
        if not url:
            continue
        if name in upload.files:
            message = f"send the {name} file or {field}, not both"
            raise problem(422, message, "conflicting_fields", field)
        try:
            check_url(url)
        except LipsyncError as exc:  # fetch_refused (scheme) or invalid_url
            raise problem(422, f"{field}: {exc.message}", exc.code, field) from exc
        urls[name] = url
    return urls


def _webhook(upload: ParsedUpload, settings: Settings) -> str:
    """The push's ``webhook_url`` ('' for none), checked for form only: the worker resolves
    and checks its address at each delivery. Refused while no secret is configured."""
    url = upload.fields.get(WEBHOOK_FIELD, "").strip()
    if not url:
        return ""
    if not settings.webhook_secret.get_secret_value():
        message = "webhooks are off on this server (no LIPSYNC_WEBHOOK_SECRET); poll status"
        raise problem(422, message, "webhooks_disabled", WEBHOOK_FIELD)
    try:
        check_url(url)
    except FetchRefused as exc:  # another scheme: not an http(s) URL either
        message = f"{WEBHOOK_FIELD}: only http and https URLs are accepted"
        raise problem(422, message, "invalid_url", WEBHOOK_FIELD) from exc
    except LipsyncError as exc:
        raise problem(422, f"{WEBHOOK_FIELD}: {exc.message}", "invalid_url", WEBHOOK_FIELD) from exc
    return url


async def _receive(
    request: Request, settings: Settings, dest: Path
) -> tuple[ParsedUpload, dict[str, str]]:
    """The multipart body streamed into ``dest``, and the inputs given as URLs: each input
    is either a non-empty file or a well-formed URL."""
    try:
        upload = await receive_multipart(
            request.stream(),
            request.headers.get("content-type"),
            dest,
            settings.max_upload_bytes,
        )
    except UploadTooLarge as exc:
        raise problem(413, str(exc), "too_large") from exc
    except UploadError as exc:
        raise problem(422, exc.message, exc.code, exc.field) from exc
    urls = _url_inputs(upload)
    for name in FILE_FIELDS:
        if name in urls:
            continue
        if name not in upload.files:
            message = f"the {name} file is missing (send it, or {_URL_FIELDS[name]})"
            raise problem(422, message, "missing_field", name)
        if upload.files[name].size == 0:
            raise problem(422, f"the {name} file is empty", "empty_field", name)
    return upload, urls


@router.post(
    "/terminate",
    response_model=JobStatus,
    responses=route_responses(
        "bad_request",
        "not_found",
        "finished",
        ok={
            200: json_example(
                {**EXAMPLE_RUNNING, "state": "canceled", "stage": "canceled"},
                "queued: canceled at once, it never starts",
            ),
            202: {
                "model": JobStatus,
                **json_example(
                    {**EXAMPLE_RUNNING, "cancel_requested": True},
                    "running: cancel requested, stops shortly",
                ),
            },
        },
    ),
)
def terminate(
    body: TerminateRequest, settings: SettingsDep, store: StoreDep, owner: OwnerDep
) -> Any:
    """Cancel a job: a queued one never starts; a running one stops within a second or
    two. For a succeeded job whose result is still being measured, the measurement stops
    (``quality.state`` becomes ``skipped``); the result stays."""
    done = jobs.cancel(store, settings, load_own_job(store, owner, body.task_id))
    job = store.jobs.get(body.task_id)
    if job is None or (done.target == "job" and done.outcome is None):
        raise problem(404, "no such task", "not_found")
    if done.target == "job" and done.outcome in ("succeeded", "failed"):
        raise problem(409, f"the job already {done.outcome}", "finished")
    code = status.HTTP_202_ACCEPTED if done.stopping else status.HTTP_200_OK
    return JSONResponse(JobStatus.from_record(job).model_dump(mode="json"), status_code=code)


@router.get(
    "/status",
    response_model=JobStatus,
    responses=route_responses("not_found", ok={200: json_example(EXAMPLE_SUCCEEDED)}),
)
async def job_status(
    task_id: Annotated[str, Query(description="the id push returned", examples=[EXAMPLE_TASK_ID])],
    store: StoreDep,
    owner: OwnerDep,
) -> JobStatus:
    """State, progress and stage of a job; its result or error once finished."""
    # async, with only the Redis read in a thread: a sync route costs two thread hops per
    # call (the route and its response validation), the bulk of a poll's time under load
    job = await run_in_threadpool(load_own_job, store, owner, task_id)
    return JobStatus.from_record(job)
