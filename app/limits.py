"""Request guards that run before any route, parsing or authentication.

:class:`BodyCap` refuses a body over its cap while it streams in (and at once when its
declared length is over): the upload route gets ``LIPSYNC_MAX_UPLOAD_BYTES``, every other
route ``LIPSYNC_MAX_REQUEST_BYTES`` (a few KB of JSON). :class:`HostCheck` answers 400 to a
``Host`` outside ``LIPSYNC_ALLOWED_HOSTS`` when no public base URL is set, so the URLs push
returns are never built from a header a client made up.
"""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"detail": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyCap:
    def __init__(self, app: ASGIApp, settings: Settings, upload_path: str) -> None:
        self.app = app
        self.settings = settings
        self.upload_path = upload_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope.get("path") == self.upload_path
        limit = self.settings.max_upload_bytes if upload else self.settings.max_request_bytes
        message = f"the request body is over {limit} bytes"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, 413, "too_large", message)
            return
        if upload:  # the upload parser counts the streamed bytes itself (app/uploads.py)
            await self.app(scope, receive, send)
            return
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, {"code": "too_large", "message": message})
            return event

        await self.app(scope, capped, send)


class HostCheck:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in settings.served_hosts}
        self.enabled = not settings.public_base_url and "*" not in self.allowed

    def _host_ok(self, scope: Scope) -> bool:
        host = Headers(scope=scope).get("host", "").lower()
        if host.startswith("["):  # [v6]:port
            name = host[1 : host.find("]")] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http" and not self._host_ok(scope):
            message = "this Host is not served here; set LIPSYNC_ALLOWED_HOSTS"
            await _send_error(send, 400, "bad_host", message)
            return
        await self.app(scope, receive, send)


class _Done(Exception):
    """The HEAD answer is complete: the route's body is not wanted."""


class HeadAsGet:
    """``HEAD`` on any ``GET`` route (HTTP says every GET resource answers HEAD, and ``curl
    -I`` on a download must work): the route runs as a ``GET`` and its status and headers
    (Content-Length, Content-Type, Accept-Ranges...) go out without the body. A streaming
    route (the event stream) is stopped at its first byte of body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_head(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                await send(message)
            elif message["type"] in ("http.response.body", "http.response.pathsend"):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                raise _Done

        try:
            await self.app({**scope, "method": "GET"}, receive, send_head)
        except _Done:
            pass
        except BaseException as exc:  # a route stopped inside a task group wraps it
            if not started or not _only_done(exc):
                raise


def _only_done(exc: BaseException) -> bool:
    if isinstance(exc, _Done):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_done(e) for e in exc.exceptions)
    return False
