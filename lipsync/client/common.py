"""What the sync and async clients share: errors, the status value, option and form
handling, retries, the event-stream parser."""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from lipsync.errors import InvalidOption, LipsyncError

PREFIX = "/api/v1/lipsync"
FINAL_STATES = frozenset({"succeeded", "failed", "canceled"})
RETRY_STATUSES = frozenset({429, 503})
_EVENTS_MISSING = frozenset({404, 405, 501})  # a server without GET /events

Progress = Callable[[str, float], Any]
StrPath = str | os.PathLike[str]


class LipsyncAPIError(LipsyncError):
    """An error answer (``{"detail": {"code", "message", "field"?}}``) or a client-side refusal.

    ``status``: the HTTP status; 0 when there was no answer (refused before sending, server
    unreachable, wait timed out). ``retry_after``: seconds, when the server said."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, field={self.field!r})"
        )

    def to_dict(self) -> dict[str, str]:
        data = super().to_dict()
        if self.field:
            data["field"] = self.field
        return data


class JobFailed(LipsyncAPIError):
    """:meth:`Job.wait` saw the job end ``failed`` (``code`` is the job's error code) or
    ``canceled`` (code ``canceled``); ``job`` is its final status."""

    def __init__(self, job: JobStatus) -> None:
        error = job.error or {}
        code = error.get("code") or ("canceled" if job.state == "canceled" else "failed")
        message = error.get("message") or f"the job was {job.state}"
        super().__init__(200, code, message)
        self.job = job


class WaitTimeout(LipsyncAPIError):
    """:meth:`Job.wait` ran out of time; the job goes on (cancel it if it is not wanted)."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(0, "timeout", f"job {task_id} not finished after {timeout:g} s")


@dataclass(frozen=True)
class WebhookStatus:
    """The delivery of a job's webhook (``status.webhook``): ``state`` is ``waiting`` (the
    job runs), ``pending`` (next try at ``next_attempt_at``), ``delivering``, ``delivered``
    (a 2xx at ``delivered_at``) or ``failed``; times are ISO 8601 strings."""

    url: str
    state: str
    attempts: int
    last_code: int | None = None
    last_error: str | None = None
    delivered_at: str | None = None
    next_attempt_at: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> WebhookStatus | None:
        if not isinstance(data, Mapping):
            return None
        code = data.get("last_code")
        return cls(
            url=str(data.get("url") or ""),
            state=str(data.get("state") or ""),
            attempts=int(data.get("attempts") or 0),
            last_code=int(code) if isinstance(code, int) else None,
            last_error=data.get("last_error"),
            delivered_at=data.get("delivered_at"),
            next_attempt_at=data.get("next_attempt_at"),
        )


QUALITY_FINAL = frozenset({"ready", "failed", "skipped"})


@dataclass(frozen=True)
class QualityStatus:
    """The measurement of a succeeded job's result (``status.quality``), which follows the
    result: ``state`` is ``pending``, ``running``, ``ready`` (``metrics`` holds lipsync
    evaluate's numbers), ``failed`` or ``skipped`` (``note`` says why)."""

    state: str
    note: str | None = None
    metrics: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.state in QUALITY_FINAL

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> QualityStatus | None:
        if not isinstance(data, Mapping):
            return None
        metrics = data.get("metrics")
        return cls(
            state=str(data.get("state") or ""),
            note=data.get("note"),
            metrics=dict(metrics) if isinstance(metrics, Mapping) else None,
        )


@dataclass(frozen=True)
class JobStatus:
    """What ``GET /status`` (or an ``event: status``) says about a job; ``raw`` is all of it.
    ``webhook``: the delivery of its webhook, None when the push gave no ``webhook_url``.
    ``quality``: the measurement of the result, None until the job has succeeded."""

    task_id: str
    state: str
    progress: float
    stage: str
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    webhook: WebhookStatus | None = None
    quality: QualityStatus | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def measured(self) -> bool:
        """Over, its measurement included (a job that did not succeed has none)."""
        return self.final and (self.quality is None or self.quality.final)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobStatus:
        return cls(
            task_id=str(data.get("task_id", "")),
            state=str(data.get("state", "")),
            progress=float(data.get("progress") or 0.0),
            stage=str(data.get("stage") or ""),
            error=data.get("error"),
            result=data.get("result"),
            webhook=WebhookStatus.from_json(data.get("webhook")),
            quality=QualityStatus.from_json(data.get("quality")),
            raw=dict(data),
        )


# -- what the sync and async clients share (no I/O) ------------------------------------------


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len(PREFIX)] if url.endswith(PREFIX) else url


def _form_text(name: str, value: Any) -> str:
    if isinstance(value, list | tuple) and any(
        isinstance(v, dict) or hasattr(v, "to_json") for v in value
    ):  # a structured option (segments): JSON
        return json.dumps([v.to_json() if hasattr(v, "to_json") else v for v in value])
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, str | int | float | os.PathLike):
        return str(value)
    raise LipsyncAPIError(0, "invalid_option", f"{name}: unsupported value {value!r}", name)


def _option_fields(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Options as form fields, checked as the server checks them (no request is sent)."""
    from lipsync.options import parse_public_fields

    fields = {k: _form_text(k, v) for k, v in options.items() if v is not None}
    try:
        parse_public_fields(fields)
    except InvalidOption as exc:
        raise LipsyncAPIError(0, exc.code, exc.message, exc.field) from None
    return [(k, v) for k, v in fields.items() if v.strip()]


@dataclass(frozen=True)
class _Submission:
    files: dict[str, Path]
    fields: list[tuple[str, str]]
    headers: dict[str, str]

    def open(self, stack: ExitStack) -> list[tuple[str, Any]]:
        """The multipart parts (text fields as parts without a file name, so a push with two
        URLs is multipart too); files opened in ``stack``, afresh for each attempt."""
        parts: list[tuple[str, Any]] = [(k, (None, v)) for k, v in self.fields]
        for name, path in self.files.items():
            handle: BinaryIO = stack.enter_context(path.open("rb"))
            parts.append((name, (path.name, handle)))
        return parts


def _audio_inputs(
    audio: StrPath | Sequence[StrPath] | None, audio_url: str | Sequence[str] | None
) -> list[tuple[str, StrPath | None, str | None]]:
    """The audio inputs as ``(field, file, url)``: ``audio``/``audio_url`` for the first,
    ``audio_1``/``audio_url_1``… for the others (a job with segments)."""
    if isinstance(audio, list | tuple) and audio_url is None:
        return [(_nth("audio", k), p, None) for k, p in enumerate(audio)]
    if isinstance(audio_url, list | tuple) and audio is None:
        return [(_nth("audio", k), None, str(u)) for k, u in enumerate(audio_url)]
    if isinstance(audio, list | tuple) or isinstance(audio_url, list | tuple):
        message = "give audio (files) or audio_url (URLs), not both"
        raise LipsyncAPIError(0, "conflicting_fields", message, "audio")
    return [("audio", audio, audio_url)]  # type: ignore[list-item]


def _url_field(name: str) -> str:
    """``video_url``, ``audio_url``, ``audio_url_1``…"""
    base, _, k = name.partition("_")
    return f"{base}_url_{k}" if k else f"{base}_url"


def _nth(name: str, k: int) -> str:
    return name if k == 0 else f"{name}_{k}"


def _check_segment_audio(options: Mapping[str, Any], count: int) -> None:
    """Each segment names one of the audio inputs given, and several need segments."""
    from lipsync.segments import check_against_media, check_segments

    raw = options.get("segments")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None  # refused by the option check
    try:
        segments = check_segments(raw) if raw else ()
        check_against_media(segments, float("inf"), [float("inf")] * count, "loop")
    except InvalidOption as exc:
        raise LipsyncAPIError(0, exc.code, exc.message, exc.field) from None
    if count > 1 and not segments:
        message = f"{count} audio inputs but no segments saying where each one plays"
        raise LipsyncAPIError(0, "invalid_option", message, "segments")


def _prepare(
    video: StrPath | None,
    audio: StrPath | Sequence[StrPath] | None,
    video_url: str | None,
    audio_url: str | Sequence[str] | None,
    idempotency_key: str | None,
    options: Mapping[str, Any],
    webhook_url: str | None = None,
    evaluate: bool | None = None,
) -> _Submission:
    files: dict[str, Path] = {}
    fields: list[tuple[str, str]] = []
    audios = _audio_inputs(audio, audio_url)
    for name, path, url in [("video", video, video_url), *audios]:
        if (path is None) == (url is None):
            message = f"give {name} (a file) or {name}_url, one of them"
            raise LipsyncAPIError(0, "missing_field", message, name)
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise LipsyncAPIError(0, "missing_field", f"{name}: no file {p}", name)
            files[name] = p
        else:
            fields.append((_url_field(name), str(url)))
    if webhook_url is not None:
        fields.append(("webhook_url", str(webhook_url)))
    if evaluate is not None:
        fields.append(("evaluate", "true" if evaluate else "false"))
    fields += _option_fields(options)
    _check_segment_audio(options, len(audios))
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return _Submission(files, fields, headers)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_from(response: httpx.Response) -> LipsyncAPIError:
    code, message, field_ = "", "", None
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict):
        code = str(detail.get("code") or "")
        message = str(detail.get("message") or "")
        field_ = detail.get("field")
    elif isinstance(detail, str):
        message = detail
    if not code:
        code = "http_" + str(response.status_code)
    if not message:
        message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return LipsyncAPIError(response.status_code, code, message, field_, _retry_after(response))


def _unreachable(base_url: str, exc: httpx.TransportError) -> LipsyncAPIError:
    what = type(exc).__name__
    return LipsyncAPIError(0, "unreachable", f"{base_url}: {what}: {exc}".rstrip(": "))


class _Backoff:
    """Waits between tries of a request answered 429/503: Retry-After, capped."""

    def __init__(self, retries: int, max_wait: float) -> None:
        self.retries = retries
        self.max_wait = max_wait
        self.tries = 0

    def delay(self, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again, or None to give up."""
        if response.status_code not in RETRY_STATUSES or self.tries >= self.retries:
            return None
        self.tries += 1
        wait = _retry_after(response)
        if wait is None:
            wait = 2.0 ** (self.tries - 1)
        return min(wait, self.max_wait)


class _SSE:
    """Server-Sent Events, line by line: yields (event, data) when an event is complete."""

    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if line == "":
            out = (self.event or "message", "\n".join(self.data)) if self.data else None
            self.event, self.data = "", []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None


def _status_event(event: str, data: str) -> JobStatus | None:
    if event != "status":
        return None
    try:
        return JobStatus.from_json(json.loads(data))
    except (ValueError, TypeError, AttributeError):
        return None


class _Reporter:
    """Calls ``progress(stage, fraction)`` when either changes."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.last: tuple[str, float] | None = None

    def __call__(self, status: JobStatus) -> Any:
        now = (status.stage, status.progress)
        if self.progress is None or now == self.last:
            return None
        self.last = now
        return self.progress(*now)


def _finish(status: JobStatus) -> JobStatus:
    if status.state != "succeeded":
        raise JobFailed(status)
    return status


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _part_path(path: Path) -> Path:
    """Where a download is written before it is renamed to ``path`` (its folder is made,
    as ``lipsync run`` makes an output's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.part")


def _final(status: JobStatus) -> bool:
    return status.final


def _measured(status: JobStatus) -> bool:
    return status.measured


class _Settings:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
    ) -> None:
        self.base_url = _base(base_url)
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.events: bool | None = None  # does the server have GET /events? (None: not known)

    def backoff(self) -> _Backoff:
        return _Backoff(self.max_retries, self.max_retry_wait)

    def events_timeout(self, deadline: float | None) -> httpx.Timeout:
        left = _remaining(deadline)
        read = 30.0 if left is None else max(0.1, min(30.0, left))
        return httpx.Timeout(self.timeout, read=read)


# -- synchronous ------------------------------------------------------------------------------
