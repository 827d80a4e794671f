"""Closing an open mouth by moving its real lips (the ``viseme`` engine), instead of
painting over it: see :func:`close_mouth`."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.viseme.shape import UPPER_SHARE
from lipsync.face.geometry import face_axes
from lipsync.types import Patch, RGBImage

F32 = npt.NDArray[np.float32]
Curve = tuple[F32, F32]  # (u across, v down) of a lip outline, sorted by u


def _lip_curves(lm: F32, across: F32, down: F32, centre: F32) -> tuple[list[Curve], float, float]:
    """The outer upper, inner upper, inner lower and outer lower lip outlines in mouth
    coordinates (u across, v down from the mouth's centre), and v of the nose base and the
    chin."""

    def uv(pts: F32) -> tuple[F32, F32]:
        d = pts.astype(np.float32) - centre
        return (d @ across).astype(np.float32), (d @ down).astype(np.float32)

    def curve(idx: Sequence[int]) -> Curve:
        u, v = uv(lm[list(idx)])
        order = np.argsort(u)
        return u[order], v[order]

    outer_up = curve(range(48, 55))
    # The opening runs out at the outer corners (a smile's dark corners lie outside the
    # inner-corner points 60 and 64), so the inner curves end there.
    inner_up = curve([48, 61, 62, 63, 54])
    inner_dn = curve([48, 67, 66, 65, 54])
    outer_dn = curve([48, 59, 58, 57, 56, 55, 54])
    _, v_nose = uv(lm[33:34])
    _, v_chin = uv(lm[8:9])
    return [outer_up, inner_up, inner_dn, outer_dn], float(v_nose[0]), float(v_chin[0])


def _closing_shift(
    u: F32,
    v: F32,
    curves: list[Curve],
    v_nose: float,
    v_chin: float,
    keep: float,
) -> F32:
    """Per pixel (mouth coordinates ``u``, ``v``): how far down to read from, so that the
    upper lip comes down by :data:`UPPER_SHARE` of the closing and the lower lip goes up by
    the rest (``keep``: the share of the gap left), the skin between stretching."""
    outer_up, inner_up, inner_dn, outer_dn = curves
    u_lo, u_hi = float(outer_up[0][0]), float(outer_up[0][-1])
    v_ou = np.interp(u, *outer_up).astype(np.float32)
    v_iu = np.interp(u, *inner_up).astype(np.float32)
    v_il = np.interp(u, *inner_dn).astype(np.float32)
    v_ol = np.interp(u, *outer_dn).astype(np.float32)
    inside = (u > u_lo) & (u < u_hi)
    gap = np.where(inside, np.maximum(v_il - v_iu, 0.0), 0.0)
    close = gap * (1.0 - keep)
    a = UPPER_SHARE * close  # the upper lip comes down by this
    b = (1.0 - UPPER_SHARE) * close  # the lower lip goes up by this
    v_top = (v_nose + v_ou) / 2
    v_bot = v_ol + 0.75 * (v_chin - v_ol)
    src = v.copy()
    seg = (v >= v_top) & (v < v_ou + a)
    src[seg] = (v_top + (v - v_top) * (v_ou - v_top) / np.maximum(v_ou + a - v_top, 1e-3))[seg]
    seg = (v >= v_ou + a) & (v < v_il - b)
    src[seg] = (v - a)[seg]
    seg = (v >= v_il - b) & (v < v_ol - b)
    src[seg] = (v + b)[seg]
    seg = (v >= v_ol - b) & (v < v_bot)
    src[seg] = (v_ol + (v - v_ol + b) * (v_bot - v_ol) / np.maximum(v_bot - v_ol + b, 1e-3))[seg]
    out: F32 = src - v
    return out


def close_mouth(frame: RGBImage, lm: F32, gap_tgt: float, gap_src: float) -> Patch | None:
    """Close the frame's own open mouth to an inner-lip gap of ``gap_tgt`` pixels (it
    shows ``gap_src``) by moving its real lips, not by painting over them.

    Column by column down the face (along its own axes), the upper lip moves down by
    :data:`UPPER_SHARE` of the closing and the lower lip up by the rest; each lip keeps
    its own pixels (texture, highlights, its inner edge's shadow, which becomes the line
    where the lips meet), the gap left between them shows the top of the old opening
    (the upper teeth: the lower lip rises over the rest), and the skin between the lips
    and the nose, and the lips and the chin, stretches to follow. The closing tapers to
    nothing at the mouth corners, where the gap does, so no seam is left. None when the
    mouth is too small to work on."""
    across, down, _ = face_axes(lm)
    centre = lm[48:68].mean(axis=0)
    curves, v_nose, v_chin = _lip_curves(lm, across, down, centre)
    outer_up = curves[0]
    u_lo, u_hi = float(outer_up[0][0]), float(outer_up[0][-1])
    if u_hi - u_lo < 8:
        return None
    # The region: from halfway between the nose and the upper lip (where the stretch
    # starts) to the chin.
    v_start = (v_nose + float(outer_up[1].min())) / 2 - 2
    corners = np.array(
        [[u, v] for u in (u_lo - 2, u_hi + 2) for v in (v_start, v_chin)],
        np.float32,
    )
    pts = centre + corners[:, :1] * across + corners[:, 1:] * down
    h, w = frame.shape[:2]
    x1, y1 = np.floor(pts.min(axis=0)).astype(int) - 1
    x2, y2 = np.ceil(pts.max(axis=0)).astype(int) + 2
    x1, y1, x2, y2 = max(0, int(x1)), max(0, int(y1)), min(w, int(x2)), min(h, int(y2))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return None
    xs, ys = np.meshgrid(np.arange(x1, x2, dtype=np.float32), np.arange(y1, y2, dtype=np.float32))
    du, dv = xs - centre[0], ys - centre[1]
    u = du * across[0] + dv * across[1]
    v = du * down[0] + dv * down[1]
    keep = float(np.clip(gap_tgt / max(gap_src, 1e-6), 0.0, 1.0))
    shift = _closing_shift(u, v, curves, v_nose, v_chin, keep)
    map_x = (xs + shift * down[0]).astype(np.float32)
    map_y = (ys + shift * down[1]).astype(np.float32)
    out = cv2.remap(
        frame, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    mask = np.ones((y2 - y1, x2 - x1), np.float32)
    return Patch(x1, y1, np.asarray(out, np.uint8), mask=mask)
