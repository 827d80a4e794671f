"""Request and response bodies of the HTTP API (separate from the Redis job records)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from lipsync.options import OptionSpec, public_specs
from service.errors import HTTP_ERROR_CODES

# The status models live in service.status: the worker's webhooks send the same body.
from service.status import ErrorInfo as ErrorInfo
from service.status import JobResult as JobResult
from service.status import JobStatus as JobStatus
from service.status import WebhookInfo as WebhookInfo

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
    """The push's multipart body for the OpenAPI document: the two inputs (files or URLs),
    then one field per public option declaration (:func:`lipsync.options.public_specs`)."""
    url = {"type": "string", "format": "uri", "maxLength": 1024}
    properties: dict[str, Any] = {
        "audio": {"type": "string", "format": "binary", "description": "speech"},
        "video": {"type": "string", "format": "binary", "description": "face video or still"},
        "audio_url": {**url, "description": "http(s) URL of the speech, instead of audio"},
        "video_url": {**url, "description": "http(s) URL of the face, instead of video"},
        "webhook_url": {
            **url,
            "description": "optional http(s) URL that gets the job's final status (the JSON "
            "of GET /status) in a POST signed with X-Lipsync-Signature: t=<unix>,v1=<hex "
            "HMAC-SHA256(secret, '<t>.<body>')>; tried until a 2xx, 6 times over about an "
            "hour. Refused (webhooks_disabled) when the server has no LIPSYNC_WEBHOOK_SECRET",
            "example": "https://hooks.example.com/lipsync",
        },
    }
    properties.update({spec.name: _form_property(spec) for spec in public_specs()})
    schema = {
        "type": "object",
        "description": "each input is a file (audio, video) or a URL (audio_url, video_url)",
        "properties": properties,
    }
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


class ErrorDetail(BaseModel):
    code: str = Field(description="stable; one of the documented codes (README: Errors)")
    message: str = Field(description="one line for people")
    field: str | None = Field(default=None, description="the form field or parameter at fault")


class Problem(BaseModel):
    """Body of every error answer."""

    detail: ErrorDetail


#: Codes any /api/v1/lipsync route can answer with (a wrong Host, a body over its cap, a bad
#: or missing key, a malformed parameter, Redis down, a bug).
COMMON_CODES: tuple[str, ...] = (
    "bad_host",
    "unauthorized",
    "too_large",
    "invalid_request",
    "internal_error",
    "unavailable",
)


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI answers for these error codes (service/errors.py), one per status: its
    description lists each code and what it means, with an example body per code."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(HTTP_ERROR_CODES[code][0], []).append(code)
    out: dict[int | str, dict[str, Any]] = {}
    for status_code, names in sorted(by_status.items()):
        examples = {
            name: {
                "summary": HTTP_ERROR_CODES[name][1],
                "value": {"detail": {"code": name, "message": HTTP_ERROR_CODES[name][1]}},
            }
            for name in names
        }
        out[status_code] = {
            "model": Problem,
            "description": "; ".join(f"`{n}`: {HTTP_ERROR_CODES[n][1]}" for n in names),
            "content": {"application/json": {"examples": examples}},
        }
    return out


def route_responses(
    *codes: str, ok: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A route's documented answers: ``ok`` (its successes) and its error codes plus the
    common ones."""
    return {**(ok or {}), **error_responses(*COMMON_CODES, *codes)}


def json_example(value: Any, description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"application/json": {"example": value}}}
    if description:
        out["description"] = description
    return out


# Answers every /api/v1/lipsync route can give (documented so the schema and clients agree).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = error_responses(*COMMON_CODES)

# -- examples (OpenAPI) -----------------------------------------------------------------------
EXAMPLE_TASK_ID = "3f2b8c1e9a7d4b6c8e0f1a2b3c4d5e6f"
EXAMPLE_PUSHED = {
    "task_id": EXAMPLE_TASK_ID,
    "status_url": f"http://127.0.0.1:8000/api/v1/lipsync/status?task_id={EXAMPLE_TASK_ID}",
    "download_url": f"http://127.0.0.1:8000/api/v1/lipsync/download?task_id={EXAMPLE_TASK_ID}",
}
EXAMPLE_RUNNING = {
    "task_id": EXAMPLE_TASK_ID,
    "state": "running",
    "progress": 0.42,
    "stage": "render",
    "created_at": "2025-01-01T12:00:00Z",
    "started_at": "2025-01-01T12:00:01Z",
    "finished_at": None,
    "cancel_requested": False,
    "error": None,
    "result": None,
    "webhook": None,
}
EXAMPLE_SUCCEEDED = {
    **EXAMPLE_RUNNING,
    "state": "succeeded",
    "progress": 1.0,
    "stage": "done",
    "finished_at": "2025-01-01T12:00:09Z",
    "result": {
        "file": f"{EXAMPLE_TASK_ID}.mp4",
        "duration_s": 2.4,
        "frames": 60,
        "no_face_frames": 0,
        "timings": {"analyse": 1.2, "render": 3.1},
        "engine": "retrieval",
        "engine_path": "viseme",
        "engine_note": "a still image",
        "quality": None,
        "quality_note": None,
    },
    "webhook": {
        "url": "https://hooks.example.com/lipsync",
        "state": "delivered",
        "attempts": 2,
        "last_code": 200,
        "last_error": None,
        "delivered_at": "2025-01-01T12:02:09Z",
        "next_attempt_at": None,
    },
}
EXAMPLE_EVENTS = (
    ": job status events\n"
    "retry: 3000\n\n"
    "event: status\n"
    'data: {"task_id": "3f2b...", "state": "running", "stage": "render", "progress": 0.42, ...}'
    "\n\n"
    ": keep-alive\n\n"
    "event: status\n"
    'data: {"task_id": "3f2b...", "state": "succeeded", "stage": "done", "progress": 1.0, '
    '"result": {...}, ...}\n\n'
)


class JobList(BaseModel):
    """One page of the caller's jobs, newest first."""

    jobs: list[JobStatus]
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= for the next page; null: no more"
    )


EXAMPLE_JOB_LIST = {"jobs": [EXAMPLE_SUCCEEDED], "next_cursor": f"1735732800.123-{'0' * 32}"}


class Health(BaseModel):
    status: Literal["ok", "ready", "unavailable"]
    redis: bool | None = None
    workers: list[str] | None = None
    message: str | None = None
