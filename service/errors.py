"""What clients are told when something fails: fit-for-clients messages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING

from service.settings import Settings

if TYPE_CHECKING:
    from service.jobs.record import JobRecord


def public_message(message: str, settings: Settings, names: Mapping[str, str] | None = None) -> str:
    """An error message fit for clients: paths inside the data dir (FFmpeg quotes the file
    it failed on) are cut down to the file's name, so server paths never leak; then the
    server's copies of the caller's files (``video.mp4``) are called by the names the caller
    gave them (``names``: server file name -> the caller's, see :func:`user_names`)."""
    roots = {str(settings.data_dir), str(settings.data_dir.resolve())}
    for root in sorted(roots, key=len, reverse=True):
        tail = r"/(?:[^\s'\"/]+/)*([^\s'\"/]+)"
        message = re.sub(r"(?<![\w.-])" + re.escape(root) + tail, r"\1", message)
    for server, user in (names or {}).items():
        if server and user and server != user:
            pattern = r"(?<![\w.-])" + re.escape(server) + r"(?![\w-])"
            message = re.sub(pattern, user.replace("\\", "\\\\"), message)
    return message


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def client_file_name(filename: str) -> str:
    """The name a caller's upload had, fit to quote in a message: its last path part,
    control characters removed, at most 100 characters ('' when nothing is left)."""
    name = _UNSAFE.sub("", filename.replace("\\", "/")).rsplit("/", 1)[-1].strip()
    return name if len(name) <= 100 else name[:97] + "..."


def user_names(job: JobRecord) -> dict[str, str]:
    """Server file name -> the caller's, for a job's uploads (:func:`public_message`)."""
    names: dict[str, str] = {}
    for stored, given in ((job.video, job.video_name), (job.audio, job.audio_name)):
        if stored and given:
            names[PurePath(stored).name] = given
    return names


#: Every ``code`` an HTTP error answer can carry in ``{"detail": {"code", "message",
#: "field"?}}``, with its status and meaning (the README's error table is checked against it).
HTTP_ERROR_CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "the request could not be read (e.g. a body that is not JSON)"),
    "bad_host": (400, "the Host header is not one of LIPSYNC_ALLOWED_HOSTS"),
    "unauthorized": (401, "missing or invalid X-API-Key"),
    "not_found": (404, "no such task, result, file or route"),
    "method_not_allowed": (405, "the route exists but not with this method"),
    "finished": (409, "the job already finished (terminate)"),
    "idempotency": (409, "the Idempotency-Key was used with another payload"),
    "too_large": (413, "the body, a file, its resolution or duration is over a limit"),
    "unsupported_media": (415, "not an allowed audio/video/image file"),
    "range_not_satisfiable": (416, "no byte of the download's Range is in the file"),
    "invalid_request": (422, "a parameter or body field is missing or of the wrong type"),
    "invalid_option": (422, "a push option with a bad value or an unknown option"),
    "licence_restricted": (
        422,
        "commercial-only mode, and a push option chooses a component whose licence excludes "
        "commercial use",
    ),
    "model_missing": (
        422,
        "the chosen engine's weights files are not in the server's models/ (named in the "
        "message; GET /options lists each engine's)",
    ),
    "invalid_upload": (422, "a malformed multipart body"),
    "missing_field": (422, "the audio or video file (or its URL) is missing"),
    "conflicting_fields": (422, "both a file and a URL for the same input"),
    "invalid_url": (
        422,
        "a video_url, audio_url or webhook_url that is not a well-formed http(s) URL",
    ),
    "fetch_refused": (422, "a video_url or audio_url whose scheme is not http or https"),
    "webhooks_disabled": (422, "a webhook_url, but the server has no LIPSYNC_WEBHOOK_SECRET"),
    "empty_field": (422, "the audio or video file is empty"),
    "invalid_header": (422, "a malformed header (e.g. Idempotency-Key)"),
    "corrupt_media": (422, "a file that cannot be read as media"),
    "audio_empty": (422, "the speech has no audio stream or is silent"),
    "queue_full": (429, "too many jobs waiting; see Retry-After"),
    "too_many_streams": (
        429,
        "too many open event streams for this key (LIPSYNC_EVENTS_MAX_PER_KEY); see Retry-After",
    ),
    "internal_error": (500, "a bug; the message carries no details"),
    "unavailable": (503, "Redis or the broker is unreachable; see Retry-After"),
}

#: The code of an error answer that did not name one, by status.
DEFAULT_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media",
    416: "range_not_satisfiable",
    422: "invalid_request",
    429: "queue_full",
    500: "internal_error",
    503: "unavailable",
}
