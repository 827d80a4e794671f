"""A Python client for a running lip-sync service (the HTTP API under ``/api/v1/lipsync``).

Needs the ``client`` extra (``pip install 'lipsync[client]'``, which brings httpx); httpx is
imported here only, never by ``import lipsync``::

    from lipsync.client import Client, LipsyncAPIError

    with Client("http://localhost:8000", api_key="...") as client:
        job = client.submit(video="face.mp4", audio="speech.wav", engine="retrieval")
        job.wait(progress=lambda stage, fraction: print(stage, fraction))
        job.download("out.mp4")  # ready as soon as the video is written
        quality = job.wait_quality()  # lipsync evaluate's numbers follow
        print(quality.state, quality.metrics)
        job.delete()

:class:`AsyncClient` is the same with ``async``/``await``. Every failure is a
:class:`LipsyncAPIError` with the API's ``code``, ``message`` and ``field``; ``status`` is
the HTTP status, or 0 when the client refused or failed before any answer (a bad option,
a missing file, an unreachable server, a wait that timed out). Options are checked here
exactly as the server checks them (:func:`lipsync.options.parse_public_fields`) before any
byte is uploaded. A push refused with 429 or 503 is retried a bounded number of times,
after the server's ``Retry-After``.

``submit(..., webhook_url=URL)`` asks the service to POST the job's final status there;
:func:`verify_webhook` is the receiver's check of its ``X-Lipsync-Signature``.
"""

from __future__ import annotations

from lipsync.client.aio import AsyncClient, AsyncJob
from lipsync.client.common import (
    PREFIX,
    JobFailed,
    JobStatus,
    LipsyncAPIError,
    QualityStatus,
    WaitTimeout,
    WebhookStatus,
)
from lipsync.client.sync import Client, Job
from lipsync.client.webhook import SIGNATURE_HEADER, WebhookSignatureError, verify_webhook

__all__ = [
    "PREFIX",
    "SIGNATURE_HEADER",
    "AsyncClient",
    "AsyncJob",
    "Client",
    "Job",
    "JobFailed",
    "JobStatus",
    "LipsyncAPIError",
    "QualityStatus",
    "WaitTimeout",
    "WebhookSignatureError",
    "WebhookStatus",
    "verify_webhook",
]
