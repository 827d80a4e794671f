"""The ``viseme`` engine's lower-face warp: a thin-plate spline through the moved lip and
jaw landmarks (the rest of the face and the region's border held still), confined to a
soft mask of the lower face so nothing else can change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.viseme.shape import JAW
from lipsync.face.geometry import lower_face_polygon
from lipsync.smoothing import ThinPlateSpline
from lipsync.types import Patch, RGBImage

F32 = npt.NDArray[np.float32]
Box = tuple[int, int, int, int]  # x1, y1, x2, y2


@dataclass(frozen=True)
class LowerFaceWarp:
    """A lower-face region of a frame, warped; ``map_x/map_y`` give, per pixel, where it was
    read in the frame; ``region`` is the soft lower-face mask the motion was confined to."""

    x1: int
    y1: int
    x2: int
    y2: int
    image: RGBImage
    region: F32
    map_x: F32
    map_y: F32


def warp_field(lm: F32, tgt: F32, box: Box, inner_lips: bool) -> tuple[F32, F32]:
    """The backward displacement (target pixel -> where to read, minus the pixel) over
    ``box`` that moves landmarks ``lm`` to ``tgt``: a thin-plate spline through the moved
    lips and jaw, the other landmarks and the box's border held still, evaluated on a
    coarse grid and upsampled bilinearly (the field is smooth)."""
    x1, y1, x2, y2 = box
    rw, rh = x2 - x1, y2 - y1
    # Control points: moved landmarks + fixed ones + the region's border (fixed).
    moved = np.arange(48, 68 if inner_lips else 60).tolist() + list(JAW)
    fixed = [k for k in range(68) if k not in moved and (inner_lips or k < 60)]
    border = []
    for t in np.linspace(0, 1, 7):
        border += [(x1 + t * rw, y1), (x1 + t * rw, y2), (x1, y1 + t * rh), (x2, y1 + t * rh)]
    src = np.vstack([lm[moved], lm[fixed], np.asarray(border, np.float32)])
    dst = np.vstack([tgt[moved], lm[fixed], np.asarray(border, np.float32)])
    # Inverse map: for a target pixel, where to read in the source frame.
    rbf = ThinPlateSpline(dst.astype(np.float64), (src - dst).astype(np.float64), smoothing=1e-3)
    step = 10  # the field is smooth: a coarse grid, bilinearly upsampled
    gx = np.arange(x1, x2 + step, step, dtype=np.float32)
    gy = np.arange(y1, y2 + step, step, dtype=np.float32)
    mx, my = np.meshgrid(gx, gy)
    coarse = rbf(np.column_stack([mx.ravel(), my.ravel()])).astype(np.float32)
    fx = cv2.resize(coarse[:, 0].reshape(mx.shape), (rw, rh), interpolation=cv2.INTER_LINEAR)
    fy = cv2.resize(coarse[:, 1].reshape(mx.shape), (rw, rh), interpolation=cv2.INTER_LINEAR)
    return cast(F32, fx), cast(F32, fy)


def region_mask(poly: F32, lm: F32, box: Box) -> F32:
    """The lower-face polygon ``poly`` filled over ``box`` and feathered inwards (a soft
    edge, about 4% of the face width), 0..1."""
    x1, y1, x2, y2 = box
    rw, rh = x2 - x1, y2 - y1
    region = np.zeros((rh, rw), np.float32)
    cv2.fillPoly(region, [np.round(poly - [x1, y1]).astype(np.int32)], 1.0)
    feather = max(3.0, 0.04 * float(np.linalg.norm(lm[16] - lm[0])))
    # The blur of a filled polygon is smooth: blurred at 1/k of the size and scaled up,
    # it is the same mask within a few thousandths, at a fraction of the cost.
    k = max(1, int(feather / 3))
    if k > 1:
        small = cv2.resize(region, (rw // k + 1, rh // k + 1), interpolation=cv2.INTER_AREA)
        soft = cv2.resize(
            cv2.GaussianBlur(small, (0, 0), feather / k),
            (rw, rh),
            interpolation=cv2.INTER_LINEAR,
        )
    else:
        soft = cv2.GaussianBlur(region, (0, 0), feather)
    out: F32 = soft * region
    return out


def warp_lower_face(
    frame: RGBImage, lm: F32, tgt: F32, inner_lips: bool = True
) -> LowerFaceWarp | Patch:
    """Warp the lower face of ``frame`` so landmarks ``lm`` move to ``tgt``.

    ``inner_lips=False`` leaves the inner lip points out of the warp: for a caller that
    paints the whole mouth over it, where closing an open mouth would put points that
    nearly coincide (the closed inner lips) on very different source positions and
    bend the smooth field far beyond the lips (into the chin).

    Returns the warped region, or an unchanged patch when the region is too small.
    """
    h, w = frame.shape[:2]
    poly = lower_face_polygon(lm, extend=0.14)
    x1, y1 = np.floor(poly.min(axis=0))
    x2, y2 = np.ceil(poly.max(axis=0))
    x1, y1 = int(max(0, x1)), int(max(0, y1))
    x2, y2 = int(min(w, x2 + 1)), int(min(h, y2 + 1))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return Patch(x1, y1, frame[y1:y2, x1:x2].copy())
    box = (x1, y1, x2, y2)
    fx, fy = warp_field(lm, tgt, box, inner_lips)
    # Confine the motion to the lower face (soft edge) so nothing else can change.
    region = region_mask(poly, lm, box)
    xs, ys = np.meshgrid(np.arange(x1, x2, dtype=np.float32), np.arange(y1, y2, dtype=np.float32))
    map_x = xs + fx * region
    map_y = ys + fy * region
    warped = np.asarray(
        cv2.remap(
            frame, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ),
        np.uint8,
    )
    return LowerFaceWarp(x1, y1, x2, y2, warped, region, map_x, map_y)
