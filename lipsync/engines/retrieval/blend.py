"""Blending a chosen mouth into the frame, for the ``retrieval`` engine: the feathered
ellipse mask from under the nose to above the chin, and the colour and lighting match on
a ring of skin around the mouth (a per-channel gain that may vary linearly across the
face)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.retrieval.geometry import mouth_ellipse
from lipsync.engines.retrieval.tuning import RetrievalTuning

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Largest distance (mean over channels, natural-log gain) of a ring pixel's gain from the
#: ring's median gain for it to take part in the colour fit (0.35: a third brighter or darker)
COLOUR_INLIER = 0.35
#: Share of the ring's weight beyond :data:`COLOUR_INLIER` from which those pixels are left
#: out (on the shared clips with nothing in front: at most 3% on all but 4 of 350 frames,
#: 13% at most; a microphone over half the mouth: up to 99%)
COLOUR_OUTLIER_SHARE = 0.1


def ellipse_alpha(
    tgt: F32, origin: tuple[int, int], shape: tuple[int, int], tuning: RetrievalTuning
) -> tuple[F32, tuple[F32, F32]]:
    """The feathered mouth mask in patch coordinates, and the elliptic coordinates."""
    centre, across, down, a, up, dn = mouth_ellipse(tgt, tuning)
    h, w = shape
    xs = np.arange(w, dtype=np.float32) + origin[0] - centre[0]
    ys = np.arange(h, dtype=np.float32) + origin[1] - centre[1]
    gx, gy = np.meshgrid(xs, ys)
    u = (gx * across[0] + gy * across[1]) / a
    v = gx * down[0] + gy * down[1]
    v = np.where(v < 0, v / up, v / dn)
    r = np.sqrt(u * u + v * v)
    core = tuning.alpha_core
    x = np.clip((r - core) / (1.0 - core), 0.0, 1.0)
    alpha = (1.0 - x * x * (3 - 2 * x)).astype(np.float32)
    return alpha, (u.astype(np.float32), v.astype(np.float32))


def colour_field(
    src: F32, base: F32, alpha: F32, uv: tuple[F32, F32], tgt: F32, origin: tuple[int, int]
) -> F64 | None:
    """Log-gain per channel, linear across the face (3 x 3: constant, across, down), fitted
    on a ring of skin around the mouth (where the mask feathers) so the pasted mouth takes
    the target's colour and light; None when the ring is too small to fit."""
    ring = alpha * (1.0 - alpha)
    lips = np.zeros(alpha.shape, np.uint8)
    cv2.fillPoly(lips, [np.round(tgt[48:60] - np.asarray(origin, np.float32)).astype(np.int32)], 1)
    ring[lips > 0] = 0.0
    sel = ring > 0.05
    if int(sel.sum()) < 30:
        return None
    u, v = uv
    wts = ring[sel].astype(np.float64)
    x = np.stack([np.ones(int(sel.sum())), u[sel], v[sel]], axis=1).astype(np.float64)
    ls = np.log(src[sel].astype(np.float64) + 8.0)
    lb = np.log(base[sel].astype(np.float64) + 8.0)
    d = lb - ls
    # Something in front of the face (a hand, a microphone; kept in front by the occlusion
    # mask) would darken or tint the whole pasted mouth and the skin around it: where a
    # sizeable part of the ring's weight has a gain far from the ring's median, only the
    # pixels near it take part. A few stray ones (a strand of hair, a nostril's shadow)
    # barely move the fit and are kept, so a clip with nothing in front is fitted as ever.
    centre = np.median(d, axis=0)
    if float(np.abs(centre).mean()) > COLOUR_INLIER:
        # The median itself far from 1: an object covers most of the ring (the same face
        # in the same shot differs by the light, a gain near 1). Centre on the pixels near
        # that, when there are enough of them, not on the object (a dark one over half
        # the mouth darkened the whole pasted mouth and the skin beside it); too few of
        # them (all of it covered): no fit, which the frames after would have inherited.
        near = np.abs(d).mean(axis=1) <= COLOUR_INLIER
        if int(near.sum()) < 30:
            return None
        centre = np.median(d[near], axis=0)
    off = np.abs(d - centre).mean(axis=1)
    inlier = off <= COLOUR_INLIER
    if float(wts[~inlier].sum()) > COLOUR_OUTLIER_SHARE * float(wts.sum()):
        if int(inlier.sum()) < 30:
            return None
        wts = wts * inlier
    xw = x * wts[:, None]
    reg = np.diag([1e-3, 5.0, 5.0]) * wts.sum() * 1e-2
    coef: F64 = np.linalg.solve(x.T @ xw + reg, xw.T @ d)
    return coef


def apply_colour(src: F32, uv: tuple[F32, F32], coef: F64, gain_range: tuple[float, float]) -> F32:
    """``src`` with the log-gain field ``coef`` (see :func:`colour_field`) applied, the gain
    kept within ``gain_range``."""
    u, v = uv
    field = np.stack([np.ones_like(u), u, v], axis=-1) @ coef.astype(np.float32)
    lo, hi = np.log(gain_range[0]), np.log(gain_range[1])
    gain = np.exp(np.clip(field, lo, hi))
    return ((src + 8.0) * gain - 8.0).astype(np.float32)
