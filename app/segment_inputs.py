"""A push's extra audio inputs (``audio_1``, ``audio_2``, … files or ``audio_url_1``, …
URLs) and its segments checked against all its inputs before anything is queued.

Audio input 0 is the push's ``audio`` (or ``audio_url``); a job with segments may give
more, numbered from 1 without gaps, each a file or a URL. The segments (the ``segments``
option) are checked for form with the other options; here against the inputs: each names an
audio input the push has, its range lies within the uploaded file, and in the ``silence``/
``cut_off`` modes it ends within an uploaded video (inputs given as URLs are checked by the
worker, before its run, the same way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipsync.errors import InvalidOption
from lipsync.segments import check_against_media, check_segments
from service.settings import Settings

#: The most audio inputs a push may carry (``audio`` and ``audio_1`` … ``audio_7``).
MAX_AUDIO_INPUTS = 8
EXTRA_AUDIO_FILE = re.compile(r"^audio_([1-7])$")
EXTRA_AUDIO_URL = re.compile(r"^audio_url_([1-7])$")


@dataclass
class ExtraAudio:
    """Audio inputs 1, 2, …: each ``{"path": relative to the data dir}`` or ``{"url": …}``."""

    inputs: list[dict[str, str]] = field(default_factory=list)
    paths: list[Path | None] = field(default_factory=list)  # uploaded files, to probe


class SegmentRefused(Exception):
    def __init__(self, message: str, code: str, field_: str) -> None:
        super().__init__(message)
        self.message, self.code, self.field = message, code, field_


def is_extra_audio_field(name: str) -> bool:
    return bool(EXTRA_AUDIO_FILE.match(name) or EXTRA_AUDIO_URL.match(name))


def extra_audio(files: dict[str, Path], fields: dict[str, str], settings: Settings) -> ExtraAudio:
    """The push's audio inputs after the first, in order; refused when one is given as
    both a file and a URL, or when one is skipped (``audio_2`` without ``audio_1``)."""
    from service.fetch import check_url

    given: dict[int, dict[str, str]] = {}
    paths: dict[int, Path] = {}
    for name, path in files.items():
        m = EXTRA_AUDIO_FILE.match(name)
        if m:
            if path.stat().st_size == 0:
                raise SegmentRefused(f"the {name} file is empty", "empty_field", name)
            given[int(m[1])] = {"path": str(path.relative_to(settings.data_dir))}
            paths[int(m[1])] = path
    for name, url in fields.items():
        m = EXTRA_AUDIO_URL.match(name)
        if not m or not url.strip():
            continue
        k = int(m[1])
        if k in given:
            message = f"send the audio_{k} file or {name}, not both"
            raise SegmentRefused(message, "conflicting_fields", name)
        try:
            check_url(url.strip())
        except Exception as exc:  # a LipsyncError: fetch_refused or invalid_url
            code = getattr(exc, "code", "invalid_url")
            raise SegmentRefused(f"{name}: {getattr(exc, 'message', exc)}", code, name) from exc
        given[k] = {"url": url.strip()}
    out = ExtraAudio()
    for k in range(1, max(given, default=0) + 1):
        if k not in given:
            raise SegmentRefused(
                f"audio input {k} is missing (send audio_{k} or audio_url_{k})",
                "missing_field",
                f"audio_{k}",
            )
        out.inputs.append(given[k])
        out.paths.append(paths.get(k))
    return out


def check_push_segments(
    options: dict[str, Any],
    video: Path | None,
    audio: Path | None,
    extra: ExtraAudio,
    settings: Settings,
) -> None:
    """The push's segments against its inputs and the server's cap (``max_segments``);
    :class:`InvalidOption` naming the field path otherwise. Inputs given as URLs are not
    probed here (the worker checks them before its run)."""
    from lipsync.media.probe_child import probe_bounded

    raw = options.get("segments") or []
    if not raw:
        if extra.inputs:
            raise InvalidOption(
                f"{1 + len(extra.inputs)} audio inputs but no segments saying where each one plays",
                field="segments",
            )
        return
    segments = check_segments(raw, settings.max_segments)
    count = 1 + len(extra.inputs)
    check_against_media(segments, float("inf"), [float("inf")] * count, "loop")
    limits, timeout = settings.media_limits, settings.probe_timeout_s
    lengths = [float("inf")] * count
    for i, path in enumerate([audio, *extra.paths]):
        if path is not None and any(s.audio == i for s in segments):
            lengths[i] = probe_bounded(path, limits, "audio", timeout).duration_s
    video_s, is_image = float("inf"), False
    mode = str(options.get("sync_mode") or "loop")
    if video is not None and mode in ("silence", "cut_off"):
        info = probe_bounded(video, limits, "video", timeout)
        video_s, is_image = info.duration_s, info.is_image
    check_against_media(segments, video_s, lengths, mode, is_image)
