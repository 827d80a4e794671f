"""The weight-free classical enhancer on a real face with a simulated generator patch."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.enhance import create_enhancer
from lipsync.enhance.classical import ClassicalEnhancer
from lipsync.types import FaceObs, Patch
from tests.enhance._face_helpers import astronaut_face
from tests.media_factory import astronaut

LOWER_FACE = [*range(2, 15), 35, 34, 33, 32, 31]


def generated_patch(frame: npt.NDArray[np.uint8], face: FaceObs) -> Patch:
    """What a 96x96 generator gives back: the box, softened by the 96 px round trip, tinted."""
    x1, y1, x2, y2 = face.box
    crop = frame[y1:y2, x1:x2]
    small = cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA)
    soft = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR).astype(int)
    soft = soft + np.array([18, 4, -12])  # a warm cast
    image = np.clip(soft, 0, 255).astype(np.uint8)
    return Patch(
        x1,
        y1,
        image,
        mask=np.ones((y2 - y1, x2 - x1), dtype=np.float32),
        upscale=max(x2 - x1, y2 - y1) / 96,
    )


def region(points: npt.NDArray[np.floating], shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def sharpness(image: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_]) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F)[mask].var())


def test_sharpens_and_corrects_colour_only_in_the_lower_face() -> None:
    frame = astronaut()
    face = astronaut_face()
    patch = generated_patch(frame, face)
    out = ClassicalEnhancer().enhance(frame, patch, face)

    assert (out.x1, out.y1) == (patch.x1, patch.y1)
    assert out.image.shape == patch.image.shape and out.image.dtype == np.uint8
    assert out.mask is patch.mask

    local = face.landmarks.astype(np.float64) - (patch.x1, patch.y1)
    lower = region(local[LOWER_FACE], patch.image.shape)
    changed = np.any(out.image != patch.image, axis=2)
    assert changed.any()
    assert not np.any(changed & ~lower), "pixels outside the lower face changed"

    hull = np.asarray(cv2.convexHull(local[48:68].astype(np.float32)), dtype=np.float64)
    mouth = region(hull.reshape(-1, 2), out.image.shape)
    original = frame[patch.y1 : patch.y2, patch.x1 : patch.x2]
    before = np.abs(patch.image.astype(int) - original.astype(int))[mouth].mean(axis=0)
    after = np.abs(out.image.astype(int) - original.astype(int))[mouth].mean(axis=0)
    # The red/blue cast is largely removed where the mouth is.
    assert after[0] < before[0] * 0.6 and after[2] < before[2] * 0.6
    assert sharpness(out.image, mouth) > sharpness(patch.image, mouth) * 1.2


def test_native_resolution_patch_is_not_sharpened() -> None:
    """A patch at native scale (the viseme warp of the real face) is left as it is."""
    frame = astronaut()
    face = astronaut_face()
    x1, y1, x2, y2 = face.box
    patch = Patch(x1, y1, frame[y1:y2, x1:x2].copy())
    out = ClassicalEnhancer().enhance(frame, patch, face)
    assert np.array_equal(out.image, patch.image)


def test_bad_landmarks_leave_patch_alone() -> None:
    frame = astronaut()
    face = astronaut_face()
    patch = generated_patch(frame, face)
    nan_face = FaceObs(face.box, np.full((68, 2), np.nan, dtype=np.float32))
    assert ClassicalEnhancer().enhance(frame, patch, nan_face) is patch
    far = FaceObs(face.box, (face.landmarks + 5000).astype(np.float32))
    out = ClassicalEnhancer().enhance(frame, patch, far)
    assert np.array_equal(out.image, patch.image)
    wrong = FaceObs(face.box, np.zeros((5, 2), dtype=np.float32))
    assert ClassicalEnhancer().enhance(frame, patch, wrong) is patch


def test_registry_creates_it() -> None:
    assert isinstance(create_enhancer("classical"), ClassicalEnhancer)
    assert create_enhancer("none") is None
