"""MuseTalk's face crop, the VAE's input images and the paste-back mask.

The crop follows the reference (``musetalk/utils/preprocessing.py`` and
``scripts/inference.py`` for v1.5): on the 68 face landmarks (truncated to integers, as the
reference's DWPose points are), the box spans the landmarks left to right and down to the
chin; its top is as far above landmark 29 (the nose, moved down by ``bbox_shift`` pixels)
as the chin is below it; v1.5 then adds ``extra_margin`` (10) pixels below the chin. A box
that comes out empty falls back to the detector's face box, as the reference does. The
crop is resized to 256x256 with Lanczos (``cv2.INTER_LANCZOS4``). One deliberate
difference: a box reaching past the frame's right edge is clipped here, for the crop and
the paste alike; the reference crops the clipped region but pastes the face back resized to
the unclipped box (a stretched face at the frame's edge).

The VAE sees the crop in [-1, 1], RGB, once whole (the reference) and once with its lower
half (rows 128..255) set to black (-1) (the masked target).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.musetalk.wing import MuseTalkOptions
from lipsync.face.geometry import lower_face_polygon
from lipsync.types import FaceObs, FloatArray, RGBImage

CROP = 256
NOSE = 29  # landmark index of the reference's "half face" point
BBOX_SHIFT = MuseTalkOptions.bbox_shift  # v1.5 runs with a fixed bbox_shift of 0
EXTRA_MARGIN = MuseTalkOptions.extra_margin  # v1.5: pixels added below the chin

Box = tuple[int, int, int, int]


def _clip(box: Box, width: int, height: int) -> Box:
    x1, y1, x2, y2 = box
    x1 = min(max(x1, 0), width - 1)
    y1 = min(max(y1, 0), height - 1)
    return x1, y1, min(max(x2, x1 + 1), width), min(max(y2, y1 + 1), height)


def crop_box(
    face: FaceObs,
    width: int,
    height: int,
    bbox_shift: int = BBOX_SHIFT,
    extra_margin: int = EXTRA_MARGIN,
) -> Box:
    """The reference's crop box ``(x1, y1, x2, y2)`` for a face in a ``width`` x ``height``
    frame."""
    lm = np.asarray(face.landmarks, dtype=np.float32)
    box: Box | None = None
    if lm.shape == (68, 2) and np.isfinite(lm).all():
        pts = lm.astype(np.int32)  # truncated, as the reference's DWPose points are
        # The reference shifts landmark 29 itself, so the shifted point counts for the
        # bottom too (it only matters when the shift reaches below the chin).
        pts[NOSE, 1] += int(bbox_shift)
        half_y = int(pts[NOSE, 1])
        bottom = int(pts[:, 1].max())
        upper = max(0, half_y - (bottom - half_y))
        x1, x2 = int(pts[:, 0].min()), int(pts[:, 0].max())
        if not (bottom - upper <= 0 or x2 - x1 <= 0 or x1 < 0):
            box = (x1, upper, x2, bottom)
    if box is None:
        box = tuple(int(v) for v in face.box)  # type: ignore[assignment]
        assert box is not None
    x1, y1, x2, y2 = box
    y2 = min(y2 + int(extra_margin), height)
    return _clip((x1, y1, x2, y2), width, height)


def crop_faces(frames: Sequence[RGBImage], boxes: Sequence[Box]) -> npt.NDArray[np.uint8]:
    """``(N, 256, 256, 3)`` RGB crops, Lanczos-resized as the reference does."""
    out = np.empty((len(frames), CROP, CROP, 3), dtype=np.uint8)
    for i, (frame, (x1, y1, x2, y2)) in enumerate(zip(frames, boxes, strict=True)):
        crop = np.ascontiguousarray(frame[y1:y2, x1:x2])
        out[i] = cv2.resize(crop, (CROP, CROP), interpolation=cv2.INTER_LANCZOS4)
    return out


def vae_images(
    crops: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(masked, whole)``, each ``(N, 3, 256, 256)`` float32 in [-1, 1]: the reference's
    ``/ 255.``, lower half zeroed (masked only), ``Normalize(0.5, 0.5)``."""
    x = (crops.astype(np.float64) / 255.0).astype(np.float32).transpose(0, 3, 1, 2)
    masked = x.copy()
    masked[:, :, CROP // 2 :, :] = 0.0
    half = np.float32(0.5)
    return (masked - half) / half, (x - half) / half


def decoded_to_uint8(images: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """VAE output already mapped to [0, 1] ``(N, 3, H, W)`` -> ``(N, H, W, 3)`` uint8,
    rounded as the reference rounds."""
    scaled = images.transpose(0, 2, 3, 1) * np.float32(255.0)
    result: npt.NDArray[np.uint8] = np.round(scaled).astype(np.uint8)
    return result


def paste_mask(face: FaceObs, box: Box) -> FloatArray:
    """A feathered mouth-and-jaw mask in the box's coordinates, 0 on the box's border.

    The project's lower-face region (under the nose, cheek to cheek, the jaw line pushed out
    a little) kept below the box's middle row, as the reference keeps the lower half of its
    blend region, eroded and blurred so it fades to 0 inside the box: the pasted face has
    no seam. Without usable landmarks: an ellipse over the lower half of the box.
    """
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    hard = np.zeros((h, w), np.float32)
    lm = np.asarray(face.landmarks, dtype=np.float32)
    if lm.shape == (68, 2) and np.isfinite(lm).all():
        poly = lower_face_polygon(lm) - np.array([x1, y1], np.float32)
        cv2.fillPoly(hard, [np.round(poly).astype(np.int32)], 1.0)
    else:
        centre = (int(round(w / 2)), int(round(h * 0.7)))
        axes = (max(1, int(w * 0.42)), max(1, int(h * 0.3)))
        cv2.ellipse(hard, centre, axes, 0.0, 0.0, 360.0, 1.0, -1)
    hard[: h // 2] = 0.0
    feather = max(1, int(round(0.04 * max(w, h))))
    border = np.zeros_like(hard)
    if h > 2 * feather and w > 2 * feather:
        border[feather : h - feather, feather : w - feather] = 1.0
    hard *= border
    if feather > 1:
        eroded = cv2.erode(hard, np.ones((feather, feather), np.uint8))
        soft = cv2.GaussianBlur(eroded, (0, 0), feather / 2.0)
    else:
        soft = hard
    mask: FloatArray = np.clip(soft * hard, 0.0, 1.0).astype(np.float32)
    return mask
