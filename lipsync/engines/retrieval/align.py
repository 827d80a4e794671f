"""Putting a chosen mouth onto the target face, for the ``retrieval`` engine.

The chosen mouth's crop is mapped onto the face by the similarity that aligns the two
frames' rigid points (eye corners, nose), refined by registering the nose base and the
skin beside it (ECC: a rotation and shift, sub-pixel); the target's lips (and jaw) are
placed where the crop's lie, moved part of the way to the wanted gap, and the crop's lips
are opened or closed by the same amount with a small backward map.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.retrieval.geometry import (
    RIGID,
    apply,
    compose,
    mouth_ellipse,
    nose_box,
    similarity,
)
from lipsync.engines.retrieval.index import Crop
from lipsync.engines.retrieval.tuning import RetrievalTuning
from lipsync.engines.viseme import open_mouth
from lipsync.face.geometry import face_axes
from lipsync.types import RGBImage

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def align(crop: Crop, frame: RGBImage, lm_t: F32, tuning: RetrievalTuning) -> F64:
    """Source-frame pixels -> target-frame pixels for ``crop``: the similarity of the two
    frames' rigid points, refined by registering the crop's nose base and the skin beside
    it onto the target's (landmarks jitter and lag a little; the nostrils do not). The
    refinement is a rotation and shift found by ECC (enhanced correlation coefficient)
    maximisation, sub-pixel and steadier from frame to frame than phase correlation; it is
    dropped when the two patches do not correlate or it moves too far."""
    a = similarity(crop.landmarks[list(RIGID)], lm_t[list(RIGID)])
    x1, y1, x2, y2 = nose_box(lm_t)
    h, w = frame.shape[:2]
    bx1, by1 = max(0, int(x1)), max(0, int(y1))
    bx2, by2 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    if bx2 - bx1 < 12 or by2 - by1 < 8:
        return a
    to_box = np.array([[1.0, 0.0, -bx1], [0.0, 1.0, -by1]])
    m = compose(to_box, compose(a, crop.to_source()))
    size = (bx2 - bx1, by2 - by1)
    mapped = cv2.warpAffine(
        crop.image(), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    grey_src = cv2.cvtColor(mapped, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey_tgt = cv2.cvtColor(
        np.ascontiguousarray(frame[by1:by2, bx1:bx2]), cv2.COLOR_RGB2GRAY
    ).astype(np.float32)
    # Find W with grey_src(W x) ~ grey_tgt(x); W^-1 then moves the mapped crop onto the
    # target.
    criteria = (
        cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT,
        tuning.register_iterations,
        tuning.register_eps,
    )
    try:
        cc, warp = cv2.findTransformECC(
            grey_tgt, grey_src, np.eye(2, 3, dtype=np.float32), cv2.MOTION_EUCLIDEAN, criteria, None
        )
    except cv2.error:  # did not converge (flat or unrelated patches)
        return a
    inv = np.asarray(cv2.invertAffineTransform(np.asarray(warp)), np.float64)
    limit = tuning.register_max * float(np.linalg.norm(lm_t[45] - lm_t[36]))
    angle = abs(float(np.arctan2(inv[1, 0], inv[0, 0])))
    if cc < tuning.register_min_cc or np.hypot(*inv[:, 2]) > limit:
        return a
    if angle > tuning.register_max_angle:
        return a
    from_box = np.array([[1.0, 0.0, bx1], [0.0, 1.0, by1]])
    return compose(compose(from_box, compose(inv, to_box)), a)


def placed(crop: Crop, lm_t: F32, a: F64, tuning: RetrievalTuning) -> F32:
    """Target landmarks with ``crop``'s lips put on the face by ``a``, and the jaw following
    its chin."""
    lm_c = crop.landmarks
    tgt = lm_t.astype(np.float32).copy()
    tgt[48:68] = apply(a, lm_c[48:68])
    _, down, _ = face_axes(lm_t)
    chin = apply(a, lm_c[8:9])[0]
    d = float(np.dot(chin - lm_t[8], down))
    for k, w in tuning.jaw_weights:
        tgt[k] += down * (d * w)
    return tgt


def template_unit(template: F64, lm_t: F32) -> float:
    """Pixels per template unit on the face with landmarks ``lm_t``."""
    m = similarity(template, lm_t[list(RIGID)])
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def residual(
    tgt: F32, lm_t: F32, have: float, gap: float, unit: float, tuning: RetrievalTuning
) -> F32:
    """Move the placed lips (and jaw) part of the way from the chosen mouth's gap ``have``
    to the wanted ``gap`` (template units; ``unit`` pixels each): closing is allowed all
    the way, opening up to half again what the mouth shows (its teeth and inside stretch
    with it; a closed mouth cannot be opened: there is nothing to show)."""
    delta = (tuning.residual[0] if gap < have else tuning.residual[1]) * (gap - have)
    delta = float(np.clip(delta, -max(have, 0.0), tuning.open_extra * max(have, 0.0)))
    px = delta * unit
    if abs(px) < 0.3:
        return tgt
    _, down, _ = face_axes(lm_t)
    return open_mouth(tgt, down, px)


def map_mouth(
    crop: Crop,
    a: F64,
    origin: tuple[int, int],
    size: tuple[int, int],
    gap_map: tuple[F32, F32] | None = None,
) -> F32:
    """``crop`` mapped by ``a`` onto the target box at ``origin``, then by the lip-opening
    map ``gap_map`` (box pixel -> where to read in the mapped crop; see
    :func:`lip_gap_map`) when given. The two maps are composed and the crop resampled once,
    bicubic: each bilinear resampling at a sub-pixel offset averages neighbouring pixels,
    and two of them took a third of the mouth's fine texture (Laplacian variance) away."""
    shift = np.array([[1.0, 0.0, -origin[0]], [0.0, 1.0, -origin[1]]])
    m = compose(shift, compose(a, crop.to_source()))
    if gap_map is None:
        src = cv2.warpAffine(
            crop.image(), m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
        return np.asarray(src, np.float32)
    inv = np.asarray(cv2.invertAffineTransform(m), np.float32)
    mx, my = gap_map
    cx = inv[0, 0] * mx + inv[0, 1] * my + inv[0, 2]
    cy = inv[1, 0] * mx + inv[1, 1] * my + inv[1, 2]
    src = cv2.remap(
        crop.image(), cx, cy, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(src, np.float32)


def lip_gap_map(
    placed: F32,
    tgt: F32,
    origin: tuple[int, int],
    size: tuple[int, int],
    tuning: RetrievalTuning,
) -> tuple[F32, F32] | None:
    """The backward map (box pixel -> where to read, box pixels) that opens or closes lips
    sitting at ``placed`` to ``tgt`` in a box of ``size`` (width, height) at ``origin``: the
    upper lip and what is above it move with the upper inner lip, the lower lip and below
    with the lower one, the mouth's inside stretches or shrinks between them; the movement
    tapers towards the mouth corners and fades out towards the mask's rim. None: no move."""
    _, down, _ = face_axes(tgt)
    up_px = float(np.mean((tgt[61:64] - placed[61:64]) @ down))
    dn_px = float(np.mean((tgt[65:68] - placed[65:68]) @ down))
    if max(abs(up_px), abs(dn_px)) < 0.3:
        return None
    centre, across, _, a, up, dn = mouth_ellipse(placed, tuning)
    top = float(np.mean((placed[61:64] - centre) @ down))  # inner lips, along ``down``
    bot = float(np.mean((placed[65:68] - centre) @ down))
    if bot - top < 1.0:
        bot = top + 1.0
    w, h = size
    gx, gy = np.meshgrid(
        np.arange(w, dtype=np.float32) + origin[0] - centre[0],
        np.arange(h, dtype=np.float32) + origin[1] - centre[1],
    )
    u = (gx * across[0] + gy * across[1]) / (a / tuning.mask_across * 0.5)
    v = gx * down[0] + gy * down[1]

    def shift(vv: F32) -> F32:
        t = np.clip((vv - top) / (bot - top), 0.0, 1.0)
        d = up_px + (dn_px - up_px) * t
        # Fade out beyond the lips towards the rim (nose above, chin below).
        fade_up = np.clip(1.0 - (top - vv) / max(up - abs(top), 1.0), 0.0, 1.0)
        fade_dn = np.clip(1.0 - (vv - bot) / max(dn - abs(bot), 1.0), 0.0, 1.0)
        fade = np.where(vv < top, fade_up, np.where(vv > bot, fade_dn, 1.0))
        taper = np.clip(1.0 - 0.85 * u * u, 0.0, 1.0)
        return (d * fade * taper).astype(np.float32)

    # Backward map (one fixed-point step): read where the pixel came from.
    d0 = shift(v)
    d1 = shift(v - d0)
    map_x = (gx - d1 * down[0] + centre[0] - origin[0]).astype(np.float32)
    map_y = (gy - d1 * down[1] + centre[1] - origin[1]).astype(np.float32)
    return map_x, map_y
