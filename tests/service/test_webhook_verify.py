"""The receiver's check of a webhook (lipsync.client.verify_webhook) against hostile
signature headers and bodies: the only error it raises is WebhookSignatureError, which a
receiver answers with 400 (an OverflowError, ValueError or TypeError became a 500)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest

from lipsync.client import WebhookSignatureError, verify_webhook

SECRET = "s" * 32
BODY = b'{"task_id": "x", "state": "succeeded"}'


def _signed(body: bytes, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def test_a_good_signature_passes() -> None:
    assert verify_webhook(SECRET, _signed(BODY), BODY)["state"] == "succeeded"
    assert verify_webhook(SECRET, _signed(BODY).encode(), bytearray(BODY))["task_id"] == "x"


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("t=" + "9" * 400 + ",v1=" + "0" * 64, BODY),  # OverflowError before
        ("t=²,v1=" + "0" * 64, BODY),  # ValueError: '²'.isdigit() is true
        ("t=١٢٣,v1=" + "0" * 64, BODY),  # Arabic-Indic digits
        (None, BODY),
        ("", BODY),
        ("t=1,v1=", BODY),
        (f"t={int(time.time())},v1=é" + "0" * 63, BODY),  # TypeError in compare_digest
        (f"t={int(time.time())},v1=" + "0" * 64, BODY),  # does not match
        (f"t={int(time.time())},t=1,v1=" + "0" * 64, BODY),
        (123, BODY),  # not text at all
        ("SIGNED", "a str body"),  # TypeError: bytes + str
        ("SIGNED", None),
        ("SIGNED-LIST", b"[1, 2]"),  # signed, but not an object
        ("SIGNED-JUNK", b"\xff\xfe not json"),
        ("t=" + str(int(time.time()) - 10_000) + ",v1=" + "0" * 64, BODY),  # too old
    ],
)
def test_hostile_headers_and_bodies_raise_only_the_signature_error(header: Any, body: Any) -> None:
    if header == "SIGNED":
        header = _signed(BODY)
    elif header in ("SIGNED-LIST", "SIGNED-JUNK"):  # signed, so only its content is wrong
        header = _signed(body)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(SECRET, header, body)
