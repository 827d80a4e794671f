"""A Python client for a running lip-sync service (the HTTP API under ``/api/v1/lipsync``).

Needs the ``client`` extra (``pip install 'lipsync[client]'``, which brings httpx); httpx is
imported here only, never by ``import lipsync``::

    from lipsync.client import Client, LipsyncAPIError

    with Client("http://localhost:8000", api_key="...") as client:
        job = client.submit(video="face.mp4", audio="speech.wav", engine="retrieval")
        job.wait(progress=lambda stage, fraction: print(stage, fraction))
        job.download("out.mp4")
        job.delete()

:class:`AsyncClient` is the same with ``async``/``await``. Every failure is a
:class:`LipsyncAPIError` with the API's ``code``, ``message`` and ``field``; ``status`` is
the HTTP status, or 0 when the client refused or failed before any answer (a bad option,
a missing file, an unreachable server, a wait that timed out). Options are checked here
exactly as the server checks them (:func:`lipsync.options.parse_public_fields`) before any
byte is uploaded. A push refused with 429 or 503 is retried a bounded number of times,
after the server's ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from lipsync.errors import InvalidOption, LipsyncError

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "Client",
    "Job",
    "JobFailed",
    "JobStatus",
    "LipsyncAPIError",
    "WaitTimeout",
]

PREFIX = "/api/v1/lipsync"
FINAL_STATES = frozenset({"succeeded", "failed", "canceled"})
RETRY_STATUSES = frozenset({429, 503})
_EVENTS_MISSING = frozenset({404, 405, 501})  # a server without GET /events

Progress = Callable[[str, float], Any]
StrPath = str | os.PathLike[str]


class LipsyncAPIError(LipsyncError):
    """An error answer (``{"detail": {"code", "message", "field"?}}``) or a client-side refusal.

    ``status``: the HTTP status; 0 when there was no answer (refused before sending, server
    unreachable, wait timed out). ``retry_after``: seconds, when the server said."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, field={self.field!r})"
        )

    def to_dict(self) -> dict[str, str]:
        data = super().to_dict()
        if self.field:
            data["field"] = self.field
        return data


class JobFailed(LipsyncAPIError):
    """:meth:`Job.wait` saw the job end ``failed`` (``code`` is the job's error code) or
    ``canceled`` (code ``canceled``); ``job`` is its final status."""

    def __init__(self, job: JobStatus) -> None:
        error = job.error or {}
        code = error.get("code") or ("canceled" if job.state == "canceled" else "failed")
        message = error.get("message") or f"the job was {job.state}"
        super().__init__(200, code, message)
        self.job = job


class WaitTimeout(LipsyncAPIError):
    """:meth:`Job.wait` ran out of time; the job goes on (cancel it if it is not wanted)."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(0, "timeout", f"job {task_id} not finished after {timeout:g} s")


@dataclass(frozen=True)
class JobStatus:
    """What ``GET /status`` (or an ``event: status``) says about a job; ``raw`` is all of it."""

    task_id: str
    state: str
    progress: float
    stage: str
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobStatus:
        return cls(
            task_id=str(data.get("task_id", "")),
            state=str(data.get("state", "")),
            progress=float(data.get("progress") or 0.0),
            stage=str(data.get("stage") or ""),
            error=data.get("error"),
            result=data.get("result"),
            raw=dict(data),
        )


# -- what the sync and async clients share (no I/O) ------------------------------------------


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len(PREFIX)] if url.endswith(PREFIX) else url


def _form_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, str | int | float | os.PathLike):
        return str(value)
    raise LipsyncAPIError(0, "invalid_option", f"{name}: unsupported value {value!r}", name)


def _option_fields(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Options as form fields, checked as the server checks them (no request is sent)."""
    from lipsync.options import parse_public_fields

    fields = {k: _form_text(k, v) for k, v in options.items() if v is not None}
    try:
        parse_public_fields(fields)
    except InvalidOption as exc:
        raise LipsyncAPIError(0, exc.code, exc.message, exc.field) from None
    return [(k, v) for k, v in fields.items() if v.strip()]


@dataclass(frozen=True)
class _Submission:
    files: dict[str, Path]
    fields: list[tuple[str, str]]
    headers: dict[str, str]

    def open(self, stack: ExitStack) -> list[tuple[str, Any]]:
        """The multipart parts (text fields as parts without a file name, so a push with two
        URLs is multipart too); files opened in ``stack``, afresh for each attempt."""
        parts: list[tuple[str, Any]] = [(k, (None, v)) for k, v in self.fields]
        for name, path in self.files.items():
            handle: BinaryIO = stack.enter_context(path.open("rb"))
            parts.append((name, (path.name, handle)))
        return parts


def _prepare(
    video: StrPath | None,
    audio: StrPath | None,
    video_url: str | None,
    audio_url: str | None,
    idempotency_key: str | None,
    options: Mapping[str, Any],
) -> _Submission:
    files: dict[str, Path] = {}
    fields: list[tuple[str, str]] = []
    for name, path, url in (("video", video, video_url), ("audio", audio, audio_url)):
        if (path is None) == (url is None):
            message = f"give {name} (a file) or {name}_url, one of them"
            raise LipsyncAPIError(0, "missing_field", message, name)
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise LipsyncAPIError(0, "missing_field", f"{name}: no file {p}", name)
            files[name] = p
        else:
            fields.append((f"{name}_url", str(url)))
    fields += _option_fields(options)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return _Submission(files, fields, headers)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_from(response: httpx.Response) -> LipsyncAPIError:
    code, message, field_ = "", "", None
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict):
        code = str(detail.get("code") or "")
        message = str(detail.get("message") or "")
        field_ = detail.get("field")
    elif isinstance(detail, str):
        message = detail
    if not code:
        code = "http_" + str(response.status_code)
    if not message:
        message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return LipsyncAPIError(response.status_code, code, message, field_, _retry_after(response))


def _unreachable(base_url: str, exc: httpx.TransportError) -> LipsyncAPIError:
    what = type(exc).__name__
    return LipsyncAPIError(0, "unreachable", f"{base_url}: {what}: {exc}".rstrip(": "))


class _Backoff:
    """Waits between tries of a request answered 429/503: Retry-After, capped."""

    def __init__(self, retries: int, max_wait: float) -> None:
        self.retries = retries
        self.max_wait = max_wait
        self.tries = 0

    def delay(self, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again, or None to give up."""
        if response.status_code not in RETRY_STATUSES or self.tries >= self.retries:
            return None
        self.tries += 1
        wait = _retry_after(response)
        if wait is None:
            wait = 2.0 ** (self.tries - 1)
        return min(wait, self.max_wait)


class _SSE:
    """Server-Sent Events, line by line: yields (event, data) when an event is complete."""

    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if line == "":
            out = (self.event or "message", "\n".join(self.data)) if self.data else None
            self.event, self.data = "", []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None


def _status_event(event: str, data: str) -> JobStatus | None:
    if event != "status":
        return None
    try:
        return JobStatus.from_json(json.loads(data))
    except (ValueError, TypeError, AttributeError):
        return None


class _Reporter:
    """Calls ``progress(stage, fraction)`` when either changes."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.last: tuple[str, float] | None = None

    def __call__(self, status: JobStatus) -> Any:
        now = (status.stage, status.progress)
        if self.progress is None or now == self.last:
            return None
        self.last = now
        return self.progress(*now)


def _finish(status: JobStatus) -> JobStatus:
    if status.state != "succeeded":
        raise JobFailed(status)
    return status


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _part_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


class _Settings:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
    ) -> None:
        self.base_url = _base(base_url)
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.events: bool | None = None  # does the server have GET /events? (None: not known)

    def backoff(self) -> _Backoff:
        return _Backoff(self.max_retries, self.max_retry_wait)

    def events_timeout(self, deadline: float | None) -> httpx.Timeout:
        left = _remaining(deadline)
        read = 30.0 if left is None else max(0.1, min(30.0, left))
        return httpx.Timeout(self.timeout, read=read)


# -- synchronous ------------------------------------------------------------------------------


class Client:
    """A lip-sync service at ``base_url`` (e.g. ``http://localhost:8000``).

    ``timeout``: seconds for connecting and for each read or write of a request.
    ``max_retries``: tries after a 429/503 answer (each after its Retry-After, at most
    ``max_retry_wait`` seconds). Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
    ) -> None:
        self._s = _Settings(base_url, api_key, timeout, max_retries, max_retry_wait)
        self._http = httpx.Client(
            base_url=self._s.base_url + PREFIX, headers=self._s.headers, timeout=timeout
        )

    @property
    def base_url(self) -> str:
        return self._s.base_url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        backoff = self._s.backoff()
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise _unreachable(self._s.base_url, exc) from exc
            if response.is_success:
                return response
            delay = backoff.delay(response)
            if delay is None:
                raise _error_from(response)
            time.sleep(delay)

    def submit(
        self,
        video: StrPath | None = None,
        audio: StrPath | None = None,
        *,
        video_url: str | None = None,
        audio_url: str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """Push a job: a face ``video`` (or image) file or ``video_url``, and a speech
        ``audio`` file or ``audio_url``; ``options`` are the push's option fields (e.g.
        ``engine="retrieval"``, ``pads=(0, 10, 0, 0)``). Checked before anything is sent."""
        sub = _prepare(video, audio, video_url, audio_url, idempotency_key, options)
        backoff = self._s.backoff()
        while True:
            with ExitStack() as stack:
                try:
                    response = self._http.post("/push", files=sub.open(stack), headers=sub.headers)
                except httpx.TransportError as exc:
                    raise _unreachable(self._s.base_url, exc) from exc
            if response.is_success:
                return Job(self, response.json())
            delay = backoff.delay(response)
            if delay is None:
                raise _error_from(response)
            time.sleep(delay)

    def job(self, task_id: str) -> Job:
        """A job pushed earlier, by its id."""
        return Job(self, {"task_id": task_id})


class Job:
    """One pushed job: ``task_id``, and what can be done with it."""

    def __init__(self, client: Client, pushed: Mapping[str, Any]) -> None:
        self.client = client
        self.task_id: str = str(pushed["task_id"])
        self.status_url: str | None = pushed.get("status_url")
        self.download_url: str | None = pushed.get("download_url")

    def __repr__(self) -> str:
        return f"Job({self.task_id!r})"

    def status(self) -> JobStatus:
        response = self.client._request("GET", "/status", params={"task_id": self.task_id})
        return JobStatus.from_json(response.json())

    def wait(
        self,
        progress: Progress | None = None,
        timeout: float | None = None,
        poll_interval: float = 0.5,
    ) -> JobStatus:
        """Block until the job ends; its final status if it succeeded, else
        :class:`JobFailed`. ``progress(stage, fraction)`` is called as it changes. Follows
        ``GET /events`` when the server has it, else polls ``GET /status``. After ``timeout``
        seconds: :class:`WaitTimeout` (the job goes on)."""
        s = self.client._s
        deadline = None if timeout is None else time.monotonic() + timeout
        report = _Reporter(progress)
        while True:
            if s.events is not False:
                final = self._follow_events(report, deadline)
                if final is not None:
                    return _finish(final)
            status = self.status()
            report(status)
            if status.final:
                return _finish(status)
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(self.task_id, timeout or 0.0)
            time.sleep(poll_interval if left is None else max(0.0, min(poll_interval, left)))

    def _follow_events(self, report: _Reporter, deadline: float | None) -> JobStatus | None:
        """The final status from the event stream; None when the stream ended, stalled or
        is missing (then the caller polls once)."""
        s = self.client._s
        params = {"task_id": self.task_id}
        try:
            with self.client._http.stream(
                "GET", "/events", params=params, timeout=s.events_timeout(deadline)
            ) as response:
                if response.status_code in _EVENTS_MISSING:
                    s.events = False
                    return None
                kind = response.headers.get("content-type", "")
                if not response.is_success or not kind.startswith("text/event-stream"):
                    if response.status_code in (401, 403):
                        response.read()
                        raise _error_from(response)
                    return None
                s.events = True
                parser = _SSE()
                for line in response.iter_lines():
                    event = parser.feed(line)
                    status = _status_event(*event) if event else None
                    if status is None:
                        continue
                    report(status)
                    if status.final:
                        return status
                    left = _remaining(deadline)
                    if left is not None and left <= 0:
                        return None
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
            return None
        except httpx.TransportError as exc:
            raise _unreachable(s.base_url, exc) from exc
        return None

    def download(self, path: StrPath) -> Path:
        """Save the result MP4 at ``path`` (written beside it, then renamed into place)."""
        dest = Path(path)
        part = _part_path(dest)
        backoff = self.client._s.backoff()
        params = {"task_id": self.task_id}
        while True:
            try:
                with self.client._http.stream("GET", "/download", params=params) as response:
                    if response.is_success:
                        with part.open("wb") as out:
                            for chunk in response.iter_bytes(1 << 20):
                                out.write(chunk)
                        os.replace(part, dest)
                        return dest
                    response.read()
            except httpx.TransportError as exc:
                part.unlink(missing_ok=True)
                raise _unreachable(self.client._s.base_url, exc) from exc
            delay = backoff.delay(response)
            if delay is None:
                raise _error_from(response)
            time.sleep(delay)

    def cancel(self) -> JobStatus:
        """Ask the job to stop (a queued one never starts); 409 ``finished`` if it ended."""
        response = self.client._request("POST", "/terminate", json={"task_id": self.task_id})
        return JobStatus.from_json(response.json())

    def delete(self) -> None:
        """Cancel the job if it runs and remove its inputs, result and record."""
        self.client._request("DELETE", f"/jobs/{self.task_id}")


# -- asynchronous -----------------------------------------------------------------------------


class AsyncClient:
    """:class:`Client` with ``async`` methods (``async with AsyncClient(...) as client``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
    ) -> None:
        self._s = _Settings(base_url, api_key, timeout, max_retries, max_retry_wait)
        self._http = httpx.AsyncClient(
            base_url=self._s.base_url + PREFIX, headers=self._s.headers, timeout=timeout
        )

    @property
    def base_url(self) -> str:
        return self._s.base_url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        backoff = self._s.backoff()
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise _unreachable(self._s.base_url, exc) from exc
            if response.is_success:
                return response
            delay = backoff.delay(response)
            if delay is None:
                raise _error_from(response)
            await asyncio.sleep(delay)

    async def submit(
        self,
        video: StrPath | None = None,
        audio: StrPath | None = None,
        *,
        video_url: str | None = None,
        audio_url: str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> AsyncJob:
        """As :meth:`Client.submit`."""
        sub = _prepare(video, audio, video_url, audio_url, idempotency_key, options)
        backoff = self._s.backoff()
        while True:
            with ExitStack() as stack:
                try:
                    response = await self._http.post(
                        "/push", files=sub.open(stack), headers=sub.headers
                    )
                except httpx.TransportError as exc:
                    raise _unreachable(self._s.base_url, exc) from exc
            if response.is_success:
                return AsyncJob(self, response.json())
            delay = backoff.delay(response)
            if delay is None:
                raise _error_from(response)
            await asyncio.sleep(delay)

    def job(self, task_id: str) -> AsyncJob:
        return AsyncJob(self, {"task_id": task_id})


async def _call(progress_result: Any) -> None:
    if inspect.isawaitable(progress_result):
        await progress_result


class AsyncJob:
    """:class:`Job` with ``async`` methods; ``progress`` may be a plain or async function."""

    def __init__(self, client: AsyncClient, pushed: Mapping[str, Any]) -> None:
        self.client = client
        self.task_id: str = str(pushed["task_id"])
        self.status_url: str | None = pushed.get("status_url")
        self.download_url: str | None = pushed.get("download_url")

    def __repr__(self) -> str:
        return f"AsyncJob({self.task_id!r})"

    async def status(self) -> JobStatus:
        params = {"task_id": self.task_id}
        response = await self.client._request("GET", "/status", params=params)
        return JobStatus.from_json(response.json())

    async def wait(
        self,
        progress: Callable[[str, float], Any | Awaitable[Any]] | None = None,
        timeout: float | None = None,
        poll_interval: float = 0.5,
    ) -> JobStatus:
        """As :meth:`Job.wait`."""
        s = self.client._s
        deadline = None if timeout is None else time.monotonic() + timeout
        report = _Reporter(progress)
        while True:
            if s.events is not False:
                final = await self._follow_events(report, deadline)
                if final is not None:
                    return _finish(final)
            status = await self.status()
            await _call(report(status))
            if status.final:
                return _finish(status)
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(self.task_id, timeout or 0.0)
            await asyncio.sleep(
                poll_interval if left is None else max(0.0, min(poll_interval, left))
            )

    async def _follow_events(self, report: _Reporter, deadline: float | None) -> JobStatus | None:
        s = self.client._s
        params = {"task_id": self.task_id}
        try:
            async with self.client._http.stream(
                "GET", "/events", params=params, timeout=s.events_timeout(deadline)
            ) as response:
                if response.status_code in _EVENTS_MISSING:
                    s.events = False
                    return None
                kind = response.headers.get("content-type", "")
                if not response.is_success or not kind.startswith("text/event-stream"):
                    if response.status_code in (401, 403):
                        await response.aread()
                        raise _error_from(response)
                    return None
                s.events = True
                parser = _SSE()
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    status = _status_event(*event) if event else None
                    if status is None:
                        continue
                    await _call(report(status))
                    if status.final:
                        return status
                    left = _remaining(deadline)
                    if left is not None and left <= 0:
                        return None
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
            return None
        except httpx.TransportError as exc:
            raise _unreachable(s.base_url, exc) from exc
        return None

    async def download(self, path: StrPath) -> Path:
        """As :meth:`Job.download`."""
        dest = Path(path)
        part = _part_path(dest)
        backoff = self.client._s.backoff()
        params = {"task_id": self.task_id}
        while True:
            try:
                async with self.client._http.stream("GET", "/download", params=params) as response:
                    if response.is_success:
                        with part.open("wb") as out:
                            async for chunk in response.aiter_bytes(1 << 20):
                                out.write(chunk)
                        os.replace(part, dest)
                        return dest
                    await response.aread()
            except httpx.TransportError as exc:
                part.unlink(missing_ok=True)
                raise _unreachable(self.client._s.base_url, exc) from exc
            delay = backoff.delay(response)
            if delay is None:
                raise _error_from(response)
            await asyncio.sleep(delay)

    async def cancel(self) -> JobStatus:
        """As :meth:`Job.cancel`."""
        body = {"task_id": self.task_id}
        response = await self.client._request("POST", "/terminate", json=body)
        return JobStatus.from_json(response.json())

    async def delete(self) -> None:
        """As :meth:`Job.delete`."""
        await self.client._request("DELETE", f"/jobs/{self.task_id}")
