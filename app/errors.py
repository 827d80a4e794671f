"""One error shape for every answer: ``{"detail": {"code", "message", "field"?}}``.

Routes raise :func:`problem`; FastAPI's own errors (validation, unknown routes, wrong
methods) and anything unexpected are turned into the same shape here, with codes from
:data:`service.errors.HTTP_ERROR_CODES`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import DEFAULT_CODES

log = logging.getLogger("lipsync.api")


def problem(
    status_code: int,
    message: str,
    code: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTTPException:
    """An error answer in the standard shape (raise it)."""
    detail: dict[str, str] = {"code": code, "message": message}
    if field:
        detail["field"] = field
    return HTTPException(status_code, detail=detail, headers=headers)


def error_body(status_code: int, detail: Any) -> dict[str, Any]:
    """``detail`` in the standard shape: a dict with a code is kept, text gets the status's
    default code."""
    if isinstance(detail, dict) and "code" in detail and "message" in detail:
        return {"detail": detail}
    code = DEFAULT_CODES.get(status_code, "bad_request" if status_code < 500 else "internal_error")
    return {"detail": {"code": code, "message": str(detail)}}


def _field_of(loc: tuple[Any, ...]) -> str | None:
    names = [str(p) for p in loc if p not in ("body", "query", "header", "path", "cookie")]
    return names[-1] if names else None


def _validation_message(error: dict[str, Any]) -> tuple[int, str, str, str | None]:
    """(status, code, message, field) for FastAPI's first validation error."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        return 400, "bad_request", "the body is not valid JSON", None
    field = _field_of(loc)
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return 422, "invalid_request", f"{field}: {message}" if field else message, field


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = error_body(exc.status_code, exc.detail)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        status_code, code, message, field = _validation_message(errors[0] if errors else {})
        detail = {"code": code, "message": message}
        if field:
            detail["field"] = field
        return JSONResponse({"detail": detail}, status_code=status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s", request.url.path, exc_info=exc)
        detail = {"code": "internal_error", "message": "internal error; see the server log"}
        return JSONResponse({"detail": detail}, status_code=500)
