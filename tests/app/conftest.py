"""Fixtures of the service tests: the session's ``stack`` (a private Redis, one real Celery
worker and the real API over HTTP), a test module's own deployment (``svc``, as its
``DEPLOYMENT`` declares) and headless Chromium (``browser``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app import service_harness as sh
from tests.app.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.app.openapi_check import api_client
from tests.app.service_harness import KEY_A, KEY_B, PREFIX, push
from tests.service.loopback_http import LoopbackHTTP


@dataclass
class Stack:
    base_url: str
    redis: sh.RedisServer
    data_dir: Path
    logdir: Path
    api: sh.Proc
    worker: sh.Proc
    env: dict[str, str]

    def client(self, key: str | None = KEY_A) -> httpx.Client:
        """A client whose every answer is checked against the API's OpenAPI document."""
        headers = {"X-API-Key": key} if key else {}
        return api_client(self.base_url, headers=headers, timeout=60)

    def logs(self) -> str:
        return f"--- worker ---\n{sh.tail(self.worker.log)}\n--- api ---\n{sh.tail(self.api.log)}"


@pytest.fixture(scope="session")
def stack(
    redis_server: sh.RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Worker + API sharing a data dir; the API requires one of two API keys."""
    root = tmp_path_factory.mktemp("service")
    data_dir = root / "data"
    env = sh.service_env(
        redis_server.url, data_dir, LIPSYNC_API_KEYS=f"{KEY_A},{KEY_B}", LIPSYNC_RESULT_TTL_S="3600"
    )
    worker = sh.start_worker(env, root)
    with sh.running(worker):
        sh.wait_worker(redis_server.url, PREFIX, worker)
        api, base = sh.start_api(env, root)
        with sh.running(api):
            yield Stack(base, redis_server, data_dir, root, api, worker, env)


@pytest.fixture(scope="module")
def svc(
    request: pytest.FixtureRequest,
    redis_server: sh.RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[sh.Service]:
    """The test module's own deployment, as its ``DEPLOYMENT`` (:class:`~tests.app.
    service_harness.Deployment`) declares: its worker and API started, all of it stopped
    once the module's tests are done."""
    spec: sh.Deployment = request.module.DEPLOYMENT
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with sh.service(redis_server, root, spec.broker_db, **spec.env) as service:
        if spec.worker:
            service.start_worker()
        service.start_api(**spec.api_env)
        yield service


@pytest.fixture(scope="module")
def media_server(media: dict[str, Path]) -> Iterator[LoopbackHTTP]:
    """The test media served over HTTP on loopback, for URL inputs: ``/file/face.png``,
    ``face.mp4``, ``speech.wav`` and ``notes.mp4`` (text named as a video)."""
    served = {
        "face.png": ("astronaut", "image/png"),
        "face.mp4": ("face_video", "video/mp4"),
        "speech.wav": ("speech", "audio/wav"),
        "notes.mp4": ("text_mp4", "video/mp4"),
    }
    with LoopbackHTTP("127.0.0.1") as server:
        server.files.update({n: (media[k].read_bytes(), t) for n, (k, t) in served.items()})
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's, driven by playwright) for the module's tests; a module
    using it carries :data:`tests.app.chromium.NEEDED` among its marks."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    text_short = "Hello there. This is a test."
    text_long = (
        "This is a much longer piece of speech, made so that the job runs for a while. "
        "It keeps talking about nothing in particular, sentence after sentence, so that "
        "there is time to cancel the job while the worker is still rendering frames, and "
        "then to check that nothing more happens after it has been told to stop."
    )
    video = sh.face_video(d / "face.mp4", seconds=2.0)
    raw = video.read_bytes()
    (d / "truncated.mp4").write_bytes(raw[: len(raw) // 2])
    (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    return {
        "astronaut": sh.astronaut_png(d / "astronaut.png"),
        "gradient": sh.gradient_png(d / "gradient.png"),
        "speech": sh.speech(d / "speech.wav", text_short),
        "speech_long": sh.speech(d / "speech_long.wav", text_long, speed=150),
        "face_video": video,
        "truncated": d / "truncated.mp4",
        "text_mp4": d / "notes.mp4",
    }


@pytest.fixture(scope="session")
def finished(stack: Stack, media: dict[str, Path]) -> dict[str, Any]:
    """One job pushed on the astronaut portrait and short speech, run to completion."""
    with stack.client() as c:
        resp = push(c, media["speech"], media["astronaut"])
        assert resp.status_code == 202, resp.text
        pushed = resp.json()
        seen: list[tuple[str, float, str]] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            body = c.get("/api/v1/lipsync/status", params={"task_id": pushed["task_id"]}).json()
            seen.append((body["state"], body["progress"], body["stage"]))
            if body["state"] in ("succeeded", "failed", "canceled"):
                break
            time.sleep(0.05)
    assert body["state"] == "succeeded", f"{body}\n{stack.logs()}"
    return {"pushed": pushed, "status": body, "seen": seen}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many answers the OpenAPI response checker saw (tests/app/openapi_check.py)."""
    from tests.app.openapi_check import CHECKED

    if CHECKED:
        kinds = len(CHECKED)
        terminalreporter.write_line(
            f"FIGURE openapi_checked_answers = {sum(CHECKED.values())} "
            f"({kinds} kinds of operation, status and content type)"
        )
        for (method, path, status, ctype), n in sorted(CHECKED.items()):
            terminalreporter.write_line(f"  {n:5d} {method} {path} {status} {ctype}")
