"""Geometry on iBUG 68-point landmarks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)

Box = tuple[int, int, int, int]


def landmark_box(lm: npt.NDArray[np.float32]) -> tuple[float, float, float, float]:
    x1, y1 = lm.min(axis=0)
    x2, y2 = lm.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)


def detector_like_box(lm: npt.NDArray[np.float32]) -> tuple[float, float, float, float]:
    """A box like dlib's detector gives for these landmarks (for tracking between detections)."""
    x1, y1, x2, y2 = landmark_box(lm)
    w = x2 - x1
    top = float(lm[BROWS, 1].min())
    return x1 + 0.02 * w, top - 0.02 * w, x2 - 0.02 * w, y2 - 0.02 * w


def crop_box(
    lm: npt.NDArray[np.float32], pads: tuple[int, int, int, int], width: int, height: int
) -> Box:
    """A face crop like Wav2Lip's S3FD box (forehead to chin, cheek to cheek) plus pads."""
    jaw = lm[JAW]
    x1, x2 = float(jaw[:, 0].min()), float(jaw[:, 0].max())
    chin = float(lm[:, 1].max())
    brow = float(lm[BROWS, 1].min())
    y1 = brow - 0.18 * (chin - brow)
    top, bottom, left, right = pads
    bx1 = max(0, int(round(x1 - left)))
    by1 = max(0, int(round(y1 - top)))
    bx2 = min(width, int(round(x2 + right)))
    by2 = min(height, int(round(chin + bottom)))
    return bx1, by1, max(bx2, bx1 + 2), max(by2, by1 + 2)


def eye_centres(
    lm: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    return lm[LEFT_EYE].mean(axis=0), lm[RIGHT_EYE].mean(axis=0)


def face_axes(
    lm: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float]:
    """Unit vectors across (left->right eye) and down the face, and the interocular distance."""
    le, re = eye_centres(lm)
    across = re - le
    iod = float(np.linalg.norm(across)) or 1.0
    across = across / iod
    down = np.array([-across[1], across[0]], np.float32)
    if float(np.dot(down, lm[8] - (le + re) / 2)) < 0:
        down = -down
    return across.astype(np.float32), down, iod


def lower_face_polygon(
    lm: npt.NDArray[np.float32], extend: float = 0.12
) -> npt.NDArray[np.float32]:
    """Region that lip-sync may change: under the nose, cheek to cheek, below the chin.

    ``extend`` pushes the jaw line outward/down by that share of the face height, so a
    lowered jaw stays inside the region.
    """
    across, down, iod = face_axes(lm)
    face_h = float(np.linalg.norm(lm[8] - lm[27])) or iod
    centre = lm[NOSE].mean(axis=0)
    jaw = lm[2:15].copy()
    out = jaw - centre
    norms = np.linalg.norm(out, axis=1, keepdims=True) + 1e-6
    jaw = jaw + out / norms * extend * face_h + down * extend * 0.5 * face_h
    nose_y = lm[33].copy()  # the bottom of the nose
    top_left = lm[2] * 0.5 + (nose_y - across * 0.5 * iod) * 0.5
    top_right = lm[14] * 0.5 + (nose_y + across * 0.5 * iod) * 0.5
    return np.vstack([jaw, top_right[None], nose_y[None], top_left[None]]).astype(np.float32)
