"""Uploads over real HTTP: a chunked body past the cap, and malformed forms.

The API runs with a 4 MB cap and its own TMPDIR, so both the upload area and any temporary
space it might spool to are measured while a chunked upload (no Content-Length) streams in.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.app import service_harness as sh

CAP = 4 * 1024 * 1024
CHUNK = 64 * 1024


def _bytes_under(*roots: Path) -> int:
    total = 0
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # removed while we walk
                    total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


@pytest.fixture(scope="module")
def capped(redis_server: sh.RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("capped")
    tmpdir = root / "tmp"
    tmpdir.mkdir()
    with sh.service(redis_server, root, broker_db=8, LIPSYNC_MAX_UPLOAD_BYTES=str(CAP)) as svc:
        svc.start_api(TMPDIR=str(tmpdir))
        yield svc, tmpdir


def test_chunked_upload_past_the_cap_is_413_with_disk_bounded(capped: Any) -> None:
    """No Content-Length, 64 KiB chunks, sent slowly near the cap: the API answers 413 once
    the cap is passed; the bytes on disk (uploads and TMPDIR) never exceed the cap plus one
    chunk, and go back to the baseline afterwards."""
    svc, tmpdir = capped
    uploads = svc.data_dir / "uploads"
    baseline = _bytes_under(uploads, tmpdir)
    host = urlsplit(svc.base_url)
    boundary = "----lipsync-chunked"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    block = os.urandom(CHUNK)
    peak = sent = 0
    reply = b""
    t0 = time.monotonic()
    with socket.create_connection((host.hostname, host.port), timeout=30) as sock:
        sock.sendall(
            (
                "POST /api/v1/lipsync/push HTTP/1.1\r\n"
                f"Host: {host.hostname}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        data = head
        while sent < 4 * CAP:  # bounded: the cap is passed long before this
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered
            try:
                sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(data)
            data = block
            if sent > CAP - 8 * CHUNK:
                time.sleep(0.02)  # let the server write each chunk, then measure
            peak = max(peak, _bytes_under(uploads, tmpdir) - baseline)
        while b"\r\n\r\n" not in reply:
            got = sock.recv(65536)
            if not got:
                break
            reply += got
    answered_s = time.monotonic() - t0
    status = int(reply.split(b" ", 2)[1])
    assert status == 413, reply[:300]
    assert b"too_large" in reply or b"exceeds" in reply
    assert 0 < peak <= CAP + CHUNK, peak
    assert sent <= CAP + 16 * CHUNK, "answered as soon as the cap was passed"
    deadline = time.monotonic() + 30  # the API may be slow to unlink on a loaded machine
    while _bytes_under(uploads, tmpdir) != baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _bytes_under(uploads, tmpdir) == baseline, "temporary space back to its baseline"
    assert not list(tmpdir.iterdir()), "nothing spooled to TMPDIR"
    print(f"FIGURE chunked_cap_bytes = {CAP}")
    print(f"FIGURE chunked_sent_bytes = {sent}")
    print(f"FIGURE chunked_peak_disk_bytes = {peak}")
    print(f"FIGURE chunked_answer_s = {answered_s:.2f}")


def test_bad_forms_are_422_with_a_message(capped: Any, media: dict[str, Path]) -> None:
    """Empty files, missing fields, wrong field names, not a form: 422, each with a message."""
    svc, _ = capped
    audio = ("speech.wav", media["speech"].read_bytes())
    image = ("face.png", media["astronaut"].read_bytes())
    cases: dict[str, dict[str, Any]] = {
        "empty audio": {"files": {"audio": ("a.wav", b""), "video": image}},
        "empty video": {"files": {"audio": audio, "video": ("v.png", b"")}},
        "both empty": {"files": {"audio": ("a.wav", b""), "video": ("v.png", b"")}},
        "no audio": {"files": {"video": image}},
        "no video": {"files": {"audio": audio}},
        "files named file/image": {"files": {"file": audio, "image": image}},
        "unknown option field": {"files": {"audio": audio, "video": image}, "data": {"x": "1"}},
        "audio sent twice": {"files": [("audio", audio), ("audio", audio), ("video", image)]},
        "json body": {"json": {"audio": "a.wav", "video": "v.png"}},
        "empty body": {"content": b"", "headers": {"content-type": "multipart/form-data"}},
        "form without boundary": {
            "content": b"x" * 10,
            "headers": {"content-type": "multipart/form-data"},
        },
        "cut off mid-part": {
            "content": b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"'
            b"\r\n\r\nRIFF",
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
    }
    uploads = svc.data_dir / "uploads"
    before = set(uploads.iterdir())
    with httpx.Client(base_url=svc.base_url, timeout=30) as c:
        for name, kwargs in cases.items():
            resp = c.post("/api/v1/lipsync/push", **kwargs)
            assert resp.status_code == 422, (name, resp.status_code, resp.text)
            detail = resp.json()["detail"]
            messages = (
                [detail["message"]] if isinstance(detail, dict) else [e["msg"] for e in detail]
            )
            assert messages and all(m.strip() for m in messages), (name, detail)
            print(f"UPLOAD {name:24s} 422 {messages[0]}")
    assert set(uploads.iterdir()) == before, "rejected uploads leave nothing behind"
    print(f"FIGURE bad_forms_422 = {len(cases)}")
