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

Why one module over 400 lines: resolving, pinning the connection to the checked address,
the watchdog, redirects and the byte cap are one security boundary and are audited
together; the pure URL and address checks are in :mod:`service.urlcheck`.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urljoin

from lipsync.errors import Canceled, TooLarge
from service.urlcheck import (
    CHUNK_BYTES,
    FETCH_ERROR_CODES,
    MAX_REDIRECTS,
    MAX_URL_LENGTH,
    REDIRECT_STATUSES,
    SCHEMES,
    USER_AGENT,
    FetchFailed,
    FetchRefused,
    InvalidURL,
    IPAddress,
    ascii_host,
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


@dataclass(frozen=True)
class FetchPolicy:
    """What :func:`fetch` may do (built from the settings by :meth:`from_settings`)."""

    max_bytes: int
    connect_timeout_s: float = 10.0
    deadline_s: float = 600.0
    allow: frozenset[str] = frozenset()
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_settings(cls, settings: Any) -> FetchPolicy:
        return cls(
            max_bytes=int(settings.max_upload_bytes),
            connect_timeout_s=float(settings.fetch_connect_timeout_s),
            deadline_s=float(settings.fetch_timeout_s),
            allow=frozenset(normalize_host(h) for h in settings.fetch_allow),
        )

    def allows(self, host: str) -> bool:
        return normalize_host(host) in self.allow


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` wrote: its size, the server's Content-Type, the final URL."""

    path: Path
    size: int
    content_type: str
    url: str
    redirects: int


def resolve(host: str, port: int, timeout_s: float) -> list[IPAddress]:
    """The addresses ``host`` resolves to (a literal resolves to itself), in the resolver's
    order, without duplicates; :class:`FetchFailed` when it does not resolve in time."""
    bare = normalize_host(host)
    try:
        return [ipaddress.ip_address(bare.split("%", 1)[0])]
    except ValueError:
        pass
    name = ascii_host(bare)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lipsync-resolve")
    try:
        future = pool.submit(socket.getaddrinfo, name, port, 0, socket.SOCK_STREAM)
        infos = future.result(timeout=timeout_s)
    except FutureTimeout:
        raise FetchFailed(f"{bare}: the name did not resolve within {timeout_s:g} s") from None
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"{bare}: the name does not resolve ({_reason(exc)})") from None
    finally:
        pool.shutdown(wait=False)
    found: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise FetchFailed(f"{bare}: the name has no IPv4 or IPv6 address")
    return found


def checked_addresses(parts: SplitResult, policy: FetchPolicy, timeout_s: float) -> list[IPAddress]:
    """The addresses this hop may connect to: all of them checked (a host outside the
    allow-list with any refused address is refused as a whole). Connects to nothing."""
    host = normalize_host(parts.hostname or "")
    port = parts.port or SCHEMES[parts.scheme.lower()]
    addresses = resolve(host, port, timeout_s)
    if policy.allows(host):
        return addresses
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            literal = _is_literal(host)
            where = f"{host} is" if literal else f"{host} resolves to"
            raise FetchRefused(f"{where} a {reason} address; it is not fetched")
    return addresses


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class _Watchdog:
    """Shuts the current socket when the whole-transfer deadline passes, whatever the
    transfer is blocked in (connect, TLS, headers, a byte-by-byte body)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired and sock is not None:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                _shut(self._sock)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    # the plain socket's shutdown, also under TLS: unblocks a read in another thread
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``address`` (already checked) while ``Host`` names the URL's host."""

    def __init__(
        self, host: str, port: int, address: IPAddress, timeout: float, watchdog: _Watchdog
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.watchdog = watchdog

    def _raw_socket(self) -> socket.socket:
        sock = socket.create_connection((str(self.address), self.port), self.timeout)
        self.watchdog.watch(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connect(self) -> None:
        self.sock = self._raw_socket()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """HTTPS to ``address``; SNI and the certificate check use the URL's host name."""

    default_port = http.client.HTTPS_PORT

    def __init__(
        self,
        host: str,
        port: int,
        address: IPAddress,
        timeout: float,
        watchdog: _Watchdog,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(host, port, address, timeout, watchdog)
        self.context = context

    def connect(self) -> None:
        raw = self._raw_socket()
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.watchdog.watch(self.sock)  # the TLS socket now owns the descriptor


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not valid: {exc.verify_message}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return exc.strerror or "name not known"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def fetch(
    url: str,
    dest: Path,
    policy: FetchPolicy,
    should_cancel: Callable[[], bool] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Fetched:
    """GET ``url`` into ``dest`` (created; removed again on any failure) under ``policy``.

    Raises :class:`FetchRefused`, :class:`FetchFailed`, :class:`lipsync.errors.TooLarge`,
    :class:`InvalidURL`, or :class:`lipsync.errors.Canceled` when ``should_cancel()`` turns
    true while the body streams."""
    watchdog = _Watchdog(time.monotonic() + policy.deadline_s)
    try:
        return _follow(url, dest, policy, watchdog, should_cancel, ssl_context)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        watchdog.cancel()


def _follow(
    url: str,
    dest: Path,
    policy: FetchPolicy,
    watchdog: _Watchdog,
    should_cancel: Callable[[], bool] | None,
    ssl_context: ssl.SSLContext | None,
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
        conn, resp = _open(parts, addresses, policy, watchdog, context)
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
            size = _stream_body(resp, dest, policy, watchdog, host, should_cancel)
            content_type = (resp.getheader("Content-Type") or "").split(";", 1)[0].strip()
            return Fetched(dest, size, content_type.lower(), url, hop)
        finally:
            conn.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _open(
    parts: SplitResult,
    addresses: Iterable[IPAddress],
    policy: FetchPolicy,
    watchdog: _Watchdog,
    context: ssl.SSLContext,
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Connect to the first checked address that answers and send the GET."""
    scheme = parts.scheme.lower()
    host = ascii_host(parts.hostname or "")
    port = parts.port or SCHEMES[scheme]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    last: BaseException | None = None
    for address in addresses:
        timeout = max(0.001, min(policy.connect_timeout_s, watchdog.remaining()))
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = _PinnedHTTPSConnection(host, port, address, timeout, watchdog, context)
        else:
            conn = _PinnedHTTPConnection(host, port, address, timeout, watchdog)
        try:
            conn.connect()
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            if isinstance(exc, ssl.SSLError):  # the address answered: TLS is what failed
                raise FetchFailed(f"{host}: {_reason(exc)}") from None
            last = exc
            if watchdog.fired:
                break
            continue
        try:
            conn.sock.settimeout(max(0.001, watchdog.remaining()))
            conn.putrequest("GET", target, skip_accept_encoding=True)
            conn.putheader("Accept-Encoding", "identity")
            conn.putheader("User-Agent", USER_AGENT)
            conn.putheader("Accept", "*/*")
            conn.endheaders()
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _failure(host, exc, watchdog, policy) from None
    if last is None:
        raise FetchFailed(f"{host}: no address to connect to")
    raise _failure(host, last, watchdog, policy, "cannot connect") from None


def _failure(
    host: str, exc: BaseException, watchdog: _Watchdog, policy: FetchPolicy, what: str = ""
) -> FetchFailed:
    if watchdog.fired or watchdog.remaining() <= 0:
        return FetchFailed(f"{host}: the transfer took longer than {policy.deadline_s:g} s")
    prefix = f"{what}: " if what else ""
    return FetchFailed(f"{host}: {prefix}{_reason(exc)}")


def _stream_body(
    resp: http.client.HTTPResponse,
    dest: Path,
    policy: FetchPolicy,
    watchdog: _Watchdog,
    host: str,
    should_cancel: Callable[[], bool] | None,
) -> int:
    declared = resp.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise TooLarge(f"{host}: {int(declared)} bytes; the limit is {policy.max_bytes}")
    size = 0
    with dest.open("xb") as out:
        while True:
            if should_cancel is not None and should_cancel():
                raise Canceled("the job was canceled")
            try:
                chunk = resp.read1(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                raise _failure(host, exc, watchdog, policy) from None
            if watchdog.fired:
                raise FetchFailed(f"{host}: the transfer took longer than {policy.deadline_s:g} s")
            if not chunk:
                break
            size += len(chunk)
            if size > policy.max_bytes:
                raise TooLarge(f"{host}: the body passes the limit of {policy.max_bytes} bytes")
            out.write(chunk)
    if size == 0:
        raise FetchFailed(f"{host}: the server sent an empty body")
    if declared and declared.strip().isdigit() and size < int(declared):
        raise FetchFailed(f"{host}: the body ended after {size} of {int(declared)} bytes")
    return size
