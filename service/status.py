"""A job's status as the API answers it (``GET /status``, ``GET /jobs``, ``GET /events``)
and as its webhook delivers it: built here, once, from the Redis record, so the app and the
worker send exactly the same fields. Pydantic only (no FastAPI): the worker imports it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from service.jobs.record import JobRecord, QualityRecord, WebhookRecord, WebhookState
from service.jobs.states import JobState, QualityState

#: Where a job is: ``queued``; in the worker ``starting``, ``fetching`` (URL inputs), the
#: pipeline's phases (``probe``, ``analyse``, ``audio``, ``render``: lipsync.pipeline.PHASES),
#: ``evaluate`` (the quality measurement); at the end ``done``, ``failed`` or ``canceled``.
JobStage = Literal[
    "queued",
    "starting",
    "fetching",
    "probe",
    "analyse",
    "audio",
    "render",
    "evaluate",
    "done",
    "failed",
    "canceled",
]


class ErrorInfo(BaseModel):
    code: str
    message: str


class Quality(BaseModel):
    """``lipsync evaluate``'s numbers for a result (worker/quality.py); null where a measure
    does not apply (no pause, no SyncNet, a still input)."""

    model_config = ConfigDict(extra="allow")

    face_found_rate: float = Field(description="share of frames with a face found")
    sync_offset_frames: int | None = Field(description="audio-video offset; 0: in sync")
    sync_offset_ms: float | None
    sync_score: float | None
    sync_confidence: float | None
    envelope_r_at_zero: float | None = Field(
        description="correlation of mouth opening and speech loudness at offset 0"
    )
    pause_frames: int = Field(description="frames in speech pauses that show a face")
    pause_closed_share: float | None = Field(description="share of those with the mouth closed")
    lse_d: float | None = Field(description="SyncNet LSE-D (lower is better)")
    lse_c: float | None = Field(description="SyncNet LSE-C (higher is better)")
    lse_note: str | None = Field(description="why LSE-D/C are null")
    articulation_ratio: float | None = Field(
        description="mouth opening while speaking over the input video's own (null: a still)"
    )
    sharpness_ratio: float | None = Field(
        description="lip-box sharpness over the input video's (null: a still)"
    )
    seconds: float = Field(description="how long the measurement took")


class Shot(BaseModel):
    start: int = Field(ge=0, description="first frame (decode order)")
    end: int = Field(ge=0, description="the frame after the last")


class ShotFace(BaseModel):
    """The face chosen in one shot (lipsync.face.analysis.ShotFace)."""

    model_config = ConfigDict(extra="allow")

    shot: int = Field(ge=0)
    chosen_by: Literal["speaker", "largest", "index", "point", "box", "none"] = Field(
        description="speaker (the one whose mouth follows the speech), largest (the only "
        "face), index, point or box (the push's face options), none (no face in the shot)"
    )
    faces_seen: int = Field(ge=0)
    person: int | None = Field(description="whose face (people[].id); null: none")
    speaker_scores: list[float] | None = Field(
        default=None, description="per face seen, how well its mouth follows the speech"
    )


class Person(BaseModel):
    """One person of the video (faces grouped across shots)."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(ge=0)
    frames: int = Field(ge=0, description="source frames showing them")
    shots: list[int] = Field(description="the shots showing them")
    rendered: str | None = Field(description="the engine's way for them: retrieval, viseme ...")
    reason: str | None = Field(description="why that way")


class FramesKeptOriginal(BaseModel):
    count: int = Field(default=0, ge=0)
    reasons: dict[str, int] = Field(
        default_factory=dict,
        description="how many for each reason (landmarks_unsettled, face_jumped, eased)",
    )
    frames: list[int] = Field(default_factory=list, description="which (the first 200)")


class JobResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    file: str = Field(description="result name, for /download?file_path=")
    duration_s: float
    frames: int
    no_face_frames: int
    width: int = Field(description="of the output video, in pixels")
    height: int = Field(description="of the output video, in pixels")
    fps: float = Field(description="frames per second of the output video")
    timings: dict[str, float] = Field(default_factory=dict)
    engine: str | None = None
    engine_path: str | None = Field(
        default=None,
        description="which way the engine drew the mouths: its name, or for retrieval "
        "'retrieval' (the person's own mouths) or the 'viseme' fallback",
    )
    engine_note: str | None = Field(default=None, description="why that path ran")
    shots: list[Shot] = Field(
        default_factory=list,
        description="the input's shots: {start, end} decode-order frames, end exclusive",
    )
    shot_faces: list[ShotFace] = Field(
        default_factory=list, description="per shot, the face chosen, how and whose"
    )
    people: list[Person] = Field(
        default_factory=list,
        description="the people of the video and how each one's mouth was drawn",
    )
    frames_kept_original: FramesKeptOriginal = Field(
        default_factory=FramesKeptOriginal,
        description="output frames left as the input has them because their face could not "
        "be trusted",
    )
    occluded_frames: int = Field(
        default=0,
        description="output frames whose new mouth was cut around something in front of the "
        "face (a hand, a microphone: --occlusion auto); those where it hid most of the lips "
        "are in frames_kept_original with reason 'occluded'",
    )


class QualityInfo(BaseModel):
    """The measurement of a succeeded job's video (``lipsync evaluate``): it runs after the
    result is ready, as its own low-priority task, so the download never waits for it."""

    state: QualityState = Field(
        description="pending (queued behind any job), running, ready (metrics are in), "
        "failed (could not be measured; note says why), skipped (evaluate=false, off on this "
        "server, or canceled)"
    )
    note: str | None = Field(default=None, description="why it failed or was skipped")
    metrics: Quality | None = Field(
        default=None,
        description="lipsync evaluate's numbers (sync offset and score, closed-in-pauses, "
        "articulation and sharpness against a video input, LSE-D/C when SyncNet is "
        "installed, seconds); null until ready",
    )
    cancel_requested: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("ready", "failed", "skipped")

    @classmethod
    def from_record(cls, quality: QualityRecord) -> QualityInfo:
        return cls(
            state=quality.state,
            note=quality.note,
            metrics=(
                Quality.model_validate(quality.metrics)
                if quality.state == "ready" and quality.metrics
                else None
            ),
            cancel_requested=quality.cancel_requested,
            started_at=_dt(quality.started_at),
            finished_at=_dt(quality.finished_at),
        )


class WebhookInfo(BaseModel):
    """The delivery of the job's final status to the push's ``webhook_url``."""

    url: str = Field(description="the push's webhook_url", json_schema_extra={"format": "uri"})
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
    stage: JobStage
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    error: ErrorInfo | None = None
    result: JobResult | None = None
    webhook: WebhookInfo | None = Field(
        default=None, description="the webhook's delivery; null when the push gave none"
    )
    quality: QualityInfo | None = Field(
        default=None,
        description="the result's lip-sync measurement, which follows the result (null "
        "until the job has succeeded)",
    )

    @classmethod
    def from_record(cls, job: JobRecord) -> JobStatus:
        return cls(
            task_id=job.id,
            state=job.state,
            progress=min(1.0, max(0.0, job.progress)),
            stage=cast(JobStage, job.stage),  # checked by the model
            created_at=datetime.fromtimestamp(job.created_at, tz=UTC),
            started_at=_dt(job.started_at),
            finished_at=_dt(job.finished_at),
            cancel_requested=job.cancel_requested,
            error=ErrorInfo(**job.error) if job.state == "failed" and job.error else None,
            result=JobResult(**job.result) if job.state == "succeeded" and job.result else None,
            webhook=WebhookInfo.from_record(job.webhook) if job.webhook else None,
            quality=(
                QualityInfo.from_record(job.quality)
                if job.state == "succeeded" and job.quality
                else None
            ),
        )


def status_payload(job: JobRecord) -> dict[str, Any]:
    """The job's status as JSON-ready data: what ``GET /status`` answers for it."""
    return JobStatus.from_record(job).model_dump(mode="json")
