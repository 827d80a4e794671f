"""Fixtures for the evaluator tests: lip-synced videos made with the project's own engine."""

from __future__ import annotations

from pathlib import Path

import pytest

import lipsync


def _synced(face: Path, speech: Path, out: Path) -> Path:
    """``face`` lip-synced by the viseme engine to ``speech`` into ``out`` (made once)."""
    if not out.exists():
        lipsync.run(face, speech, out, engine="viseme")
    return out


@pytest.fixture(scope="session")
def synced_still(
    media_dir: Path, portrait_png: Path, speech_pause: tuple[Path, float, float]
) -> Path:
    """The astronaut photo lip-synced by the viseme engine to speech with a 1 s pause."""
    return _synced(portrait_png, speech_pause[0], media_dir / "eval_still.mp4")


@pytest.fixture(scope="session")
def synced_video(
    media_dir: Path, portrait_video: Path, speech_pause: tuple[Path, float, float]
) -> Path:
    """The moving-astronaut video lip-synced by the viseme engine (reference: portrait_video)."""
    return _synced(portrait_video, speech_pause[0], media_dir / "eval_video.mp4")
