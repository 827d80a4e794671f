"""The asyncio client: :class:`AsyncClient` and its :class:`AsyncJob`."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from lipsync.client.common import (
    _EVENTS_MISSING,
    _SSE,
    PREFIX,
    JobStatus,
    QualityStatus,
    StrPath,
    WaitTimeout,
    _error_from,
    _final,
    _finish,
    _measured,
    _part_path,
    _prepare,
    _remaining,
    _Reporter,
    _Settings,
    _status_event,
    _unreachable,
)


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
        audio: StrPath | Sequence[StrPath] | None = None,
        *,
        video_url: str | None = None,
        audio_url: str | Sequence[str] | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        evaluate: bool | None = None,
        **options: Any,
    ) -> AsyncJob:
        """As :meth:`Client.submit`."""
        sub = _prepare(
            video, audio, video_url, audio_url, idempotency_key, options, webhook_url, evaluate
        )
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

    async def wait_quality(
        self, timeout: float | None = None, poll_interval: float = 0.5
    ) -> QualityStatus | None:
        """As :meth:`Job.wait_quality`."""
        s = self.client._s
        deadline = None if timeout is None else time.monotonic() + timeout
        report = _Reporter(None)
        while True:
            if s.events is not False:
                final = await self._follow_events(report, deadline, _measured)
                if final is not None:
                    return final.quality
            status = await self.status()
            if status.measured:
                return status.quality
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(self.task_id, timeout or 0.0)
            await asyncio.sleep(
                poll_interval if left is None else max(0.0, min(poll_interval, left))
            )

    async def _follow_events(
        self,
        report: _Reporter,
        deadline: float | None,
        done: Callable[[JobStatus], bool] = _final,
    ) -> JobStatus | None:
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
                    if done(status):
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
