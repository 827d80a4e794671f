"""A job's status as the API answers it (``GET /status``, ``GET /jobs``, ``GET /events``)
and as its webhook delivers it: built here, once, from the Redis record, so the app and the
worker send exactly the same fields. Pydantic only (no FastAPI): the worker imports it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.record import JobRecord, JobState, WebhookRecord, WebhookState


class ErrorInfo(BaseModel):
    code: str
    message: str


class JobResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    file: str = Field(description="result name, for /download?file_path=")
    duration_s: float
    frames: int
    no_face_frames: int
    timings: dict[str, float] = Field(default_factory=dict)
    engine: str | None = None
    engine_path: str | None = Field(
        default=None,
        description="which way the engine drew the mouths: its name, or for retrieval "
        "'retrieval' (the person's own mouths) or the 'viseme' fallback",
    )
    engine_note: str | None = Field(default=None, description="why that path ran")
    shots: list[dict[str, int]] = Field(
        default_factory=list,
        description="the input's shots: {start, end} decode-order frames, end exclusive",
    )
    shot_faces: list[dict[str, Any]] = Field(
        default_factory=list,
        description="per shot, the face chosen: {shot, chosen_by: speaker|largest|index|"
        "point|box|none, faces_seen, person, speaker_scores?}",
    )
    people: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the people of the video: {id, frames, shots, rendered (the engine's "
        "way for them, e.g. retrieval or viseme), reason}",
    )
    frames_kept_original: dict[str, Any] = Field(
        default_factory=dict,
        description="output frames left as the input has them because their face could not "
        "be trusted: {count, reasons: {landmarks_unsettled|face_jumped: n}, frames}",
    )
    quality: dict[str, Any] | None = Field(
        default=None,
        description="lipsync evaluate's numbers for the result (sync offset and score, "
        "closed-in-pauses, LSE-D/C when SyncNet is installed); null with quality_note when "
        "not measured",
    )
    quality_note: str | None = None


class WebhookInfo(BaseModel):
    """The delivery of the job's final status to the push's ``webhook_url``."""

    url: str = Field(description="the push's webhook_url")
    state: WebhookState = Field(
        description="waiting (the job has not ended), pending (an attempt is due at "
        "next_attempt_at), delivering (an attempt is under way), delivered (answered 2xx), "
        "failed (every attempt failed, or the address was refused)"
    )
    attempts: int = Field(ge=0, description="attempts started so far (at most 6 by default)")
    last_code: int | None = Field(
        default=None, description="HTTP status of the last answer; null: no answer"
    )
    last_error: str | None = Field(
        default=None, description="why the last attempt failed (null once delivered)"
    )
    delivered_at: datetime | None = Field(default=None, description="when a 2xx came back")
    next_attempt_at: datetime | None = Field(default=None, description="when it is tried next")

    @classmethod
    def from_record(cls, hook: WebhookRecord) -> WebhookInfo:
        return cls(
            url=hook.url,
            state=hook.state,
            attempts=hook.attempts,
            last_code=hook.last_code,
            last_error=hook.last_error if hook.state != "delivered" else None,
            delivered_at=_dt(hook.delivered_at),
            next_attempt_at=_dt(hook.next_at) if hook.state == "pending" else None,
        )


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None


class JobStatus(BaseModel):
    task_id: str
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    stage: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    error: ErrorInfo | None = None
    result: JobResult | None = None
    webhook: WebhookInfo | None = Field(
        default=None, description="the webhook's delivery; null when the push gave none"
    )

    @classmethod
    def from_record(cls, job: JobRecord) -> JobStatus:
        return cls(
            task_id=job.id,
            state=job.state,
            progress=min(1.0, max(0.0, job.progress)),
            stage=job.stage,
            created_at=datetime.fromtimestamp(job.created_at, tz=UTC),
            started_at=_dt(job.started_at),
            finished_at=_dt(job.finished_at),
            cancel_requested=job.cancel_requested,
            error=ErrorInfo(**job.error) if job.state == "failed" and job.error else None,
            result=JobResult(**job.result) if job.state == "succeeded" and job.result else None,
            webhook=WebhookInfo.from_record(job.webhook) if job.webhook else None,
        )


def status_payload(job: JobRecord) -> dict[str, Any]:
    """The job's status as JSON-ready data: what ``GET /status`` answers for it."""
    return JobStatus.from_record(job).model_dump(mode="json")
