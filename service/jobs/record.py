"""A job as stored in Redis: the :class:`JobRecord` read from its hash (the API turns it
into its response schema; :mod:`service.jobs.records` reads and writes it). Its states are
in :mod:`service.jobs.states`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from service.jobs.states import (
    QUALITY_FINAL,
    QUALITY_STATES,
    TERMINAL_STATES,
    JobState,
    QualityState,
)

# A webhook's delivery: ``waiting`` for the job to end, ``pending`` (an attempt is due at
# ``next_at``), ``delivering`` (an attempt is under way), ``delivered`` (a 2xx), ``failed``
# (every attempt failed, or the address was refused).
WebhookState = Literal["waiting", "pending", "delivering", "delivered", "failed"]


@dataclass
class QualityRecord:
    """A succeeded job's measurement as stored in its hash (the ``q_*`` fields)."""

    state: QualityState
    note: str | None = None
    metrics: dict[str, Any] | None = None
    attempts: int = 0
    cancel_requested: bool = False
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in QUALITY_FINAL

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> QualityRecord | None:
        state = data.get("q_state", "")
        if state not in QUALITY_STATES:
            return None
        raw = data.get("q_metrics")
        return cls(
            state=cast(QualityState, state),
            note=data.get("q_note") or None,
            metrics=json.loads(raw) if raw else None,
            attempts=int(data.get("q_attempts", "0") or 0),
            cancel_requested=data.get("q_cancel") == "1",
            started_at=_opt_float(data, "q_started_at"),
            finished_at=_opt_float(data, "q_finished_at"),
        )


@dataclass
class WebhookRecord:
    """A job's webhook as stored in its hash (``webhook_url`` and the ``wh_*`` fields)."""

    url: str
    state: WebhookState = "waiting"
    attempts: int = 0
    last_code: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    next_at: float | None = None

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> WebhookRecord | None:
        url = data.get("webhook_url", "")
        if not url:
            return None
        code = data.get("wh_code", "")
        return cls(
            url=url,
            state=cast(WebhookState, data.get("wh_state") or "waiting"),
            attempts=int(data.get("wh_attempts", "0") or 0),
            last_code=int(code) if code.isdigit() else None,
            last_error=data.get("wh_error") or None,
            delivered_at=_opt_float(data, "wh_delivered_at"),
            next_at=_opt_float(data, "wh_next_at"),
        )


def _opt_float(data: dict[str, str], key: str) -> float | None:
    raw = data.get(key)
    return float(raw) if raw not in (None, "") else None


@dataclass
class JobRecord:
    """One job as stored in Redis (the API turns it into its response schema)."""

    id: str
    owner: str
    state: JobState
    created_at: float
    audio: str = ""  # paths relative to the data dir
    video: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    stage: str = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, str] | None = None
    result: dict[str, Any] | None = None
    attempts: int = 0
    cancel_requested: bool = False
    worker: str = ""
    # URL inputs: fetched by the worker into uploads/<id>/ (then audio/video stay empty)
    audio_url: str = ""
    video_url: str = ""
    # a push's webhook_url and the state of its delivery (None: no webhook was asked for)
    webhook: WebhookRecord | None = None
    # the measurement of a succeeded job (None: the job has not succeeded)
    quality: QualityRecord | None = None
    # the names the caller's files had (errors name them, never the server's copies)
    video_name: str = ""
    audio_name: str = ""
    # the inputs a succeeded job ran on, for its measurement (JSON: video, audio paths
    # relative to the data dir; URL inputs were fetched into its uploads dir)
    raw_inputs: str = ""
    # a job with segments: audio inputs 1, 2, … ({"path": relative} or {"url": …})
    extra_audio: list[dict[str, str]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> JobRecord:
        def opt_float(key: str) -> float | None:
            return _opt_float(data, key)

        def opt_json(key: str) -> Any:
            raw = data.get(key)
            return json.loads(raw) if raw else None

        return cls(
            id=data["id"],
            owner=data.get("owner", ""),
            state=cast(JobState, data["state"]),
            created_at=float(data.get("created_at", "0")),
            audio=data.get("audio", ""),
            video=data.get("video", ""),
            options=opt_json("options") or {},
            progress=float(data.get("progress", "0") or 0),
            stage=data.get("stage", ""),
            started_at=opt_float("started_at"),
            finished_at=opt_float("finished_at"),
            error=opt_json("error"),
            result=opt_json("result"),
            attempts=int(data.get("attempts", "0") or 0),
            cancel_requested=data.get("cancel") == "1",
            worker=data.get("worker", ""),
            audio_url=data.get("audio_url", ""),
            video_url=data.get("video_url", ""),
            webhook=WebhookRecord.from_hash(data),
            quality=QualityRecord.from_hash(data),
            video_name=data.get("video_name", ""),
            audio_name=data.get("audio_name", ""),
            raw_inputs=data.get("q_inputs", ""),
            extra_audio=opt_json("extra_audio") or [],
        )
