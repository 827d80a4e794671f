"""The address and URL checks of the SSRF guard (:mod:`service.fetch`): a URL's form, and
whether an address may be connected to (loopback, private, link-local, multicast, reserved,
unspecified, carrier-grade NAT and IPv4 embedded in IPv6 are refused)."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from lipsync.errors import LipsyncError, TooLarge

MAX_URL_LENGTH = 1024  # also the multipart parser's cap on one text field
MAX_REDIRECTS = 3
SCHEMES: dict[str, int] = {"http": 80, "https": 443}
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024
USER_AGENT = "lipsync-fetch/1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


class InvalidURL(LipsyncError):
    """A URL that is not a well-formed absolute http(s) URL (the API answers 422)."""

    code = "invalid_url"


class FetchRefused(LipsyncError):
    """A URL refused before any byte was fetched from it: its scheme, or an address."""

    code = "fetch_refused"


class FetchFailed(LipsyncError):
    """The fetch failed: DNS, connect, TLS, an HTTP error status, a timeout."""

    code = "fetch_failed"


FETCH_ERROR_CODES: tuple[str, ...] = (FetchRefused.code, FetchFailed.code, TooLarge.code)


def normalize_host(host: str) -> str:
    """A host as compared with the allow-list: lower case, no brackets, no trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def check_url(url: str) -> SplitResult:
    """The URL split, if it is a well-formed absolute ``http``/``https`` URL with a host.

    Raises :class:`FetchRefused` for another scheme (``file``, ``gopher``...), and
    :class:`InvalidURL` for anything malformed (too long, spaces or control characters,
    no host, credentials, a bad port)."""
    if not isinstance(url, str) or not url:
        raise InvalidURL("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise InvalidURL("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"the URL cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else "a URL without a scheme"
        raise FetchRefused(f"only http and https URLs are fetched, not {shown}")
    if "@" in parts.netloc:
        raise InvalidURL("credentials in the URL are not accepted")
    host = parts.hostname or ""
    if not normalize_host(host):
        raise InvalidURL("the URL has no host")
    if port == 0:
        raise InvalidURL("the URL's port must be 1-65535")
    if not (parts.path + parts.query).isascii():
        raise InvalidURL("non-ASCII characters in the URL's path must be percent-encoded")
    ascii_host(host)
    return parts


def ascii_host(host: str) -> str:
    """The host as sent on the wire (IDNA for a non-ASCII name)."""
    host = normalize_host(host)
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidURL("the URL's host name is not a valid domain name") from None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be fetched from (a short category), or None when it is a
    globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal(embedded)
            return reason or None
        if address in _NAT64_LOCAL:
            return "private"
    for reason, hit in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("carrier-grade NAT", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("non-global", not address.is_global),
    ):
        if hit:
            return reason
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped, 6to4, NAT64 or IPv4-compatible."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
