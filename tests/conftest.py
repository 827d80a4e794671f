"""Shared fixtures: media the tests make themselves, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import media_factory as mf


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
