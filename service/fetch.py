"""Fetching a push's ``video_url`` / ``audio_url``, guarded against SSRF (stdlib only).

The API checks only a URL's form (:func:`check_url`); the worker fetches it
(:func:`fetch`), and every hop is guarded the same way:

* only ``http`` and ``https``; no credentials in the URL;
* the host name is resolved once and **every** address it gives is checked: loopback,
  private, link-local (169.254.169.254 included), multicast, reserved, unspecified,
  carrier-grade NAT (100.64/10) and anything else that is not globally routable is refused,
  IPv4 and IPv6 alike, with IPv4 embedded in IPv6 (``::ffff:a.b.c.d``, 6to4, NAT64)
  judged as the IPv4 address it carries;
* the connection goes to the exact address that was checked (so a second, rebinding DNS
  answer cannot swap it), while the ``Host`` header and TLS SNI/certificate check keep the
  name;
* a redirect is a new URL and is checked again from the start; at most
  :data:`MAX_REDIRECTS` of them;
* a connect timeout, and a deadline for the whole transfer (redirects, headers and body)
  enforced by a watchdog that shuts the socket, so a server dripping bytes cannot hold it;
* the body is written to disk as it streams and stops the moment it passes the byte cap.

Hosts in the allow-list (``LIPSYNC_FETCH_ALLOW``) skip the address check (they are still
connected to by the address resolved once). Errors are :class:`lipsync.errors.LipsyncError`
subclasses with stable codes: ``fetch_refused`` (refused before any byte is fetched from that
address), ``fetch_failed`` (network or HTTP error), ``too_large``.

Resolving, checking and pinning the connection to the checked address and the watchdog are
in :mod:`service.outbound` (webhook delivery uses them too); the pure URL and address checks
in :mod:`service.urlcheck`. What is left here is what only a fetch does: redirects, and the
byte cap on the body.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from lipsync.errors import Canceled, TooLarge
from service.outbound import Policy, Watchdog, checked_addresses, failure, open_request
from service.urlcheck import (
    CHUNK_BYTES,
    FETCH_ERROR_CODES,
    MAX_REDIRECTS,
    MAX_URL_LENGTH,
    REDIRECT_STATUSES,
    USER_AGENT,
    FetchFailed,
    FetchRefused,
    InvalidURL,
    check_url,
    normalize_host,
    refusal,
)

# The URL and address checks live in service.urlcheck; they are part of this module's API.
__all__ = [
    "FETCH_ERROR_CODES",
    "MAX_REDIRECTS",
    "MAX_URL_LENGTH",
    "FetchFailed",
    "FetchPolicy",
    "FetchRefused",
    "Fetched",
    "InvalidURL",
    "check_url",
    "fetch",
    "normalize_host",
    "refusal",
]


_GET_HEADERS = (("Accept-Encoding", "identity"), ("User-Agent", USER_AGENT), ("Accept", "*/*"))


@dataclass(frozen=True, kw_only=True)
class FetchPolicy(Policy):
    """What :func:`fetch` may do (built from the settings by :meth:`from_settings`)."""

    max_bytes: int
    connect_timeout_s: float = 10.0
    deadline_s: float = 600.0
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_settings(cls, settings: Any) -> FetchPolicy:
        return cls(
            max_bytes=int(settings.max_upload_bytes),
            connect_timeout_s=float(settings.fetch_connect_timeout_s),
            deadline_s=float(settings.fetch_timeout_s),
            allow=frozenset(normalize_host(h) for h in settings.fetch_allow),
        )


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` wrote: its size, the server's Content-Type, the final URL."""

    path: Path
    size: int
    content_type: str
    url: str
    redirects: int


#: How often a fetch reads ``should_cancel()`` while it waits on the network.
CANCEL_POLL_S = 0.1

#: ``on_bytes(received, expected)``: the body's progress (``expected``: its Content-Length,
#: None when the server did not say).
BytesCallback = Callable[[int, int | None], object]


class _CancelWatch:
    """Reads ``should_cancel()`` from a thread while the fetch waits on the network, and
    shuts its socket at once when it turns true: a server that accepts and never answers
    (connect and headers phase) is left as soon as a cancel comes, not at the deadline."""

    def __init__(self, should_cancel: Callable[[], bool], watchdog: Watchdog) -> None:
        self.should_cancel = should_cancel
        self.watchdog = watchdog
        self.canceled = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lipsync-fetch-cancel", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(CANCEL_POLL_S):
            try:
                stop = bool(self.should_cancel())
            except Exception:
                stop = False
            if stop:
                self.canceled = True
                self.watchdog.fire()
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=1)


def fetch(
    url: str,
    dest: Path,
    policy: FetchPolicy,
    should_cancel: Callable[[], bool] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    on_bytes: BytesCallback | None = None,
) -> Fetched:
    """GET ``url`` into ``dest`` (created; removed again on any failure) under ``policy``.

    Raises :class:`FetchRefused`, :class:`FetchFailed`, :class:`lipsync.errors.TooLarge`,
    :class:`InvalidURL`, or :class:`lipsync.errors.Canceled` within a fraction of a second
    of ``should_cancel()`` turning true, whatever the exchange waits for (connect, headers,
    body). ``on_bytes`` is told the body's progress as it streams."""
    watchdog = Watchdog(time.monotonic() + policy.deadline_s)
    watch = _CancelWatch(should_cancel, watchdog) if should_cancel is not None else None
    try:
        return _follow(url, dest, policy, watchdog, should_cancel, ssl_context, on_bytes)
    except BaseException as exc:
        dest.unlink(missing_ok=True)
        if watch is not None and watch.canceled and not isinstance(exc, Canceled):
            raise Canceled("the job was canceled") from None
        raise
    finally:
        watchdog.cancel()
        if watch is not None:
            watch.stop()


def _follow(
    url: str,
    dest: Path,
    policy: FetchPolicy,
    watchdog: Watchdog,
    should_cancel: Callable[[], bool] | None,
    ssl_context: ssl.SSLContext | None,
    on_bytes: BytesCallback | None = None,
) -> Fetched:
    context = ssl_context or ssl.create_default_context()
    for hop in range(policy.max_redirects + 1):
        try:
            parts = check_url(url)
        except InvalidURL as exc:
            if hop == 0:
                raise
            raise FetchFailed(f"a redirect to a malformed URL: {exc.message}") from None
        host = normalize_host(parts.hostname or "")
        if watchdog.remaining() <= 0:
            raise FetchFailed(f"{host}: the transfer took longer than {policy.deadline_s:g} s")
        timeout = max(0.001, min(policy.connect_timeout_s, watchdog.remaining()))
        addresses = checked_addresses(parts, policy, timeout)
        conn, resp = open_request(parts, addresses, policy, watchdog, context, "GET", _GET_HEADERS)
        try:
            if resp.status in REDIRECT_STATUSES:
                location = resp.getheader("Location")
                if not location:
                    raise FetchFailed(f"{host}: HTTP {resp.status} without a Location")
                if hop == policy.max_redirects:
                    raise FetchRefused(f"more than {policy.max_redirects} redirects; not followed")
                url = urljoin(url, location.strip())
                continue
            if resp.status not in (200, 203):
                raise FetchFailed(f"{host}: HTTP {resp.status} {resp.reason}".rstrip())
            size = _stream_body(resp, dest, policy, watchdog, host, should_cancel, on_bytes)
            content_type = (resp.getheader("Content-Type") or "").split(";", 1)[0].strip()
            return Fetched(dest, size, content_type.lower(), url, hop)
        finally:
            conn.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _stream_body(
    resp: http.client.HTTPResponse,
    dest: Path,
    policy: FetchPolicy,
    watchdog: Watchdog,
    host: str,
    should_cancel: Callable[[], bool] | None,
    on_bytes: BytesCallback | None = None,
) -> int:
    declared = resp.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise TooLarge(f"{host}: {int(declared)} bytes; the limit is {policy.max_bytes}")
    expected = int(declared) if declared and declared.strip().isdigit() else None
    size = 0
    with dest.open("xb") as out:
        while True:
            if should_cancel is not None and should_cancel():
                raise Canceled("the job was canceled")
            try:
                chunk = resp.read1(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                raise failure(host, exc, watchdog, policy) from None
            if watchdog.fired:
                raise FetchFailed(f"{host}: the transfer took longer than {policy.deadline_s:g} s")
            if not chunk:
                break
            size += len(chunk)
            if size > policy.max_bytes:
                raise TooLarge(f"{host}: the body passes the limit of {policy.max_bytes} bytes")
            out.write(chunk)
            if on_bytes is not None:
                on_bytes(size, expected)
    if size == 0:
        raise FetchFailed(f"{host}: the server sent an empty body")
    if declared and declared.strip().isdigit() and size < int(declared):
        raise FetchFailed(f"{host}: the body ended after {size} of {int(declared)} bytes")
    return size
