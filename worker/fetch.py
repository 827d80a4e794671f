"""The ``fetching`` stage: a job's URL inputs brought into its uploads dir before the pipeline.

A push may give ``video_url`` / ``audio_url`` instead of files; the API checks only their
form. Here each is fetched through the SSRF guard of :mod:`service.fetch` (addresses
checked, the checked address connected to, redirects re-checked, time limits, the
``LIPSYNC_MAX_UPLOAD_BYTES`` cap while streaming) into ``uploads/<id>/``, then probed with
the same bounded probe and limits as an upload. Its errors are typed with stable codes
(``fetch_refused``, ``fetch_failed``, ``too_large``, the probe's), which the job records.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from lipsync.errors import Canceled, CorruptMedia, LipsyncError
from service.fetch import FetchPolicy, fetch
from service.jobs import JobRecord
from service.layout import job_paths
from service.settings import Settings

log = logging.getLogger("lipsync.worker")

STAGE = "fetching"
#: The share of the job's progress bar the fetch of URL inputs takes (the pipeline the rest).
FETCH_SHARE = 0.15
_SAFE_EXT = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_TYPE_EXT = {"audio/wav": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3"}


def fetch_inputs(
    record: JobRecord,
    settings: Settings,
    progress: Callable[[str, float], None],
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[Path, Path]:
    """The job's video and audio as local files (video, audio): uploaded ones as they are,
    URL inputs fetched now (stage ``fetching``) and probed. Raises a LipsyncError."""
    video = settings.data_dir / record.video if record.video else None
    audio = settings.data_dir / record.audio if record.audio else None
    if record.video_url or record.audio_url:
        progress(STAGE, 0.0)
        policy = FetchPolicy.from_settings(settings)
        dest = job_paths(settings, record.id).uploads
        dest.mkdir(parents=True, exist_ok=True)
        both: list[tuple[Literal["video", "audio"], str]] = [
            ("video", record.video_url),
            ("audio", record.audio_url),
        ]
        urls = [(n, u) for n, u in both if u]
        for index, (name, url) in enumerate(urls):
            share = _Share(progress, index, len(urls), settings.max_upload_bytes)
            path = _fetch_one(record, name, url, dest, settings, policy, should_cancel, share)
            if name == "video":
                video = path
            else:
                audio = path
    if video is None or audio is None:
        raise CorruptMedia("the job has no video or no audio input")
    return video, audio


def fetch_extra_audio(
    record: JobRecord,
    settings: Settings,
    progress: Callable[[str, float], None],
    should_cancel: Callable[[], bool] | None = None,
) -> list[Path]:
    """A job with segments: its audio inputs 1, 2, … as local files (uploaded, or fetched
    now and probed); [] for a job with one audio input."""
    out: list[Path] = []
    urls = sum(1 for e in record.extra_audio if e.get("url"))
    dest = job_paths(settings, record.id).uploads
    policy = FetchPolicy.from_settings(settings) if urls else None
    fetched = 0
    for k, entry in enumerate(record.extra_audio, start=1):
        if entry.get("path"):
            out.append(settings.data_dir / entry["path"])
            continue
        assert policy is not None
        dest.mkdir(parents=True, exist_ok=True)
        share = _Share(progress, fetched, urls, settings.max_upload_bytes)
        out.append(
            _fetch_one(
                record, "audio", entry["url"], dest, settings, policy, should_cancel, share, k
            )
        )
        fetched += 1
    return out


def _fetch_one(
    record: JobRecord,
    name: Literal["video", "audio"],
    url: str,
    dest: Path,
    settings: Settings,
    policy: FetchPolicy,
    should_cancel: Callable[[], bool] | None,
    on_bytes: Callable[[int, int | None], object] | None = None,
    index: int = 0,
) -> Path:
    field = f"{name}_url" if index == 0 else f"{name}_url_{index}"
    stem = name if index == 0 else f"{name}_{index}"  # audio input 1, 2, … (segments)
    for old in dest.glob(f"{stem}.*"):  # an earlier attempt's file (the job was redelivered)
        old.unlink(missing_ok=True)
    partial = dest / f"{stem}.part"
    partial.unlink(missing_ok=True)
    host = urlsplit(url).hostname or "?"  # logged without path or query (they may be secret)
    try:
        got = fetch(url, partial, policy, should_cancel, on_bytes=on_bytes)
    except Canceled:
        raise
    except LipsyncError as exc:
        log.info("job %s: %s from %s not fetched: %s", record.id, field, host, exc.code)
        raise _prefixed(exc, field) from None
    path = dest / f"{stem}{_extension(got.url, got.content_type)}"
    partial.replace(path)
    log.info("job %s: %s fetched from %s (%d bytes)", record.id, field, host, got.size)
    _probe(path, name, settings, field)
    return path


class _Share:
    """``on_bytes`` of the ``index``-th of ``count`` URL inputs: its share of the fetching
    stage's bar, by its Content-Length (without one, by the byte cap: it still moves)."""

    def __init__(
        self, progress: Callable[[str, float], None], index: int, count: int, cap: int
    ) -> None:
        self.progress = progress
        self.index = index
        self.count = count
        self.cap = max(1, cap)

    def __call__(self, received: int, expected: int | None) -> None:
        whole = expected if expected else self.cap
        fraction = min(1.0, received / max(1, whole))
        self.progress(STAGE, (self.index + fraction) / self.count)


def _probe(path: Path, kind: Literal["video", "audio"], settings: Settings, field: str) -> None:
    from lipsync.media.probe import probe_bounded

    try:
        probe_bounded(path, settings.media_limits, kind, settings.probe_timeout_s)
    except LipsyncError as exc:
        raise _prefixed(exc, field) from None
    except (OSError, ValueError) as exc:  # the probe child could not run or answer
        log.error("probe of %s failed", path, exc_info=exc)
        raise CorruptMedia(f"{field}: could not be read as media") from None


def _prefixed(exc: LipsyncError, field: str) -> LipsyncError:
    """The same error (type and code), its message naming the input."""
    exc.message = f"{field}: {exc.message}"
    exc.args = (exc.message,)
    return exc


def _extension(url: str, content_type: str) -> str:
    """A file suffix for the fetched file: the URL path's, else one for its Content-Type."""
    suffix = Path(urlsplit(url).path).suffix.lower()
    if _SAFE_EXT.match(suffix):
        return suffix
    guessed = _TYPE_EXT.get(content_type) or mimetypes.guess_extension(content_type or "")
    return guessed if guessed and _SAFE_EXT.match(guessed) else ".bin"
