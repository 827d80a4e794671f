"""Misplaced mouths: did anything change outside this person's own lower face?

Each frame pair is tiled into square blocks (:func:`block_size`: 16 px at 720p, scaled with
the frame's shorter side, at least 8). The *input's* own lower face, from the evaluator's 5
points of the reference frame, is left out, generously padded: a face-aligned hexagon from
0.45 eye distances above the nose base (the nose bottom) down to 1.8 below it (the chin is
about 1.25 below), 2.9 eye distances wide down to the mouth, narrowing to 1.7 at the bottom
(the jaw line); a block that touches it at all is left out. The measure of a frame is the
largest mean absolute difference (0-255, over the block's pixels and RGB channels) of any
block left in. A re-encode moves a block by a few levels; a mouth pasted on a forehead, a
tie or a beard below the real lips moves its blocks by tens, above :data:`BLOCK_CHANGE`.
A frame whose input shows no face (to the evaluator) has no lower face: every block counts.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.evaluate.faces import FaceFrame

BLOCK_CHANGE = 15.0  # a block changed by more than this (mean |difference|) is flagged
BLOCKS_PER_SIDE = 45  # blocks across the frame's shorter side (16 px at 720p)
MIN_BLOCK = 8
# The padded lower face, (across, down) in eye distances from the nose base.
LOWER_FACE_D: tuple[tuple[float, float], ...] = (
    (-1.45, -0.45),
    (1.45, -0.45),
    (1.45, 1.0),
    (0.85, 1.8),
    (-0.85, 1.8),
    (-1.45, 1.0),
)


def block_size(height: int, width: int) -> int:
    """The block side for a frame of this size."""
    return max(MIN_BLOCK, round(min(height, width) / BLOCKS_PER_SIDE))


def lower_face_polygon(face: FaceFrame) -> npt.NDArray[np.float32]:
    """The padded lower face of ``face`` in image coordinates (see the module docstring)."""
    return np.array(
        [face.nose + (face.across * x + face.down * y) * face.d for x, y in LOWER_FACE_D],
        np.float32,
    )


def _edges(size: int, block: int) -> npt.NDArray[np.intp]:
    """Block edges along one side; a last partial block under half a block joins the one
    before it."""
    edges = list(range(0, size, block)) + [size]
    if len(edges) > 2 and edges[-1] - edges[-2] < block // 2:
        del edges[-2]
    return np.asarray(edges, np.intp)


def block_changes(
    output: npt.NDArray[np.uint8],
    reference: npt.NDArray[np.uint8],
    block: int,
    diff: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.float32]:
    """Mean absolute difference (over pixels and channels) of each block, (rows, cols);
    ``diff``: ``cv2.absdiff(output, reference)`` when the caller has it."""
    if diff is None:
        diff = np.asarray(cv2.absdiff(output, reference), np.uint8)
    channels = 1 if diff.ndim == 2 else diff.shape[2]
    ys, xs = _edges(diff.shape[0], block), _edges(diff.shape[1], block)
    # Each band of block rows summed down its columns (channels side by side in a row),
    # then each block's columns summed: the same integer sums as an integral image, at
    # half its cost (0.38 against 0.82 ms on a 720p frame)
    flat = diff.reshape(diff.shape[0], -1)
    bands = [
        cv2.reduce(flat[y0:y1], 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)
        for y0, y1 in zip(ys[:-1], ys[1:], strict=True)
    ]
    total = np.add.reduceat(np.concatenate(bands), xs[:-1] * channels, axis=1, dtype=np.int64)
    area = np.outer(np.diff(ys), np.diff(xs)) * channels
    return np.asarray(total / area, np.float32)


def outside_blocks(
    face: FaceFrame | None, height: int, width: int, block: int
) -> npt.NDArray[np.bool_]:
    """Which blocks lie wholly outside the padded lower face of ``face`` (all of them when
    there is no face)."""
    ys, xs = _edges(height, block), _edges(width, block)
    keep = np.ones((ys.size - 1, xs.size - 1), bool)
    if face is None:
        return keep
    poly = lower_face_polygon(face)
    x0, y0 = (int(max(0, np.floor(v))) for v in poly.min(axis=0))
    x1 = int(min(width, np.ceil(poly[:, 0].max()) + 1))
    y1 = int(min(height, np.ceil(poly[:, 1].max()) + 1))
    touched = np.zeros_like(keep)
    if x1 > x0 and y1 > y0:  # drawn in its bounding box only, then summed per block
        sub = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(sub, [np.round(poly - np.array([x0, y0], np.float32)).astype(np.int32)], 1)
        r0, r1 = np.searchsorted(ys, [y0, y1 - 1], side="right") - 1
        c0, c1 = np.searchsorted(xs, [x0, x1 - 1], side="right") - 1
        row_starts = np.maximum(ys[r0 : r1 + 1], y0) - y0
        col_starts = np.maximum(xs[c0 : c1 + 1], x0) - x0
        per_block = np.maximum.reduceat(np.maximum.reduceat(sub, row_starts, 0), col_starts, 1)
        touched[r0 : r1 + 1, c0 : c1 + 1] = per_block > 0
    return keep & ~touched


def outside_change(
    output: npt.NDArray[np.uint8],
    reference: npt.NDArray[np.uint8],
    face: FaceFrame | None,
    block: int | None = None,
    diff: npt.NDArray[np.uint8] | None = None,
) -> float:
    """The largest block change outside the reference's padded lower face (see the module
    docstring); ``face``: the reference frame's face frame, None when it shows no face;
    ``block``: the block side (default :func:`block_size`); ``diff``: their
    ``cv2.absdiff`` when the caller has it. Frames of the same size."""
    h, w = reference.shape[:2]
    b = block if block is not None else block_size(h, w)
    changes = block_changes(output, reference, b, diff)
    keep = outside_blocks(face, h, w, b)
    return float(changes[keep].max()) if keep.any() else 0.0
