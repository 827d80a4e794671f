"""Fixtures for the evaluator tests: lip-synced videos made with the project's own engine."""

from __future__ import annotations

from pathlib import Path

import pytest

import lipsync


@pytest.fixture(scope="session")
def synced_still(
    media_dir: Path, portrait_png: Path, speech_pause: tuple[Path, float, float]
) -> Path:
    """The astronaut photo lip-synced by the viseme engine to speech with a 1 s pause."""
    out = media_dir / "eval_still.mp4"
    if not out.exists():
        lipsync.run(portrait_png, speech_pause[0], out, engine="viseme")
    return out


@pytest.fixture(scope="session")
def synced_video(
    media_dir: Path, portrait_video: Path, speech_pause: tuple[Path, float, float]
) -> Path:
    """The moving-astronaut video lip-synced by the viseme engine (reference: portrait_video)."""
    out = media_dir / "eval_video.mp4"
    if not out.exists():
        lipsync.run(portrait_video, speech_pause[0], out, engine="viseme")
    return out
