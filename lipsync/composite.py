"""Paste generated patches back into frames with a feathered mask."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.face.geometry import lower_face_polygon
from lipsync.types import FaceObs, Patch, RGBImage


def lower_face_mask(face: FaceObs, patch: Patch) -> npt.NDArray[np.float32]:
    """Feathered lower-face mask in the patch's coordinates."""
    h, w = patch.image.shape[:2]
    poly = lower_face_polygon(face.landmarks) - np.array([patch.x1, patch.y1], np.float32)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1.0)
    face_w = float(np.linalg.norm(face.landmarks[16] - face.landmarks[0]))
    sigma = max(2.0, 0.03 * face_w)
    return cv2.GaussianBlur(mask, (0, 0), sigma) * mask


def composite(frame: RGBImage, patch: Patch, face: FaceObs, blend: float = 1.0) -> RGBImage:
    """Return a copy of ``frame`` with ``patch`` blended in (``blend`` 0 keeps the frame)."""
    out = frame.copy()
    H, W = frame.shape[:2]
    blend_into(out, (0, 0), (W, H), patch, face, blend)
    return out


def blend_into(
    canvas: RGBImage,
    origin: tuple[int, int],
    frame_size: tuple[int, int],
    patch: Patch,
    face: FaceObs,
    blend: float = 1.0,
) -> None:
    """Blend ``patch`` into ``canvas`` in place, as :func:`composite` does into a frame of
    ``frame_size`` (width, height): ``canvas`` holds that frame's pixels from ``origin``
    (x, y) on and must cover the patch's box clipped to the frame. Same arithmetic, so the
    same pixels, at the cost of the box instead of the frame."""
    W, H = frame_size
    ox, oy = origin
    x1, y1 = max(0, patch.x1), max(0, patch.y1)
    x2, y2 = min(W, patch.x2), min(H, patch.y2)
    if x2 <= x1 or y2 <= y1 or blend <= 0.0:
        return
    mask = patch.mask if patch.mask is not None else lower_face_mask(face, patch)
    sy, sx = y1 - patch.y1, x1 - patch.x1
    img = patch.image[sy : sy + (y2 - y1), sx : sx + (x2 - x1)]
    m = mask[sy : sy + (y2 - y1), sx : sx + (x2 - x1)]
    if blend < 1.0:
        m = m * blend
    dst = canvas[y1 - oy : y2 - oy, x1 - ox : x2 - ox]
    if float(m.min()) >= 1.0:
        dst[:] = img
        return
    region = dst.astype(np.float32)
    a = m[..., None]
    dst[:] = np.clip(region + (img.astype(np.float32) - region) * a + 0.5, 0, 255).astype(np.uint8)
