"""Shot cuts on real edited footage assembled from the shared clips, and none on a fast
camera move."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import edited
from lipsync.face.shots import ShotDetector, shot_ids, shots_from_cuts
from lipsync.media.decode import iter_frames
from tests.media_factory import SHARED_MEDIA


def _needs_media() -> None:
    for name in (edited.KATIE, edited.FACE2, edited.FACE4):
        if not (SHARED_MEDIA / name).is_file():
            pytest.skip(f"{name} is not in ../shared/media")


def _cuts(path: Path) -> list[int]:
    detector = ShotDetector(25.0)
    found: list[int] = []
    for frame in iter_frames(path, pixel_format="i420"):
        new = detector.feed(frame.index, frame.image)
        # A cut is known no later than ``lag`` frames after it.
        assert all(frame.index - c <= detector.lag for c in new)
        found.extend(new)
    return found


def test_every_cut_between_people_is_found_exactly(tmp_path: Path) -> None:
    _needs_media()
    for build in (edited.two_women, edited.man_woman, edited.portrait_cuts):
        video = build(tmp_path)
        assert _cuts(video.path) == video.shot_starts[1:], video.path.name


def test_a_fast_camera_move_is_not_a_cut(tmp_path: Path) -> None:
    _needs_media()
    assert _cuts(edited.fast_pan(tmp_path).path) == []


def test_shots_and_ids_from_cuts() -> None:
    shots = shots_from_cuts([5, 0, 9, 5, 12], 12)
    assert [(s.start, s.end) for s in shots] == [(0, 5), (5, 9), (9, 12)]
    assert shot_ids(shots, 12).tolist() == [0] * 5 + [1] * 4 + [2] * 3
    assert np.all(shot_ids(shots_from_cuts([], 4), 4) == 0)
