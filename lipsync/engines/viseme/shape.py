"""Mouth-shape geometry of the ``viseme`` engine: where the lips, mouth corners and jaw
go for a wanted opening and spreading, the inner-lip gap, and the smooth outlines and
masks the drawing steps use."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.face.geometry import face_axes

F32 = npt.NDArray[np.float32]

# Share of the opening taken by the upper lip (the rest by the lower lip and jaw).
UPPER_SHARE = 0.25
# Widest inner-lip gap, as a share of mouth width, for open=1.
GAP_MAX = 0.40
# Narrowest gap the warp itself makes (share of mouth width); closer than this is drawn.
GAP_FLOOR = 0.08
# Lip point -> weight of the upper/lower movement (tapering towards the corners).
UPPER = {61: 0.85, 62: 1.0, 63: 0.85, 50: 1.0, 51: 1.0, 52: 1.0, 49: 0.7, 53: 0.7}
LOWER = {65: 0.85, 66: 1.0, 67: 0.85, 56: 1.0, 57: 1.0, 58: 1.0, 55: 0.6, 59: 0.6}
CORNERS = {48: 0.15, 54: 0.15, 60: 0.2, 64: 0.2}
JAW = {8: 0.62, 7: 0.56, 9: 0.56, 6: 0.42, 10: 0.42, 5: 0.24, 11: 0.24, 4: 0.08, 12: 0.08}
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))
# Closing a clearly open mouth (an inner-lip gap of at least CLOSE_OPEN of the mouth's
# width: teeth and the dark inside show) by more than CLOSE_MIN of its width moves its real
# lips together (close_mouth) instead of warping them to the floor gap and painting the
# rest shut (a flat band of lip colour on a wide-open photo, read as open in every pause).
CLOSE_OPEN = 0.15
CLOSE_MIN = 0.03


def smooth_closed_curve(pts: F32, per_seg: int = 6) -> F32:
    """Catmull-Rom resampling of a closed polygon."""
    p1 = pts.astype(np.float32)
    p0, p2, p3 = np.roll(p1, 1, axis=0), np.roll(p1, -1, axis=0), np.roll(p1, -2, axis=0)
    t = np.linspace(0, 1, per_seg, endpoint=False, dtype=np.float32)[None, :, None]
    t2, t3 = t * t, t * t * t
    a, b, c, d = (x[:, None, :] for x in (p0, p1, p2, p3))
    out = 0.5 * (
        (2 * b) + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t2 + (-a + 3 * b - 3 * c + d) * t3
    )
    return out.reshape(-1, 2).astype(np.float32)


def open_mouth(lm: F32, down: F32, delta: float) -> F32:
    """A copy of ``lm`` with the inner-lip gap widened by ``delta`` pixels along ``down``
    (narrowed when negative): the upper lip rises, the lower lip, corners and jaw drop."""
    out = lm.copy()
    for k, w in UPPER.items():
        out[k] -= down * (UPPER_SHARE * delta * w)
    for k, w in LOWER.items():
        out[k] += down * ((1 - UPPER_SHARE) * delta * w)
    for k, w in CORNERS.items():
        out[k] += down * (delta * w)
    for k, w in JAW.items():
        out[k] += down * (delta * w)
    return out


def inner_gap(lm: F32, down: F32) -> float:
    """The inner-lip gap of landmarks ``lm`` along the face's ``down`` axis (pixels, >= 0)."""
    return float(np.mean([max(0.0, float(np.dot(lm[b] - lm[a], down))) for a, b in INNER_PAIRS]))


def smoothstep(x: npt.NDArray[np.floating[Any]]) -> F32:
    x = np.clip(x, 0.0, 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)


def poly_mask(pts: F32, origin: tuple[int, int], shape: tuple[int, int]) -> F32:
    """The smoothed polygon ``pts`` (frame pixels) filled, anti-aliased, in a box of
    ``shape`` at ``origin``; 0..1."""
    mask = np.zeros(shape, np.uint8)
    curve = smooth_closed_curve((pts - np.asarray(origin, np.float32)).astype(np.float32))
    cv2.fillPoly(mask, [np.round(curve * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    return mask.astype(np.float32) / 255.0


def target_landmarks(lm: F32, open_: float, spread: float) -> tuple[F32, float, float]:
    """Move lips, corners and jaw of ``lm`` to the wanted shape.

    Returns the target landmarks, the target inner-lip gap and the source gap (pixels).
    """
    across, down, _ = face_axes(lm)
    width = float(np.linalg.norm(lm[54] - lm[48]))
    gap_src = inner_gap(lm, down)
    gap_tgt = open_ * GAP_MAX * width
    # Never warp the inner lips onto each other: two control points on one spot with
    # different offsets fold the warp. Closing below GAP_FLOOR is drawn, not warped
    # (see shown_inner and seal_lips).
    gap_warp = max(gap_tgt, min(GAP_FLOOR * width, gap_src))
    tgt = open_mouth(lm, down, gap_warp - gap_src)
    # Rounding narrows the mouth, spreading widens it; opening narrows it a little.
    dw = width * (0.07 * spread - 0.05 * open_)
    centre = (lm[48] + lm[54]) / 2
    for k in range(48, 68):
        rel = float(np.dot(lm[k] - centre, across)) / max(width / 2, 1.0)
        tgt[k] += across * (dw / 2 * rel)
    return tgt, gap_tgt, gap_src


def shown_inner(tgt: F32, gap_shown: float) -> F32:
    """``tgt`` with the inner lips drawn together to the gap that should be seen."""
    across, down, _ = face_axes(tgt)
    gaps = [float(np.dot(tgt[b] - tgt[a], down)) for a, b in INNER_PAIRS]
    mean_gap = float(np.mean(gaps))
    out = tgt.copy()
    if mean_gap <= gap_shown + 1e-3:
        return out
    scale = gap_shown / max(mean_gap, 1e-6)
    for (a, b), g in zip(INNER_PAIRS, gaps, strict=True):
        mid = (tgt[a] + tgt[b]) / 2
        out[a] = mid - down * (g * scale / 2)
        out[b] = mid + down * (g * scale / 2)
    return out
