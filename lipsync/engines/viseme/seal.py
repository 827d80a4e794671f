"""Sealing lips the ``viseme`` engine's warp squeezed shut: where the source's open mouth
was closed by the warp, lips are shown (their median colour, with a soft seam where they
meet), not squashed teeth."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.viseme.shape import poly_mask
from lipsync.types import RGBImage

F32 = npt.NDArray[np.float32]


def _sealed_region(
    lm: F32,
    tgt: F32,
    shown: F32,
    origin: tuple[int, int],
    shape: tuple[int, int],
    maps: tuple[F32, F32],
    kernel: npt.NDArray[np.uint8],
) -> tuple[F32, F32, F32]:
    """The old mouth interior as the warp moved it (and the warp's own inner-lip polygon),
    the inner-lip polygon that should be seen, and what of the old interior lies outside
    it (to be sealed)."""
    ox, oy = origin
    map_x, map_y = maps
    src_inner = poly_mask(lm[60:68], origin, shape)
    moved = cv2.remap(
        src_inner,
        map_x - ox,
        map_y - oy,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    warp_inner = poly_mask(tgt[60:68], origin, shape)
    tgt_inner = poly_mask(shown[60:68], origin, shape)
    old_inside = np.maximum(moved, warp_inner)
    sealed = np.clip(cv2.dilate(old_inside, kernel) - tgt_inner, 0.0, 1.0)
    return old_inside, tgt_inner, sealed


def _seam(tgt: F32, origin: tuple[int, int], shape: tuple[int, int], grow: int) -> F32:
    """The line where the closed lips meet, drawn anti-aliased (0..1)."""
    ox, oy = origin
    seam = np.array(
        [
            tgt[60],
            (tgt[61] + tgt[67]) / 2,
            (tgt[62] + tgt[66]) / 2,
            (tgt[63] + tgt[65]) / 2,
            tgt[64],
        ],
        np.float32,
    ) - [ox, oy]
    line = np.zeros(shape, np.uint8)
    cv2.polylines(
        line,
        [np.round(seam * 4).astype(np.int32)],
        False,
        255,
        max(1, grow),
        cv2.LINE_AA,
        shift=2,
    )
    return line.astype(np.float32) / 255.0


def seal_lips(
    roi: RGBImage,
    lm: F32,
    tgt: F32,
    shown: F32,
    origin: tuple[int, int],
    map_x: F32,
    map_y: F32,
) -> RGBImage:
    """Where the source's open mouth was squeezed shut, show lips, not squashed teeth.

    ``tgt`` are the warp's landmarks, ``shown`` the same with the inner lips at the gap
    that should be seen; everything of the old interior outside ``shown`` becomes lip.
    """
    shape = roi.shape[:2]
    width = float(np.linalg.norm(tgt[54] - tgt[48])) or 1.0
    grow = max(1, int(round(width / 40)))
    kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    old_inside, tgt_inner, sealed = _sealed_region(
        lm, tgt, shown, origin, shape, (map_x, map_y), kernel
    )
    if float(sealed.max()) < 0.05:
        return roi
    lips = (
        np.clip(
            poly_mask(tgt[48:60], origin, shape)
            - cv2.dilate(np.maximum(old_inside, tgt_inner), kernel, iterations=2),
            0.0,
            1.0,
        )
        > 0.5
    )
    if lips.sum() < 10:
        return roi
    colour = np.median(roi[lips].astype(np.float32), axis=0)
    fill = np.empty(roi.shape, np.float32)
    fill[:] = colour
    soft = max(0.7, width / 80)
    line_f = cv2.GaussianBlur(_seam(tgt, origin, shape, grow), (0, 0), soft)
    a = cv2.GaussianBlur(sealed, (0, 0), soft)[..., None]
    near = cv2.dilate(sealed, kernel, iterations=2)
    line_a = (0.45 * np.clip(line_f * 1.5, 0, 1) * near)[..., None]
    out = roi.astype(np.float32)
    out = out * (1 - a) + fill * a
    out = out * (1 - line_a) + (colour * 0.55) * line_a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
