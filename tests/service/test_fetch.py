"""The URL-input fetcher (service/fetch.py) against real loopback HTTP servers.

Refusals are proven twice: the would-be victim server counts the connections it accepts
(none), and the fetch runs in a child process under ``strace`` whose every connect() is
listed (none to the refused address; for a redirect, only the allowed first hop)."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from lipsync.errors import Canceled, LipsyncError
from service.fetch import (
    MAX_URL_LENGTH,
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    InvalidURL,
    check_url,
    fetch,
    refusal,
)
from service.settings import Settings
from tests.app.service_harness import REPO, traced_connects
from tests.service.loopback_http import LoopbackHTTP, Tarpit

MEDIA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture(scope="module")
def origin() -> Iterator[LoopbackHTTP]:
    """The server a test means to fetch from (allowed where a test says so)."""
    server = LoopbackHTTP("127.0.0.1")
    server.files["a.mp4"] = (MEDIA, "video/mp4")
    yield server
    server.close()


def policy(*allow: str, max_bytes: int = 1_000_000, deadline_s: float = 10.0) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=max_bytes, connect_timeout_s=2.0, deadline_s=deadline_s, allow=frozenset(allow)
    )


# -- refused before any byte: in a child process under strace ------------------------------

_CHILD = """
import json, sys
from pathlib import Path
from lipsync.errors import LipsyncError
from service.fetch import FetchPolicy, fetch
url, dest, allow = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
policy = FetchPolicy(max_bytes=10**6, connect_timeout_s=2.0, deadline_s=10.0,
                     allow=frozenset(h for h in allow.split(",") if h))
try:
    got = fetch(url, dest, policy)
    print(json.dumps({"size": got.size}))
except LipsyncError as exc:
    print(json.dumps({"code": exc.code, "message": exc.message}))
"""


def _fetch_traced(url: str, dest: Path, allow: str = "") -> tuple[dict[str, Any], list[str]]:
    """Fetch ``url`` in a child under strace: its answer and every inet connect() it made."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    trace = dest.with_suffix(".strace")
    cmd = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace)]
    cmd += [sys.executable, "-c", _CHILD, url, str(dest), allow]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    inet = [c for c in traced_connects(trace.read_text()) if c.startswith("inet")]
    return answer, inet


def _cases(victim: LoopbackHTTP, victim6: LoopbackHTTP) -> dict[str, str]:
    secret = "/file/secret"
    return {
        "127.0.0.1": victim.url(secret),
        "[::1]": victim6.url(secret),
        "10.0.0.1": "http://10.0.0.1/file/secret",
        "169.254.169.254": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "localhost (a name resolving to loopback)": victim.url(secret, host="localhost"),
        "[::ffff:127.0.0.1] (IPv4-mapped)": f"http://[::ffff:127.0.0.1]:{victim.port}{secret}",
        "[::ffff:169.254.169.254]": "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "0.0.0.0": f"http://0.0.0.0:{victim.port}{secret}",
        "100.64.0.1 (carrier-grade NAT)": "http://100.64.0.1/x",
        "224.0.0.1 (multicast)": "http://224.0.0.1/x",
        "file://": "file:///etc/passwd",
        "gopher://": f"gopher://127.0.0.1:{victim.port}/_GET%20/file/secret",
    }


CASE_NAMES = [
    "127.0.0.1",
    "[::1]",
    "10.0.0.1",
    "169.254.169.254",
    "localhost (a name resolving to loopback)",
    "[::ffff:127.0.0.1] (IPv4-mapped)",
    "[::ffff:169.254.169.254]",
    "0.0.0.0",
    "100.64.0.1 (carrier-grade NAT)",
    "224.0.0.1 (multicast)",
    "file://",
    "gopher://",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_refused_before_any_connection(
    case: str, victim: LoopbackHTTP, victim6: LoopbackHTTP, tmp_path: Path
) -> None:
    url = _cases(victim, victim6)[case]
    dest = tmp_path / "video.part"
    answer, connects = _fetch_traced(url, dest, allow="")
    assert answer.get("code") == "fetch_refused", answer
    assert connects == [], f"{case}: the fetcher connected to {connects}"
    assert not dest.exists()
    assert victim.settled_connections() == 0
    assert victim6.settled_connections(0) == 0


def test_redirect_to_loopback_from_an_allowed_host_is_refused(
    origin: LoopbackHTTP, victim: LoopbackHTTP, tmp_path: Path
) -> None:
    hop = quote(victim.url("/file/secret"), safe="")
    url = origin.url(f"/to?url={hop}", host="localhost")
    served = len(origin.requests)
    answer, connects = _fetch_traced(url, tmp_path / "v.part", allow="localhost")
    assert answer.get("code") == "fetch_refused", answer
    assert "127.0.0.1 is a loopback address" in answer["message"]
    assert connects and all(c.endswith(f":{origin.port}") for c in connects), connects
    assert len(origin.requests) == served + 1  # the allowed hop was asked, the next one never
    assert victim.settled_connections() == 0


def test_redirect_to_another_scheme_is_refused(origin: LoopbackHTTP, tmp_path: Path) -> None:
    url = origin.url(f"/to?url={quote('file:///etc/passwd', safe='')}")
    with pytest.raises(FetchRefused, match="file://"):
        fetch(url, tmp_path / "v.part", policy("127.0.0.1"))
    assert not (tmp_path / "v.part").exists()


# -- what is allowed works ------------------------------------------------------------------


def test_allowed_host_is_fetched_with_its_name_in_host(
    origin: LoopbackHTTP, tmp_path: Path
) -> None:
    got = fetch(origin.url("/file/a.mp4", host="localhost"), tmp_path / "v", policy("localhost"))
    assert got.size == len(MEDIA) and (tmp_path / "v").read_bytes() == MEDIA
    assert got.content_type == "video/mp4" and got.redirects == 0
    path, headers = origin.requests[-1]
    assert path == "/file/a.mp4"
    assert headers["Host"] == f"localhost:{origin.port}"  # the name, though the IP was dialled
    assert headers["Accept-Encoding"] == "identity"


def test_allowed_ip_literals(origin: LoopbackHTTP, victim6: LoopbackHTTP, tmp_path: Path) -> None:
    assert fetch(origin.url("/file/a.mp4"), tmp_path / "a", policy("127.0.0.1")).size == len(MEDIA)
    victim6.files["a.mp4"] = (MEDIA, "video/mp4")
    got = fetch(victim6.url("/file/a.mp4"), tmp_path / "b", policy("::1"))
    assert got.size == len(MEDIA)


def test_allow_list_is_exact(origin: LoopbackHTTP, tmp_path: Path) -> None:
    """Allowing ``localhost`` does not allow 127.0.0.1 (nor the other way round)."""
    with pytest.raises(FetchRefused):
        fetch(origin.url("/file/a.mp4"), tmp_path / "v", policy("localhost"))
    with pytest.raises(FetchRefused):
        fetch(origin.url("/file/a.mp4", host="localhost"), tmp_path / "v", policy("127.0.0.1"))


def test_up_to_three_redirects_are_followed_a_fourth_is_refused(
    origin: LoopbackHTTP, tmp_path: Path
) -> None:
    got = fetch(origin.url("/redirect/3/a.mp4"), tmp_path / "v", policy("127.0.0.1"))
    assert got.size == len(MEDIA) and got.redirects == 3
    assert got.url.endswith("/file/a.mp4")
    before = len(origin.requests)
    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        fetch(origin.url("/redirect/4/a.mp4"), tmp_path / "w", policy("127.0.0.1"))
    assert len(origin.requests) - before == 4  # the 4th redirect was read, never followed
    assert not (tmp_path / "w").exists()


# -- size cap and time limits ---------------------------------------------------------------


def test_size_cap_declared_and_streamed(origin: LoopbackHTTP, tmp_path: Path) -> None:
    dest = tmp_path / "v"
    with pytest.raises(LipsyncError) as declared:
        fetch(origin.url("/declared?bytes=50000000"), dest, policy("127.0.0.1", max_bytes=4096))
    assert declared.value.code == "too_large" and "50000000" in declared.value.message
    with pytest.raises(LipsyncError) as streamed:  # no Content-Length: counted as it comes
        fetch(origin.url("/stream?bytes=5000000"), dest, policy("127.0.0.1", max_bytes=4096))
    assert streamed.value.code == "too_large"
    assert not dest.exists()
    got = fetch(origin.url("/stream?bytes=4096"), dest, policy("127.0.0.1", max_bytes=4096))
    assert got.size == 4096  # exactly the cap is fine


def test_slow_server_hits_the_deadline(origin: LoopbackHTTP, tmp_path: Path) -> None:
    for path in ("/drip?every=0.1", "/drip-headers?every=0.1"):
        start = time.monotonic()
        with pytest.raises(FetchFailed, match="longer than 1 s"):
            fetch(origin.url(path), tmp_path / "v", policy("127.0.0.1", deadline_s=1.0))
        assert time.monotonic() - start < 3.0, path
        assert not (tmp_path / "v").exists()


def test_http_and_network_errors_are_fetch_failed(origin: LoopbackHTTP, tmp_path: Path) -> None:
    with pytest.raises(FetchFailed, match="HTTP 404"):
        fetch(origin.url("/status/404"), tmp_path / "v", policy("127.0.0.1"))
    with pytest.raises(FetchFailed, match="HTTP 500"):
        fetch(origin.url("/status/500"), tmp_path / "v", policy("127.0.0.1"))
    closed = LoopbackHTTP("127.0.0.1")
    closed.close()  # nothing listens on its port any more
    with pytest.raises(FetchFailed, match="cannot connect"):
        fetch(closed.url("/x"), tmp_path / "v", policy("127.0.0.1"))
    with pytest.raises(FetchFailed, match="does not resolve"):
        fetch("http://no-such-host.invalid/x", tmp_path / "v", policy())
    assert not (tmp_path / "v").exists()


def test_cancel_stops_the_transfer(origin: LoopbackHTTP, tmp_path: Path) -> None:
    with pytest.raises(Canceled):
        fetch(origin.url("/drip?every=0.05"), tmp_path / "v", policy("127.0.0.1"), lambda: True)
    assert not (tmp_path / "v").exists()


def test_cancel_while_a_server_never_answers(tmp_path: Path) -> None:
    """A server that accepts and never sends its headers: a cancel ends the fetch at
    once, not at the deadline (600 s by default; here 60)."""
    tarpit = Tarpit()
    try:
        asked_at: list[float] = []

        def cancel_after_one_second() -> bool:
            if time.monotonic() - start >= 1.0:
                asked_at.append(time.monotonic())
                return True
            return False

        start = time.monotonic()
        with pytest.raises(Canceled):
            fetch(
                tarpit.url(),
                tmp_path / "v",
                policy("127.0.0.1", deadline_s=60.0),
                cancel_after_one_second,
            )
        stopped = time.monotonic()
        assert tarpit.held, "the fetch never connected"
        assert stopped - asked_at[0] < 0.5, stopped - asked_at[0]
        assert not (tmp_path / "v").exists()
    finally:
        tarpit.close()


def test_progress_of_the_body(origin: LoopbackHTTP, tmp_path: Path) -> None:
    """``on_bytes`` follows the body: with a Content-Length it reaches the whole size."""
    seen: list[tuple[int, int | None]] = []
    fetch(
        origin.url("/file/a.mp4"),
        tmp_path / "v",
        policy("127.0.0.1"),
        on_bytes=lambda got, expected: seen.append((got, expected)),
    )
    assert seen and seen[-1] == (len(MEDIA), len(MEDIA))
    assert [g for g, _ in seen] == sorted(g for g, _ in seen)


# -- the pieces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.1.2.3", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("::127.0.0.1", "loopback"),
        ("240.0.0.1", None),  # reserved: refused (whatever the label)
        ("192.0.2.1", None),  # documentation: not global
        ("8.8.8.8", "ok"),
        ("2606:4700:4700::1111", "ok"),
        ("::ffff:8.8.8.8", "ok"),
    ],
)
def test_address_classes(address: str, reason: str | None) -> None:
    got = refusal(ipaddress.ip_address(address))
    if reason == "ok":
        assert got is None
    elif reason is None:
        assert got is not None
    else:
        assert got == reason


def test_url_form() -> None:
    assert check_url("https://Media.Example.com:8443/a.mp4?sig=x").hostname == "media.example.com"
    for url in ("file:///etc/passwd", "gopher://h/", "ftp://h/x", "javascript:alert(1)", "//h/x"):
        with pytest.raises(FetchRefused):
            check_url(url)
    for url in (
        "",
        "http://",
        "http:///x",
        "http://a b/",
        "http://h/\n",
        "http://user:pw@h/",
        "http://h:0/",
        "http://h:99999/",
        "http://[::1/",
        "http://h/ü",
        "http://h/" + "a" * MAX_URL_LENGTH,
    ):
        with pytest.raises(InvalidURL):
            check_url(url)


def test_allow_list_setting_is_normalized() -> None:
    settings = Settings(fetch_allow=" Media.Example.com. , [::1],,127.0.0.1 ")
    assert settings.fetch_allow == ["media.example.com", "::1", "127.0.0.1"]
    assert FetchPolicy.from_settings(settings).allows("MEDIA.example.com")
    assert Settings().fetch_allow == []
