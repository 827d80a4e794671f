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
import re
import time
from typing import Any

SIGNATURE_HEADER = "X-Lipsync-Signature"
_STAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only ("²".isdigit() is true), no overflow
_HEX = re.compile(r"[0-9a-f]{64}")


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
    time (``hmac.compare_digest``); a header may carry several ``v1=`` (any may match).

    Whatever the header and body hold, the only error raised is
    :class:`WebhookSignatureError` (a receiver that catches it answers 400, never 500)."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise WebhookSignatureError("the body must be the raw bytes received, not decoded text")
    if isinstance(header, bytes | bytearray):
        header = bytes(header).decode("latin-1")
    if header is not None and not isinstance(header, str):
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header")
    fields = [part.split("=", 1) for part in (header or "").split(",") if "=" in part]
    stamps = [v.strip() for k, v in fields if k.strip() == "t"]
    signatures = [v.strip() for k, v in fields if k.strip() == "v1" and _HEX.fullmatch(v.strip())]
    if len(stamps) != 1 or not _STAMP.fullmatch(stamps[0]) or not signatures:
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header")
    sent = int(stamps[0])
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        raise WebhookSignatureError(f"the signature's time is over {tolerance_s:g} s off")
    message = f"{sent}.".encode() + bytes(body)
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookSignatureError("the signature does not match")
    try:
        data = json.loads(bytes(body))
    except ValueError:
        raise WebhookSignatureError("the signed body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookSignatureError("the signed body is not a JSON object")
    return data
