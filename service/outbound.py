"""Outbound HTTP guarded against SSRF (standard library only): the connection side shared by
the URL-input fetcher (:mod:`service.fetch`, a GET) and webhook delivery
(:mod:`service.webhook`, a POST).

* the host name is resolved once and **every** address it gives is checked
  (:func:`service.urlcheck.refusal`: loopback, private, link-local, multicast, reserved, ...),
  unless the host is in the caller's allow-list;
* the connection goes to the exact address that was checked (a second, rebinding DNS answer
  cannot swap it), while the ``Host`` header and TLS SNI/certificate check keep the name;
* a connect timeout, and a deadline for the whole exchange enforced by a :class:`Watchdog`
  that shuts the socket, so a server that answers a byte at a time cannot hold the caller.

Redirects, the body cap and what a status means are the callers' business.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import SplitResult

from service.urlcheck import (
    SCHEMES,
    FetchFailed,
    FetchRefused,
    IPAddress,
    ascii_host,
    normalize_host,
    refusal,
)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """What a guarded request may do: its time limits and the hosts exempt from the check
    (the URL fetcher's and the webhook sender's policies add their own fields)."""

    connect_timeout_s: float
    deadline_s: float
    allow: frozenset[str] = frozenset()  # normalized host names (:func:`normalize_host`)

    def allows(self, host: str) -> bool:
        return normalize_host(host) in self.allow


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
        raise FetchFailed(f"{bare}: the name does not resolve ({reason(exc)})") from None
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


def checked_addresses(
    parts: SplitResult, policy: Policy, timeout_s: float, verb: str = "fetched"
) -> list[IPAddress]:
    """The addresses this request may connect to: all of them checked (a host outside the
    allow-list with any refused address is refused as a whole: "it is not ``verb``").
    Connects to nothing."""
    host = normalize_host(parts.hostname or "")
    port = parts.port or SCHEMES[parts.scheme.lower()]
    addresses = resolve(host, port, timeout_s)
    if policy.allows(host):
        return addresses
    for address in addresses:
        why = refusal(address)
        if why is not None:
            where = f"{host} is" if _is_literal(host) else f"{host} resolves to"
            raise FetchRefused(f"{where} a {why} address; it is not {verb}")
    return addresses


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class Watchdog:
    """Shuts the current socket when the deadline passes, whatever the exchange is blocked
    in (connect, TLS, headers, a byte-by-byte body); :meth:`fire` does it at once (a stop)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired and sock is not None:
                _shut(sock)

    def fire(self) -> None:
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


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``address`` (already checked) while ``Host`` names the URL's host."""

    def __init__(
        self, host: str, port: int, address: IPAddress, timeout: float, watchdog: Watchdog
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


class PinnedHTTPSConnection(PinnedHTTPConnection):
    """HTTPS to ``address``; SNI and the certificate check use the URL's host name."""

    default_port = http.client.HTTPS_PORT

    def __init__(
        self,
        host: str,
        port: int,
        address: IPAddress,
        timeout: float,
        watchdog: Watchdog,
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


def reason(exc: BaseException) -> str:
    """A short, fit-for-users reason for a network error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not valid: {exc.verify_message}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return exc.strerror or "name not known"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def failure(
    host: str, exc: BaseException, watchdog: Watchdog, policy: Policy, what: str = ""
) -> FetchFailed:
    """The :class:`FetchFailed` for ``exc``: past the deadline, or the network's reason."""
    if watchdog.fired or watchdog.remaining() <= 0:
        return FetchFailed(f"{host}: the transfer took longer than {policy.deadline_s:g} s")
    prefix = f"{what}: " if what else ""
    return FetchFailed(f"{host}: {prefix}{reason(exc)}")


def _connection(
    parts: SplitResult,
    address: IPAddress,
    policy: Policy,
    watchdog: Watchdog,
    context: ssl.SSLContext,
) -> PinnedHTTPConnection:
    scheme = parts.scheme.lower()
    host = ascii_host(parts.hostname or "")
    port = parts.port or SCHEMES[scheme]
    timeout = max(0.001, min(policy.connect_timeout_s, watchdog.remaining()))
    if scheme == "https":
        return PinnedHTTPSConnection(host, port, address, timeout, watchdog, context)
    return PinnedHTTPConnection(host, port, address, timeout, watchdog)


def open_request(
    parts: SplitResult,
    addresses: Iterable[IPAddress],
    policy: Policy,
    watchdog: Watchdog,
    context: ssl.SSLContext,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Connect to the first checked address that answers, send the request and read the
    answer's status and headers (the body is the caller's to read; close ``conn`` after).
    Raises :class:`FetchFailed` (connect, TLS, the deadline, a broken answer)."""
    host = ascii_host(parts.hostname or "")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    last: BaseException | None = None
    for address in addresses:
        conn = _connection(parts, address, policy, watchdog, context)
        try:
            conn.connect()
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            if isinstance(exc, ssl.SSLError):  # the address answered: TLS is what failed
                raise FetchFailed(f"{host}: {reason(exc)}") from None
            last = exc
            if watchdog.fired:
                break
            continue
        try:
            conn.sock.settimeout(max(0.001, watchdog.remaining()))
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise failure(host, exc, watchdog, policy) from None
    if last is None:
        raise FetchFailed(f"{host}: no address to connect to")
    raise failure(host, last, watchdog, policy, "cannot connect") from None
