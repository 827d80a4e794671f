"""Shared fixtures: media the tests make themselves, once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests import media_factory as mf

if TYPE_CHECKING:
    from tests.app.service_harness import RedisServer
    from tests.service.loopback_http import LoopbackHTTP


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole run: loopback, a free port, its own data dir;
    stopped at the end of the session. Tests isolate themselves by key prefix or db number."""
    from tests.app import service_harness as sh

    with sh.private_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _victim(host: str) -> Iterator[LoopbackHTTP]:
    from tests.service.loopback_http import LoopbackHTTP

    try:
        server = LoopbackHTTP(host)
    except OSError:
        pytest.skip(f"no loopback on {host} here")
    with server:
        server.files["secret"] = (b"internal only", "text/plain")
        yield server


@pytest.fixture(scope="module")
def victim() -> Iterator[LoopbackHTTP]:
    """An internal server on IPv4 loopback holding ``/file/secret``: no fetch, job or
    webhook may ever reach it (its ``connections`` stay what they were)."""
    yield from _victim("127.0.0.1")


@pytest.fixture(scope="module")
def victim6() -> Iterator[LoopbackHTTP]:
    """The same on IPv6 loopback (skipped where there is none)."""
    yield from _victim("::1")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def portrait_png(media_dir: Path) -> Path:
    return mf.write_png(media_dir / "astronaut.png", mf.astronaut())


@pytest.fixture(scope="session")
def speech_wav(media_dir: Path) -> Path:
    return mf.espeak(media_dir / "speech.wav", "Open the window and look at the moon.")


@pytest.fixture(scope="session")
def speech_pause(media_dir: Path) -> tuple[Path, float, float]:
    return mf.speech_with_pause(media_dir / "pause.wav")


@pytest.fixture(scope="session")
def portrait_video(media_dir: Path) -> Path:
    """A 2 s, 25 fps, 320x320 video of the astronaut moving slightly, with a tone track."""
    return mf.write_video(
        media_dir / "portrait.mp4", mf.moving_portrait_frames(50), audio=mf.tone(2.0)
    )


@pytest.fixture(scope="session")
def shared_media() -> Path:
    if not mf.SHARED_MEDIA.is_dir():
        pytest.skip("../shared/media is not present")
    return mf.SHARED_MEDIA
