"""Checking a webhook from the service, as its receiver (standard library only).

The service POSTs a job's final status to the push's ``webhook_url`` with the header::

    X-Lipsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

signed with the server's ``LIPSYNC_WEBHOOK_SECRET``. :func:`verify_webhook` is the check
docs/SERVICE.md shows (there as a copy-paste recipe that needs nothing but Python).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

SIGNATURE_HEADER = "X-Lipsync-Signature"


class WebhookSignatureError(ValueError):
    """The signature header is missing or malformed, does not match, or is too old."""


def verify_webhook(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance_s: float = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """The webhook's JSON (the job's status) if ``header`` (``X-Lipsync-Signature``) signs
    ``body`` (the raw bytes received) with ``secret`` and its time is within
    ``tolerance_s`` of ``now``; else :class:`WebhookSignatureError`. Compares in constant
    time (``hmac.compare_digest``); a header may carry several ``v1=`` (any may match)."""
    fields = [part.split("=", 1) for part in (header or "").split(",") if "=" in part]
    stamps = [v.strip() for k, v in fields if k.strip() == "t"]
    signatures = [v.strip() for k, v in fields if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header")
    sent = int(stamps[0])
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        raise WebhookSignatureError(f"the signature's time is over {tolerance_s:g} s off")
    message = f"{sent}.".encode() + body
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookSignatureError("the signature does not match")
    data: dict[str, Any] = json.loads(body)
    return data
