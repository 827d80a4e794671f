"""Request and response bodies of the HTTP API (separate from the Redis job records)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.store import JobRecord, JobState
from lipsync.options import MAX_MAX_SIZE, MIN_MAX_SIZE

TASK_ID_PATTERN = r"^[0-9a-f]{32}$"
_ONNX_ENHANCER = re.compile(r"^onnx:[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.onnx$")


def _split_ints(value: object, count: int, what: str) -> object:
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,]+", value.strip()) if p]
        if len(parts) != count:
            raise ValueError(f"{what} takes {count} integers separated by commas or spaces")
        try:
            return tuple(int(p) for p in parts)
        except ValueError as exc:
            raise ValueError(f"{what} takes {count} integers") from exc
    return value


class PushOptions(BaseModel):
    """Optional pipeline options sent as form fields with a push (empty fields are ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str | None = Field(
        default=None, description="retrieval (default), viseme, wav2lip, wav2lip-onnx"
    )
    enhancer: str | None = Field(default=None, description="none, classical or onnx:NAME.onnx")
    sync_mode: Literal["loop", "bounce", "cut_off", "silence", "remap"] | None = None
    detector: Literal["dlib", "s3fd"] | None = Field(
        default=None, description="face detector: dlib (default) or s3fd (models/s3fd.pth)"
    )
    fps: float | None = Field(default=None, ge=1.0, le=120.0, description="still images only")
    pads: tuple[int, int, int, int] | None = Field(
        default=None, description="top,bottom,left,right pixels around the face box"
    )
    face_index: int | None = Field(default=None, ge=0, le=64)
    face_point: tuple[int, int] | None = Field(default=None, description="x,y inside the face")
    max_size: int | None = Field(
        default=None,
        ge=MIN_MAX_SIZE,
        le=MAX_MAX_SIZE,
        description="longer side of the output at most this many pixels (it can only lower "
        "the service's LIPSYNC_MAX_OUTPUT_SIZE)",
    )

    @field_validator("pads", mode="before")
    @classmethod
    def _pads(cls, value: object) -> object:
        return _split_ints(value, 4, "pads")

    @field_validator("face_point", mode="before")
    @classmethod
    def _point(cls, value: object) -> object:
        return _split_ints(value, 2, "face_point")

    @field_validator("pads")
    @classmethod
    def _pads_range(cls, value: tuple[int, int, int, int] | None) -> object:
        if value is not None and any(abs(p) > 512 for p in value):
            raise ValueError("pads must be within -512..512 pixels")
        return value

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str | None) -> str | None:
        from lipsync.engines import ENGINES

        if value is not None and value not in ENGINES:
            raise ValueError(f"unknown engine; choose one of {', '.join(ENGINES)}")
        return value

    @field_validator("enhancer")
    @classmethod
    def _enhancer(cls, value: str | None) -> str | None:
        if value is None or value in ("none", "classical") or _ONNX_ENHANCER.match(value):
            return value
        raise ValueError("enhancer must be none, classical or onnx:NAME.onnx (a file in models/)")

    @model_validator(mode="after")
    def _one_face_selector(self) -> PushOptions:
        if self.face_index is not None and self.face_point is not None:
            raise ValueError("give face_index or face_point, not both")
        return self

    def as_job_options(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class PushResponse(BaseModel):
    task_id: str
    status_url: str
    download_url: str


class TerminateRequest(BaseModel):
    task_id: str = Field(description="the id push returned")


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
        description="which way the engine drew the mouths, for engines with more than one "
        "(retrieval: 'retrieval' or the 'viseme' fallback)",
    )
    engine_note: str | None = Field(default=None, description="why that path ran")
    quality: dict[str, Any] | None = Field(
        default=None,
        description="lipsync evaluate's numbers for the result (sync offset and score, "
        "closed-in-pauses, LSE-D/C when SyncNet is installed); null with quality_note when "
        "not measured",
    )
    quality_note: str | None = None


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
        )


class Problem(BaseModel):
    """Body of every error answer (``detail`` is text or ``{code, message, field}``)."""

    detail: Any


# Answers every /api/v1/lipsync route can give (documented so the schema and clients agree).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid X-API-Key (when keys are set)"},
    503: {"model": Problem, "description": "Redis unavailable; see Retry-After"},
}


class Health(BaseModel):
    status: Literal["ok", "ready", "unavailable"]
    redis: bool | None = None
    workers: list[str] | None = None
    message: str | None = None
