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


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (1080, 1920), (512, 512), (6, 4)])
def test_the_detectors_copy_is_small_and_keeps_the_colours(size: tuple[int, int]) -> None:
    """The cut detector's thumbnail (block means, see ``thumbnail``): about THUMB_WIDTH
    wide, the frame's shape, and each half of a frame split in two colours keeps its own
    colour."""
    import cv2

    from lipsync.face.shots import THUMB_WIDTH, thumbnail

    w, h = size
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (200, 50, 30)
    rgb[:, w // 2 :] = (20, 90, 220)
    small = thumbnail(np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), np.uint8))
    th, tw = small.shape[:2]
    assert small.shape[2] == 3 and tw <= w and th <= h
    if w >= 2 * THUMB_WIDTH:
        assert 0.75 * THUMB_WIDTH <= tw <= 1.25 * THUMB_WIDTH
        assert abs(th / tw - h / w) < 0.05
        left, right = small[th // 2, 2][::-1], small[th // 2, tw - 3][::-1]  # BGR -> RGB
        assert np.abs(left.astype(int) - (200, 50, 30)).max() <= 6
        assert np.abs(right.astype(int) - (20, 90, 220)).max() <= 6
