"""Worker test fixtures: a private Redis, a per-test key prefix and data dir, real media."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.jobs import JobStore
from service.settings import Settings
from tests.app import service_harness as sh


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    long_text = (
        "This is a longer piece of speech for the worker tests. It goes on for a while, "
        "sentence after sentence, so that a job can be canceled or killed while it renders."
    )
    return {
        "astronaut": sh.astronaut_png(d / "astronaut.png"),
        "speech": sh.speech(d / "speech.wav", "Hello, this is a worker test."),
        "speech_long": sh.speech(d / "speech_long.wav", long_text, speed=140),
    }


@pytest.fixture
def settings(tmp_path: Path, redis_server: sh.RedisServer) -> Settings:
    s = Settings(
        redis_url=redis_server.url,
        redis_prefix=f"t{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "data",
        device="cpu",
        models_dir=sh.REPO / "models",
        result_ttl_s=600,
    )
    s.ensure_dirs()
    return s


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    st = JobStore.from_url(settings.redis_url, settings.redis_prefix, settings.result_ttl_s)
    yield st
    st.client.close()
