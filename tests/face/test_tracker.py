from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lipsync.face.geometry import crop_box, face_axes, lower_face_polygon
from lipsync.face.tracker import FaceChoice, FaceTracker, iou, smooth_landmarks
from lipsync.media.decode import iter_frames
from tests import media_factory as mf


def test_finds_68_landmarks_on_a_real_face() -> None:
    img = mf.astronaut()
    lm = FaceTracker().update(img)
    assert lm is not None and lm.shape == (68, 2)
    # Eyes above the mouth, chin lowest, all inside the face region of the photo.
    assert lm[36:48, 1].mean() < lm[48:68, 1].mean() < lm[8, 1]
    assert lm[:, 0].min() > 150 and lm[:, 0].max() < 330
    across, down, iod = face_axes(lm)
    assert 35 < iod < 80 and down[1] > 0.9


def test_no_face_gives_none() -> None:
    grad = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    assert FaceTracker().update(grad) is None


def test_choice_of_face_when_there_are_two() -> None:
    face = mf.astronaut()[0:300, 100:400]
    small = cv2.resize(face, (210, 210), interpolation=cv2.INTER_AREA)
    canvas = np.full((400, 800, 3), 200, np.uint8)
    canvas[50:350, 450:750] = face  # large, right
    canvas[100:310, 30:240] = small  # smaller, left
    largest = FaceTracker().update(canvas)
    assert largest is not None and largest[:, 0].mean() > 450
    left = FaceTracker(FaceChoice(index=0)).update(canvas)
    assert left is not None and left[:, 0].mean() < 250
    pointed = FaceTracker(FaceChoice(point=(135, 190))).update(canvas)
    assert pointed is not None and pointed[:, 0].mean() < 250


def test_tracks_through_a_video_and_smooths(portrait_video: Path) -> None:
    tracker = FaceTracker(detect_every=5)
    lms = [tracker.update(f.image) for f in iter_frames(portrait_video, pixel_format="luma")]
    assert all(lm is not None for lm in lms)
    assert tracker.detections <= len(lms) // 5 + 3, "detector must not run on every frame"
    track = np.stack(lms)  # type: ignore[arg-type]
    smooth = smooth_landmarks(track)
    jitter_raw = np.abs(np.diff(track, n=2, axis=0)).mean()
    jitter_smooth = np.abs(np.diff(smooth, n=2, axis=0)).mean()
    assert jitter_smooth < jitter_raw * 0.8


def test_smoothing_keeps_gaps() -> None:
    track = np.random.default_rng(0).normal(size=(20, 68, 2)).astype(np.float32)
    track[8:11] = np.nan
    out = smooth_landmarks(track)
    assert np.isnan(out[8:11]).all() and not np.isnan(out[:8]).any()


def test_crop_box_and_lower_face_region() -> None:
    lm = FaceTracker().update(mf.astronaut())
    assert lm is not None
    x1, y1, x2, y2 = crop_box(lm, (0, 10, 0, 0), 512, 512)
    assert y2 >= lm[8, 1] + 9 and y1 < lm[19, 1] and x1 <= lm[0, 0] and x2 >= lm[16, 0]
    poly = lower_face_polygon(lm)
    assert poly[:, 1].max() > lm[8, 1] and poly[:, 1].min() > lm[30, 1]
    assert iou((0, 0, 10, 10), (5, 5, 15, 15)) == 25 / 175
