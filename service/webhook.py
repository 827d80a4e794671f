"""Webhooks: the signature, the retry schedule and one delivery attempt (standard library).

A push may give ``webhook_url``; when its job ends, the worker's dispatcher
(:mod:`worker.webhooks`) POSTs the job's status JSON (:func:`service.status.status_payload`)
there, signed:

    X-Lipsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

with ``LIPSYNC_WEBHOOK_SECRET``. Receivers verify it with
:func:`lipsync.client.verify_webhook` (the same scheme, on the client's side).

An attempt goes through the SSRF guard of :mod:`service.outbound` (the name resolved once,
every address checked unless the host is in ``LIPSYNC_WEBHOOK_ALLOW``, the checked address
connected to), has its own connect and total time limits (a slow receiver is a failed
attempt), and follows no redirect (a 3xx is a failed attempt). Attempts go on until a 2xx,
at most ``LIPSYNC_WEBHOOK_MAX_ATTEMPTS``; the n-th retry comes ``backoff * 2**(n-1)``
seconds after the attempt before it (:func:`next_due`).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from dataclasses import dataclass
from typing import Any

from lipsync.errors import LipsyncError
from service.outbound import Policy, Watchdog, checked_addresses, open_request
from service.urlcheck import FetchRefused, check_url, normalize_host

SIGNATURE_HEADER = "X-Lipsync-Signature"
USER_AGENT = "lipsync-webhook/1"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Lipsync-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def next_due(now: float, attempts: int, max_attempts: int, backoff_s: float) -> float | None:
    """When the attempt after ``attempts`` failed ones is due, or None: no more attempts."""
    if attempts >= max_attempts:
        return None
    return now + backoff_s * 2 ** max(0, attempts - 1)


def schedule(max_attempts: int, backoff_s: float) -> list[float]:
    """Seconds from the first attempt to each attempt, when every one fails at once
    (defaults: 0, 120, 360, 840, 1800, 3720: 0, 2, 6, 14, 30 and 62 minutes)."""
    offsets = [0.0]
    for attempts in range(1, max_attempts):
        due = next_due(offsets[-1], attempts, max_attempts, backoff_s)
        assert due is not None
        offsets.append(due)
    return offsets


@dataclass(frozen=True, kw_only=True)
class WebhookPolicy(Policy):
    """Time limits of one attempt and the hosts exempt from the address check."""

    connect_timeout_s: float = 5.0
    deadline_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> WebhookPolicy:
        return cls(
            connect_timeout_s=float(settings.webhook_connect_timeout_s),
            deadline_s=float(settings.webhook_timeout_s),
            allow=frozenset(normalize_host(h) for h in settings.webhook_allow),
        )


@dataclass(frozen=True)
class Attempt:
    """How one attempt went: ``ok`` (a 2xx), the HTTP status (None: no answer), why it
    failed, and ``final`` when trying again is pointless (a refused address)."""

    ok: bool
    code: int | None = None
    error: str = ""
    final: bool = False


def deliver(
    url: str,
    body: bytes,
    secret: str,
    policy: WebhookPolicy,
    watchdog: Watchdog | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Attempt:
    """POST ``body`` (JSON) to ``url``, signed with ``secret``; never raises for the network.
    ``watchdog`` (made here when not given) ends the attempt at its deadline; firing it
    early aborts the attempt (a stopping worker)."""
    watchdog = watchdog or Watchdog(time.monotonic() + policy.deadline_s)
    try:
        return _post(url, body, secret, policy, watchdog, ssl_context)
    finally:
        watchdog.cancel()


def _post(
    url: str,
    body: bytes,
    secret: str,
    policy: WebhookPolicy,
    watchdog: Watchdog,
    ssl_context: ssl.SSLContext | None,
) -> Attempt:
    try:
        parts = check_url(url)
        host = normalize_host(parts.hostname or "")
        timeout = max(0.001, min(policy.connect_timeout_s, watchdog.remaining()))
        addresses = checked_addresses(parts, policy, timeout, verb="sent to")
        headers = (
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("User-Agent", USER_AGENT),
            (SIGNATURE_HEADER, sign(secret, body, int(time.time()))),
        )
        context = ssl_context or ssl.create_default_context()
        conn, resp = open_request(
            parts, addresses, policy, watchdog, context, "POST", headers, body
        )
    except FetchRefused as exc:
        return Attempt(False, None, f"refused: {exc.message}", final=True)
    except LipsyncError as exc:  # fetch_failed (DNS, connect, TLS, the deadline), invalid_url
        return Attempt(False, None, exc.message, final=exc.code == "invalid_url")
    conn.close()  # the status is all that counts; the answer's body is not read
    code = resp.status
    if 200 <= code < 300:
        return Attempt(True, code)
    extra = " (redirects are not followed)" if 300 <= code < 400 else ""
    return Attempt(False, code, f"{host}: HTTP {code} {resp.reason}".rstrip() + extra)
