"""The one error shape every API answer >= 400 must have."""

from __future__ import annotations

from typing import Any

from service.errors import HTTP_ERROR_CODES


def assert_error_envelope(status: int, body: Any, code: str | None = None) -> dict[str, str]:
    """``body`` is ``{"detail": {"code", "message", "field"?}}`` with a documented code whose
    status is ``status`` (and ``code`` when given); returns the detail."""
    assert isinstance(body, dict) and set(body) == {"detail"}, body
    detail = body["detail"]
    assert isinstance(detail, dict) and {"code", "message"} <= set(detail), body
    assert set(detail) <= {"code", "message", "field"}, body
    assert detail["code"] in HTTP_ERROR_CODES, body
    assert HTTP_ERROR_CODES[detail["code"]][0] == status, (status, body)
    assert isinstance(detail["message"], str) and detail["message"].strip(), body
    if code is not None:
        assert detail["code"] == code, (code, body)
    return detail
