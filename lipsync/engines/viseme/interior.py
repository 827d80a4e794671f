"""The inside of the mouth, for the ``viseme`` engine: where the mouth opens wider than the
source frame shows, it is drawn (dark cavity, upper teeth under the lip, lower teeth and
tongue when wide open, shaded to the face's lighting); the person's own teeth and mouth
are kept where the source shows them, moved with the lip they belong to."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.viseme.shape import poly_mask, smooth_closed_curve, smoothstep
from lipsync.face.geometry import face_axes
from lipsync.types import RGBImage

F32 = npt.NDArray[np.float32]
FA = npt.NDArray[np.floating[Any]]  # float32 or float64


def own_interior(
    frame: RGBImage,
    lm: F32,
    tgt: F32,
    origin: tuple[int, int],
    shape: tuple[int, int],
    down: F32,
) -> tuple[F32, F32]:
    """The source's mouth interior translated with each lip, and where it covers."""
    ox, oy = origin
    rh, rw = shape
    xs, ys = np.meshgrid(np.arange(rw, dtype=np.float32) + ox, np.arange(rh, dtype=np.float32) + oy)
    # The source interior mask over a box that holds both the source and moved mouths.
    inner = lm[60:68]
    mid = (lm[62] + lm[66]) / 2
    d_up = (tgt[61:64] - lm[61:64]).mean(axis=0)
    d_lo = (tgt[65:68] - lm[65:68]).mean(axis=0)
    real = np.zeros((rh, rw, 3), np.float32)
    weight = np.zeros((rh, rw), np.float32)
    for d, upper in ((d_up, True), (d_lo, False)):
        sx, sy = xs - float(d[0]), ys - float(d[1])
        half = (sx - mid[0]) * down[0] + (sy - mid[1]) * down[1]
        side = smoothstep((-half if upper else half) / 1.5 + 0.5)
        poly = smooth_closed_curve((inner - [ox - d[0], oy - d[1]]).astype(np.float32))
        m = np.zeros((rh, rw), np.uint8)
        cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
        inside = m.astype(np.float32) / 255.0
        w = inside * side
        sample = cv2.remap(frame, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        real += np.asarray(sample, np.float32) * w[..., None]
        weight += w
    cover = np.clip(weight, 0.0, 1.0)
    real /= np.maximum(weight, 1e-6)[..., None]
    return real, cover


def _lighting(frame: RGBImage, tgt: F32, width: float) -> tuple[float, float, npt.NDArray[Any]]:
    """The skin around the mouth: its median luminance, the light relative to a mid-grey
    reference, and a faint tint of its colour."""
    mx1, my1 = np.floor(tgt[48:60].min(axis=0)).astype(int)
    mx2, my2 = np.ceil(tgt[48:60].max(axis=0)).astype(int)
    pad = int(0.4 * width)
    sy1, sy2 = max(0, my1 - pad), min(frame.shape[0], my2 + pad)
    sx1, sx2 = max(0, mx1 - pad), min(frame.shape[1], mx2 + pad)
    skin = frame[sy1:sy2, sx1:sx2].reshape(-1, 3).astype(np.float32)
    skin_lum = (
        float(np.median(skin @ np.array([0.299, 0.587, 0.114], np.float32))) if skin.size else 150.0
    )
    light = float(np.clip(skin_lum / 150.0, 0.35, 1.4))
    tint = skin.mean(axis=0) / max(float(skin.mean()), 1.0) if skin.size else np.ones(3)
    tint = (0.85 + 0.15 * tint).astype(np.float32)
    return skin_lum, light, tint


def _mouth_coords(
    tgt: F32,
    axes: tuple[F32, F32],
    origin: tuple[int, int],
    shape: tuple[int, int],
    sizes: tuple[float, float],
) -> tuple[FA, FA]:
    """Mouth coordinates of each pixel: u across (-1..1), v down from the upper inner lip
    (0..1 at the gap), measured from a parabola through the upper lip's line. ``axes``:
    the face's across and down; ``sizes``: the mouth width and the gap (pixels)."""
    across, down = axes
    width, gap_tgt = sizes
    ox, oy = origin
    rh, rw = shape
    xs, ys = np.meshgrid(np.arange(rw, dtype=np.float32) + ox, np.arange(rh, dtype=np.float32) + oy)
    centre = (tgt[60] + tgt[64]) / 2
    top = (tgt[61] + tgt[62] * 2 + tgt[63]) / 4
    u = ((xs - centre[0]) * across[0] + (ys - centre[1]) * across[1]) / (width / 2)
    v = ((xs - top[0]) * down[0] + (ys - top[1]) * down[1]) / max(gap_tgt, 1.0)
    # Follow the upper lip's curve: measure v from a parabola through the lip line.
    lip_curve = 0.25 * (u**2) * (float(np.dot(tgt[60] - top, down)) / max(gap_tgt, 1.0)) * 4
    return u, v - lip_curve


def _cavity(u: FA, v: FA, tint: npt.NDArray[Any], light: float, gap_rel: float) -> FA:
    """Dark red-brown cavity, darkest at the back (centre), lighter towards the lips; the
    tongue low in the mouth when it is well open, its back in shadow."""
    rh, rw = u.shape
    ring = np.clip(np.abs(u) ** 2 + (2 * np.abs(v - 0.5)) ** 2, 0, 1)[..., None]
    cavity = np.array([38, 12, 16], np.float32) + np.array([40, 20, 20], np.float32) * ring
    img = np.broadcast_to(cavity * tint, (rh, rw, 3)) * light
    if gap_rel > 0.15:
        t_mask = smoothstep((1.0 - ((u / 0.58) ** 2 + ((v - 1.08) / 0.42) ** 2)) * 2.5)
        t_shade = np.clip(0.45 + 0.6 * (v - 0.7), 0.35, 1.0)[..., None]
        tongue = np.array([132, 50, 56], np.float32) * tint * light * t_shade
        a = (t_mask * min(1.0, (gap_rel - 0.15) / 0.15))[..., None]
        img = img * (1 - a) + tongue * a
    out: FA = img
    return out


def _teeth(
    img: FA,
    u: FA,
    v: FA,
    sizes: tuple[float, float, float, float],
    skin_lum: float,
) -> FA:
    """Upper teeth: a band under the upper lip, a little brighter than the skin, curved
    along the lip, darker towards the corners and in the lip's shadow, with faint
    separations between the teeth; lower teeth: only a thin shadowed edge above the lower
    lip when wide open. ``sizes``: the gap (pixels), the mouth width, the gap as a share
    of it, and the softness of the drawing (pixels)."""
    gap_tgt, width, gap_rel, soft = sizes
    teeth_h = min(0.42 * gap_tgt, 0.11 * width) / max(gap_tgt, 1.0)
    edge_v = teeth_h * (1.0 - 0.3 * np.clip(u, -1, 1) ** 2)
    edge = smoothstep((edge_v - v) / max(0.15 * teeth_h, 0.02) + 0.5)
    side = np.clip(1.0 - (np.abs(u) / 0.8) ** 3, 0.0, 1.0)
    across_shade = 0.45 + 0.55 * np.clip(np.cos(np.clip(u, -1, 1) * np.pi / 2), 0, 1) ** 1.5
    lip_shadow = 0.72 + 0.28 * smoothstep(v / max(teeth_h * 0.45, 0.02))
    bright = float(np.clip(skin_lum * 1.25, 140.0, 235.0))
    tooth = np.array([0.96, 0.93, 0.86], np.float32) * bright
    seps = np.ones_like(u)
    for pos, depth in ((0.0, 0.2), (0.21, 0.15), (0.38, 0.13), (0.53, 0.1)):
        seps -= depth * np.exp(-((((np.abs(u) - pos) * width / 2) / max(soft, 0.8)) ** 2))
    t_col = tooth[None, None, :] * (across_shade * lip_shadow * seps)[..., None]
    a_up = (edge * side * (v > -0.5))[..., None]
    img = img * (1 - a_up) + t_col * a_up
    if gap_rel > 0.28:
        lt_h = 0.3 * teeth_h
        lt_edge = smoothstep((v - (1.0 - lt_h)) / max(0.2 * lt_h, 0.02) + 0.5)
        lt_side = np.clip(1.0 - (np.abs(u) / 0.55) ** 3, 0.0, 1.0)
        a_lo = (lt_edge * lt_side * min(1.0, (gap_rel - 0.28) / 0.1) * 0.6)[..., None]
        lo_col = tooth * 0.55
        img = img * (1 - a_lo) + lo_col[None, None, :] * across_shade[..., None] * a_lo
    return img


def paint_mouth(
    roi: RGBImage,
    frame: RGBImage,
    lm: F32,
    tgt: F32,
    origin: tuple[int, int],
    gap_tgt: float,
    gap_src: float,
    seed: int = 0,
) -> RGBImage:
    """``roi`` (at ``origin`` in the frame) with the inside of the mouth drawn in the inner
    lips of ``tgt`` (a gap of ``gap_tgt`` pixels; the source shows ``gap_src``); ``seed``
    fixes the grain."""
    across, down, _ = face_axes(lm)
    hard = poly_mask(tgt[60:68], origin, roi.shape[:2])
    if not hard.any():
        return roi
    width = float(np.linalg.norm(tgt[64] - tgt[60])) or 1.0
    soft = max(0.6, width / 90.0)
    full_mask = cv2.GaussianBlur(hard, (0, 0), soft)
    # Draw only where the mask reaches (the inner-lip opening and its soft edge), not over
    # the whole mouth box: a fraction of the pixels, the same result.
    rows = np.flatnonzero(full_mask.max(axis=1) > 1e-3)
    cols = np.flatnonzero(full_mask.max(axis=0) > 1e-3)
    by1, by2, bx1, bx2 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    mask = full_mask[by1:by2, bx1:bx2]
    origin = (origin[0] + int(bx1), origin[1] + int(by1))
    rh, rw = mask.shape
    skin_lum, light, tint = _lighting(frame, tgt, width)
    u, v = _mouth_coords(tgt, (across, down), origin, (rh, rw), (width, gap_tgt))
    gap_rel = gap_tgt / width
    img = _cavity(u, v, tint, light, gap_rel)
    img = _teeth(img, u, v, (gap_tgt, width, gap_rel, soft), skin_lum)
    img = np.asarray(cv2.GaussianBlur(img.astype(np.float32), (0, 0), soft * 0.7), np.float32)
    img += np.random.default_rng(seed).normal(0.0, 1.6, img.shape).astype(np.float32)
    if gap_src > 0.5:
        # The person's own teeth and mouth, moved with the lip they belong to: the upper
        # part with the upper lip, the lower part with the lower lip (and jaw). Only
        # what neither covers - the newly opened gap - is drawn.
        real, cover = own_interior(frame, lm, tgt, origin, (rh, rw), down)
        img = (real * cover[..., None] + img * (1.0 - cover[..., None])).astype(np.float32)
    a = np.asarray(mask, np.float32)[..., None]
    sub = roi[by1:by2, bx1:bx2].astype(np.float32) * (1 - a) + img * a
    out = roi.copy()
    out[by1:by2, bx1:bx2] = np.clip(sub + 0.5, 0, 255).astype(np.uint8)
    return out
