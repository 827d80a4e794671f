"""lipsync/composite.py: pasting a generated patch back with the feathered lower-face mask,
on the astronaut photo with its real dlib landmarks."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from lipsync.composite import blend_into, composite, lower_face_mask
from lipsync.face.geometry import lower_face_polygon
from lipsync.types import FaceObs, Patch
from tests.enhance._face_helpers import astronaut_face
from tests.media_factory import astronaut

MOUTH = list(range(48, 68))
EYES = list(range(36, 48))


@pytest.fixture(scope="module")
def frame() -> npt.NDArray[np.uint8]:
    return astronaut()


@pytest.fixture(scope="module")
def face() -> FaceObs:
    return astronaut_face()


def generated(frame: npt.NDArray[np.uint8], face: FaceObs, mask: bool = False) -> Patch:
    """A stand-in generator output for the face box: the crop with its colours inverted, so
    every pasted pixel differs from the frame's."""
    x1, y1, x2, y2 = face.box
    image = np.ascontiguousarray(255 - frame[y1:y2, x1:x2])
    own = np.ones(image.shape[:2], np.float32) if mask else None
    return Patch(x1, y1, image, mask=own)


def at(image: npt.NDArray[np.generic], points: npt.NDArray[np.float32]) -> npt.NDArray[np.generic]:
    xy = np.round(points).astype(int)
    return image[xy[:, 1], xy[:, 0]]


def test_full_mask_replaces_the_box_and_nothing_else(
    frame: npt.NDArray[np.uint8], face: FaceObs
) -> None:
    before = frame.copy()
    patch = generated(frame, face, mask=True)
    out = composite(frame, patch, face)
    assert out is not frame and np.array_equal(frame, before), "the input is not modified"
    assert out.dtype == np.uint8 and out.shape == frame.shape
    x1, y1, x2, y2 = face.box
    assert np.array_equal(out[y1:y2, x1:x2], patch.image)
    outside = np.ones(frame.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(out[outside], frame[outside])


def test_blend_zero_keeps_the_frame(frame: npt.NDArray[np.uint8], face: FaceObs) -> None:
    for patch in (generated(frame, face), generated(frame, face, mask=True)):
        out = composite(frame, patch, face, blend=0.0)
        assert out is not frame and np.array_equal(out, frame)


def test_default_mask_changes_the_mouth_not_the_eyes(
    frame: npt.NDArray[np.uint8], face: FaceObs
) -> None:
    patch = generated(frame, face)
    out = composite(frame, patch, face)
    mouth = at(out, face.landmarks[MOUTH]).astype(int)
    want = at(255 - frame, face.landmarks[MOUTH]).astype(int)
    assert np.abs(mouth - want).max() <= 3, "the mouth is the generated one"
    assert np.array_equal(at(out, face.landmarks[EYES]), at(frame, face.landmarks[EYES]))
    nose_top = face.landmarks[27:30]  # the nose bridge stays the frame's
    assert np.array_equal(at(out, nose_top), at(frame, nose_top))
    x1, y1, x2, y2 = face.box
    assert np.array_equal(out[:y1], frame[:y1]) and np.array_equal(out[y2:], frame[y2:])
    changed = np.any(out != frame, axis=2)
    ys, _ = np.nonzero(changed)
    assert ys.min() >= face.landmarks[[2, 14, 33], 1].min() - 12, "nothing above the cheeks"


def test_lower_face_mask_is_feathered_lower_face(
    frame: npt.NDArray[np.uint8], face: FaceObs
) -> None:
    patch = generated(frame, face)
    mask = lower_face_mask(face, patch)
    assert mask.dtype == np.float32 and mask.shape == patch.image.shape[:2]
    assert mask.min() == 0.0 and 0.99 < mask.max() <= 1.0
    local = face.landmarks - np.array([patch.x1, patch.y1], np.float32)
    assert at(mask, local[[62, 66]]).min() > 0.95, "the inner lips: fully generated"
    assert at(mask, local[EYES]).max() == 0.0 and at(mask, local[27:30]).max() == 0.0
    assert not mask[:5].any(), "the top of the box (forehead) is never touched"
    soft = ((mask > 0.05) & (mask < 0.95)).sum()
    assert soft > 0.05 * (mask > 0).sum(), "a feathered edge, not a hard cut-out"
    # feathering stays inside the polygon: the blurred mask is multiplied by the filled one
    poly = np.zeros_like(mask)
    corners = lower_face_polygon(face.landmarks) - np.array([patch.x1, patch.y1], np.float32)
    cv2.fillPoly(poly, [np.round(corners).astype(np.int32)], 1.0)
    assert not mask[poly == 0].any()


def test_mask_scales_with_the_face(frame: npt.NDArray[np.uint8], face: FaceObs) -> None:
    """The same face at twice the size gets the same mask at twice the size (the feather
    is a share of the face width, not a fixed number of pixels)."""
    small = lower_face_mask(face, generated(frame, face))
    big_frame = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    big_face = astronaut_face(scale=2.0)
    big = lower_face_mask(big_face, generated(big_frame, big_face))
    down = cv2.resize(big, small.shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(down - small).mean() < 0.03
    assert np.abs(down.sum() - small.sum()) / small.sum() < 0.05


def test_half_blend_is_the_rounded_midpoint(frame: npt.NDArray[np.uint8], face: FaceObs) -> None:
    patch = generated(frame, face, mask=True)
    out = composite(frame, patch, face, blend=0.5)
    x1, y1, x2, y2 = face.box
    f = frame[y1:y2, x1:x2].astype(np.float64)
    p = patch.image.astype(np.float64)
    assert np.array_equal(out[y1:y2, x1:x2], np.floor((f + p) / 2 + 0.5).astype(np.uint8))


def test_own_mask_times_blend(frame: npt.NDArray[np.uint8], face: FaceObs) -> None:
    """A patch's own mask (a left-to-right ramp) is used as is, scaled by ``blend``."""
    patch = generated(frame, face)
    h, w = patch.image.shape[:2]
    patch.mask = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    x1, y1, x2, y2 = face.box
    f = frame[y1:y2, x1:x2].astype(np.float32)
    distances = []
    for blend in (0.25, 0.5, 1.0):
        got = composite(frame, patch, face, blend=blend)[y1:y2, x1:x2]
        a = (patch.mask * blend)[..., None]
        want = np.clip(f + (patch.image.astype(np.float32) - f) * a + 0.5, 0, 255)
        assert np.array_equal(got, want.astype(np.uint8)), blend
        assert np.array_equal(got[:, 0], frame[y1:y2, x1]), "mask 0: the frame"
        distances.append(np.abs(got.astype(int) - patch.image).mean())
    assert distances == sorted(distances, reverse=True), "more blend, closer to the patch"
    assert np.array_equal(got[:, -1], patch.image[:, -1]), "mask 1 at full blend: the patch"


@pytest.mark.parametrize(("x1", "y1"), [(-30, -20), (470, 480), (-50, 300), (400, -60)])
def test_patch_across_the_frame_edge_is_clipped(
    frame: npt.NDArray[np.uint8], face: FaceObs, x1: int, y1: int
) -> None:
    H, W = frame.shape[:2]
    image = np.ascontiguousarray(255 - frame[100:180, 150:250])  # 80 x 100
    patch = Patch(x1, y1, image, mask=np.ones(image.shape[:2], np.float32))
    out = composite(frame, patch, face)
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(W, patch.x2), min(H, patch.y2)
    assert np.array_equal(out[cy1:cy2, cx1:cx2], image[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1])
    changed = np.any(out != frame, axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.min() >= cy1 and ys.max() < cy2 and xs.min() >= cx1 and xs.max() < cx2


@pytest.mark.parametrize(("x1", "y1"), [(512, 0), (0, 512), (-100, 10), (10, -80), (600, 600)])
def test_patch_wholly_outside_changes_nothing(
    frame: npt.NDArray[np.uint8], face: FaceObs, x1: int, y1: int
) -> None:
    image = np.full((80, 100, 3), 7, np.uint8)
    out = composite(frame, Patch(x1, y1, image), face)
    assert np.array_equal(out, frame)


def test_blend_into_a_region_canvas_matches_composite(
    frame: npt.NDArray[np.uint8], face: FaceObs
) -> None:
    """Blending into a canvas holding only part of the frame gives the frame's pixels."""
    patch = generated(frame, face)
    want = composite(frame, patch, face, blend=0.7)
    x1, y1, x2, y2 = face.box
    ox, oy = x1 - 9, y1 - 4
    canvas = frame[oy : y2 + 6, ox : x2 + 3].copy()
    blend_into(canvas, (ox, oy), (frame.shape[1], frame.shape[0]), patch, face, 0.7)
    assert np.array_equal(canvas, want[oy : y2 + 6, ox : x2 + 3])
    assert not np.array_equal(canvas, frame[oy : y2 + 6, ox : x2 + 3])
