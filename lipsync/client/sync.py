"""The blocking client: :class:`Client` and its :class:`Job`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from lipsync.client.common import (
    _EVENTS_MISSING,
    _SSE,
    PREFIX,
    JobStatus,
    Progress,
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
        audio: StrPath | Sequence[StrPath] | None = None,
        *,
        video_url: str | None = None,
        audio_url: str | Sequence[str] | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        evaluate: bool | None = None,
        **options: Any,
    ) -> Job:
        """Push a job: a face ``video`` (or image) file or ``video_url``, and a speech
        ``audio`` file or ``audio_url`` (with ``segments``, a list of them: the segments'
        ``audio`` numbers index it); ``options`` are the push's option fields (e.g.
        ``engine="retrieval"``, ``pads=(0, 10, 0, 0)``). Checked before anything is sent.
        ``webhook_url``: the job's final status is POSTed there, signed (check it with
        :func:`lipsync.client.verify_webhook`); ``job.status().webhook`` tells how that went.
        ``evaluate=False``: the service does not measure the result (``status.quality``
        is then ``skipped``); by default it measures it after the result is ready."""
        sub = _prepare(
            video, audio, video_url, audio_url, idempotency_key, options, webhook_url, evaluate
        )
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

    def wait_quality(
        self, timeout: float | None = None, poll_interval: float = 0.5
    ) -> QualityStatus | None:
        """Block until the job and the measurement of its result are over (call it after
        :meth:`wait` and :meth:`download`: the result is ready before its measurement);
        its final :class:`QualityStatus` (``ready``, ``failed`` or ``skipped``), None when
        there is none (the job did not succeed). After ``timeout``: :class:`WaitTimeout`."""
        s = self.client._s
        deadline = None if timeout is None else time.monotonic() + timeout
        report = _Reporter(None)
        while True:
            if s.events is not False:
                final = self._follow_events(report, deadline, _measured)
                if final is not None:
                    return final.quality
            status = self.status()
            if status.measured:
                return status.quality
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(self.task_id, timeout or 0.0)
            time.sleep(poll_interval if left is None else max(0.0, min(poll_interval, left)))

    def _follow_events(
        self,
        report: _Reporter,
        deadline: float | None,
        done: Callable[[JobStatus], bool] = _final,
    ) -> JobStatus | None:
        """The status that is ``done`` (default: final) from the event stream; None when
        the stream ended, stalled or is missing (then the caller polls once)."""
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
