"""Request and response bodies of the HTTP API (separate from the Redis job records)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lipsync.options import OptionSpec, public_specs
from service.store import JobRecord, JobState

TASK_ID_PATTERN = r"^[0-9a-f]{32}$"

_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def _form_property(spec: OptionSpec) -> dict[str, Any]:
    """One push form field's JSON schema, from the option's declaration."""
    prop: dict[str, Any] = {"type": _JSON_TYPES.get(spec.kind, "string")}
    help_text = spec.meta.help
    if spec.meta.engines:
        help_text += f" (read by {', '.join(spec.meta.engines)})"
    prop["description"] = help_text
    choices = spec.choice_map()
    if choices and not spec.meta.public_pattern:
        prop["enum"] = list(choices)
    elif choices:
        prop["description"] += f"; one of {', '.join(choices)} or {spec.meta.example}"
    if spec.kind == "ints":
        number = r"\s*-?\d+\s*"
        prop["pattern"] = rf"^{number}([,\s]{number}){{{spec.count - 1}}}$"
    for key in ("minimum", "maximum"):
        if getattr(spec.meta, key) is not None and spec.kind in ("int", "float"):
            prop[key] = getattr(spec.meta, key)
    if spec.meta.example is not None:
        prop["example"] = {"int": int, "float": float}.get(spec.kind, str)(spec.meta.example)
    return prop


def push_request_body() -> dict[str, Any]:
    """The push's multipart body for the OpenAPI document: the two files, then one field
    per public option declaration (:func:`lipsync.options.public_specs`)."""
    properties: dict[str, Any] = {
        "audio": {"type": "string", "format": "binary", "description": "speech"},
        "video": {"type": "string", "format": "binary", "description": "face video or still"},
    }
    properties.update({spec.name: _form_property(spec) for spec in public_specs()})
    schema = {"type": "object", "required": ["audio", "video"], "properties": properties}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


class OptionChoice(BaseModel):
    value: str
    help: str


class OptionInfo(BaseModel):
    """One option a push may set, as declared (lipsync/options.py)."""

    name: str = Field(description="the form field")
    type: Literal["str", "int", "float", "bool", "path", "ints"]
    count: int | None = Field(default=None, description="how many integers (type ints)")
    label: str
    help: str
    default: Any = Field(description="this server's default")
    choices: list[OptionChoice] | None = None
    minimum: float | None = None
    maximum: float | None = None
    example: str | None = None
    engines: list[str] | None = Field(default=None, description="engines that read it")
    group: str | None = Field(default=None, description="give at most one of a group")
    advanced: bool = False


class OptionsResponse(BaseModel):
    options: list[OptionInfo]


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
        description="which way the engine drew the mouths: its name, or for retrieval "
        "'retrieval' (the person's own mouths) or the 'viseme' fallback",
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


class ErrorDetail(BaseModel):
    code: str = Field(description="stable; one of the documented codes (README: Errors)")
    message: str = Field(description="one line for people")
    field: str | None = Field(default=None, description="the form field or parameter at fault")


class Problem(BaseModel):
    """Body of every error answer."""

    detail: ErrorDetail


# Answers every /api/v1/lipsync route can give (documented so the schema and clients agree).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a Host outside LIPSYNC_ALLOWED_HOSTS, or bad JSON"},
    401: {"model": Problem, "description": "missing or invalid X-API-Key (when keys are set)"},
    413: {"model": Problem, "description": "the body is over its cap"},
    422: {"model": Problem, "description": "a missing or malformed parameter"},
    500: {"model": Problem, "description": "a bug (the server log has the details)"},
    503: {"model": Problem, "description": "Redis unavailable; see Retry-After"},
}


class Health(BaseModel):
    status: Literal["ok", "ready", "unavailable"]
    redis: bool | None = None
    workers: list[str] | None = None
    message: str | None = None
