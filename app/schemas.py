"""Request and response bodies of the HTTP API (separate from the Redis job records)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import JsonDict

from lipsync.options import OptionSpec
from service.errors import HTTP_ERROR_CODES
from service.options import push_specs

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
        prop["examples"] = [{"int": int, "float": float}.get(spec.kind, str)(spec.meta.example)]
    return prop


#: The push form's component name in the OpenAPI document (generated clients' class name).
PUSH_FORM = "PushForm"

#: What each file part should say it is (encoding.contentType); the server reads the bytes,
#: whatever the part claims, and refuses what is not media (415).
PART_MEDIA_TYPES = {
    "video": "video/*, image/*, application/octet-stream",
    "audio": "audio/*, video/*, application/octet-stream",
}


def push_form_schema() -> dict[str, Any]:
    """The push's multipart form as a JSON schema: the two inputs (each a file or a URL,
    exactly one of the two), the optional webhook, then one field per public option
    declaration (:func:`lipsync.options.public_specs`); nothing else (an unknown field is
    refused: ``invalid_option``)."""
    url = {"type": "string", "format": "uri", "minLength": 1, "maxLength": 1024}
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
            "hour (the document's webhooks: jobFinished). Refused (webhooks_disabled) when "
            "the server has no LIPSYNC_WEBHOOK_SECRET",
            "examples": ["https://hooks.example.com/lipsync"],
        },
    }
    properties.update({spec.name: _form_property(spec) for spec in push_specs()})
    return {
        "type": "object",
        "description": "each input is a file (audio, video) or a URL (audio_url, video_url), "
        "exactly one of the two; a job with segments may give more audio inputs, numbered "
        "from 1 without gaps: audio_1 … audio_7 (files) or audio_url_1 … (URLs), which its "
        "segments name by number (audio is 0)",
        "properties": properties,
        "patternProperties": {
            "^audio_[1-7]$": {
                "type": "string",
                "format": "binary",
                "description": "another speech input (segments)",
            },
            "^audio_url_[1-7]$": {
                **url,
                "description": "http(s) URL of another speech input, instead of audio_N",
            },
        },
        "allOf": [
            {"oneOf": [{"required": [name]}, {"required": [f"{name}_url"]}]}
            for name in ("video", "audio")
        ],
        "additionalProperties": False,
    }


def push_request_body() -> dict[str, Any]:
    """The push's request body for the OpenAPI document (its schema is :func:`push_form_schema`,
    under ``components/schemas/PushForm``)."""
    encoding = {name: {"contentType": types} for name, types in PART_MEDIA_TYPES.items()}
    content = {"schema": {"$ref": f"#/components/schemas/{PUSH_FORM}"}, "encoding": encoding}
    return {"required": True, "content": {"multipart/form-data": content}}


class OptionChoice(BaseModel):
    value: str
    help: str


class OptionInfo(BaseModel):
    """One option a push may set, as declared (lipsync/options.py)."""

    name: str = Field(description="the form field")
    type: Literal["str", "int", "float", "bool", "path", "ints", "json"]
    count: int | None = Field(default=None, description="how many integers (type ints)")
    label: str
    help: str
    default: str | int | float | bool | list[int] | None = Field(
        description="this server's default (null: none, the option is unset)"
    )
    choices: list[OptionChoice] | None = None
    minimum: float | None = None
    maximum: float | None = None
    example: str | None = None
    engines: list[str] | None = Field(default=None, description="engines that read it")
    group: str | None = Field(default=None, description="give at most one of a group")
    advanced: bool = False


class EngineInfo(BaseModel):
    """One engine a push may choose, as its wing declares it (lipsync/engines/<name>/)."""

    name: str = Field(description="the engine option's value")
    summary: str
    needs_weights: bool = Field(
        description="true: it loads weights files that must be in the server's models/"
    )
    weights: list[str] = Field(description="the weights files it may load, under models/")
    ready: bool = Field(
        default=True,
        description="its weights are in the server's models/ (false: a push choosing it is "
        "refused with 422 model_missing)",
    )
    missing: list[str] = Field(
        default_factory=list,
        description="the weights files it lacks under models/ (lipsync models pull NAME "
        "fetches them); for engines whose files are alternatives, any one of them",
    )


class OptionsResponse(BaseModel):
    options: list[OptionInfo]


_URI: JsonDict = {"format": "uri"}


class PushResponse(BaseModel):
    task_id: str = Field(pattern=TASK_ID_PATTERN)
    status_url: str = Field(description="GET it for the job's status", json_schema_extra=_URI)
    download_url: str = Field(description="GET it for the result", json_schema_extra=_URI)


class TerminateRequest(BaseModel):
    task_id: str = Field(description="the id push returned")


class ErrorDetail(BaseModel):
    code: str = Field(
        description="stable; one of the documented codes (README: Errors)",
        json_schema_extra={"enum": list(HTTP_ERROR_CODES)},
    )
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
        if status_code in ERROR_HEADERS:
            out[status_code]["headers"] = ERROR_HEADERS[status_code]
    return out


def header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response header for the OpenAPI document (sent with every such answer)."""
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


RETRY_AFTER = header("seconds to wait before trying again", {"type": "integer", "minimum": 0})

#: Headers that error answers of a status always carry.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": header("the scheme to use: `ApiKey` (header X-API-Key)")},
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}


def route_responses(
    *codes: str, ok: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A route's documented answers: ``ok`` (its own answers) and its error codes plus the
    common ones; a status in both (the file server's 400 beside the API's) lists the
    content types of both."""
    out = dict(ok or {})
    for status_code, answer in error_responses(*COMMON_CODES, *codes).items():
        own = out.get(status_code)
        if own is None:
            out[status_code] = answer
            continue
        out[status_code] = {
            **answer,
            "description": f"{answer['description']}; {own['description']}",
            "content": {**answer.get("content", {}), **own.get("content", {})},
        }
    return out


def json_example(value: Any, description: str | None = None) -> dict[str, Any]:
    """An answer's JSON example (``examples``, as OpenAPI 3.1 prefers to ``example``)."""
    out: dict[str, Any] = {"content": {"application/json": {"examples": {"ok": {"value": value}}}}}
    if description:
        out["description"] = description
    return out


# Answers every /api/v1/lipsync route can give (documented so the schema and clients agree).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = error_responses(*COMMON_CODES)

#: Codes of the guards in front of every route (app/limits.py: a wrong Host, a declared body
#: over the cap) and of a bug: the answers of the routes without a key (options, health).
GUARD_CODES: tuple[str, ...] = ("bad_host", "too_large", "internal_error")
GUARD_RESPONSES: dict[int | str, dict[str, Any]] = error_responses(*GUARD_CODES)

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
        "width": 512,
        "height": 512,
        "fps": 25.0,
        "timings": {"analyse": 1.2, "render": 3.1},
        "engine": "retrieval",
        "engine_path": "viseme",
        "engine_note": "a still image",
    },
    "quality": {
        "state": "ready",
        "note": None,
        "metrics": {
            "face_found_rate": 1.0,
            "sync_offset_frames": 0,
            "sync_offset_ms": 0.0,
            "sync_score": 0.81,
            "sync_confidence": 0.42,
            "envelope_r_at_zero": 0.63,
            "pause_frames": 12,
            "pause_closed_share": 0.92,
            "lse_d": 7.2,
            "lse_c": 7.9,
            "lse_note": "with models/syncnet_v2.model",
            "articulation_ratio": 1.35,
            "sharpness_ratio": 0.94,
            "seconds": 4.1,
        },
        "cancel_requested": False,
        "started_at": "2025-01-01T12:00:09Z",
        "finished_at": "2025-01-01T12:00:13Z",
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
    engines: dict[str, list[str]] | None = Field(
        default=None,
        description="each engine and the weights files it lacks in the server's models/ "
        "(empty: ready to run)",
    )


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _sse_event(name: str, model: type[BaseModel], description: str) -> dict[str, Any]:
    data = {"type": "string", "contentMediaType": "application/json", "contentSchema": _ref(model)}
    return {
        "description": description,
        "properties": {"event": {"const": name}, "data": data},
        "required": ["event", "data"],
    }


def sse_response(example: str) -> dict[str, Any]:
    """The event stream's 200 answer. Each event's ``data`` is JSON: a :class:`JobStatus`
    (``event: status``) or a :class:`Problem` (``event: error``, then the stream ends).

    OpenAPI 3.1 has no keyword for one event of a stream (3.2's ``itemSchema``, which
    openapi-spec-validator refuses in a 3.1 document), and generators read ``schema``
    differently: @hey-api/openapi-ts types each event's parsed data with it, while
    openapi-python-client reads the whole body as text. So ``schema`` is one of JobStatus,
    Problem or a string: the events' data for the former, the whole stream (a string, the
    only branch a text body matches) for the latter. ``x-itemSchema`` is the exact event,
    as OpenAPI 3.2 would say it (and FastAPI writes for its own SSE routes)."""
    item = {
        "type": "object",
        "properties": {
            "event": {"type": "string", "enum": ["status", "error"]},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
        "oneOf": [
            _sse_event("status", JobStatus, "a change of state, stage, progress or cancel"),
            _sse_event("error", Problem, "the job is gone (not_found) or Redis is down"),
        ],
    }
    schema = {
        "oneOf": [
            _ref(JobStatus),
            _ref(Problem),
            {"type": "string", "description": "the raw stream, for clients that do not parse"},
        ]
    }
    return {
        "description": "a stream of `event: status` (data: the status JSON) until the final "
        "state, or an `event: error` (data: the error body); `: keep-alive` comments between",
        "content": {
            "text/event-stream": {
                "schema": schema,
                "x-itemSchema": item,
                "examples": {"stream": {"value": example}},
            }
        },
    }


# -- download -----------------------------------------------------------------------------
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_FILE_HEADERS = {
    "Content-Disposition": header('`attachment; filename="<task_id>.mp4"`'),
    "ETag": header("the file's version: send it as If-Range to resume"),
    "Last-Modified": header("when the result was written"),
    "Accept-Ranges": header("`bytes`: Range requests are served", {"const": "bytes"}),
    "Content-Length": header("bytes in this answer", {"type": "integer", "minimum": 0}),
}
_CONTENT_RANGE = r"^bytes [0-9]+-[0-9]+/[0-9]+$"


def download_media_type(accept: str | None) -> str:
    """``video/mp4``, or ``application/octet-stream`` for a client whose Accept names that
    and no video type (generic binary clients); the bytes are the same."""
    ranges = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}
    if "application/octet-stream" in ranges and not ranges & {"video/mp4", "video/*", "*/*"}:
        return "application/octet-stream"
    return "video/mp4"


DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the MP4; `application/octet-stream` instead when Accept asks for only that",
        "content": {"video/mp4": _BINARY, "application/octet-stream": _BINARY},
        "headers": _FILE_HEADERS,
    },
    206: {
        "description": "one byte range of the MP4 (Range: bytes=a-b), or several as "
        "multipart/byteranges",
        "content": {
            "video/mp4": _BINARY,
            "application/octet-stream": _BINARY,
            "multipart/byteranges": _BINARY,
        },
        "headers": {
            **_FILE_HEADERS,
            "Content-Range": {
                **header("the range sent: `bytes <first>-<last>/<size>` (single range)"),
                "required": False,
                "schema": {"type": "string", "pattern": _CONTENT_RANGE},
            },
        },
    },
    # 416 (in the error envelope) comes with the route's error answers: app/routers/results.py;
    # a Range that cannot be parsed or is invalid is ignored (200), as RFC 9110 says.
}

#: The download's request headers (Starlette's FileResponse reads them).
DOWNLOAD_HEADERS: list[dict[str, Any]] = [
    {
        "name": "Range",
        "in": "header",
        "required": False,
        "description": "bytes=<first>-[<last>] (or several, comma-separated): only those bytes "
        "(206); a start past the end is 416; one that cannot be parsed, or last before "
        "first, is ignored (200)",
        "schema": {"type": "string", "pattern": r"^bytes=[0-9]*-[0-9]*(, *[0-9]*-[0-9]*)*$"},
        "examples": {"first KiB": {"value": "bytes=0-1023"}},
    },
    {
        "name": "If-Range",
        "in": "header",
        "required": False,
        "description": "an ETag or Last-Modified from an earlier answer: the Range is served "
        "only while the file is unchanged (else the whole file, 200)",
        "schema": {"type": "string"},
    },
]
