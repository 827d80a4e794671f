"""Lip-colour measures of a rendered mouth, for tests on real faces: how many bands of lip
colour a line down the mouth crosses (a doubled or torn mouth shows more), and a doubled
mouth made on purpose to show the measure can fail."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

COLUMNS = (-0.2, -0.1, 0.0, 0.1, 0.2)  # mouth widths either side of the mouth's middle


def lip_bands(rgb: npt.NDArray[np.uint8], lm: npt.NDArray[np.float32], threshold: float) -> int:
    """How many separate bands of lip colour (YCrCb red chroma above ``threshold``) a line
    down the mouth crosses between the nose and the chin: 2 for a mouth (upper and lower
    lip; 3 when a wide-open mouth shows the tongue), 3-4 when a second pair of lips shows.
    The median over five lines near the mouth's middle."""
    cr = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 1]
    w = float(np.linalg.norm(lm[54] - lm[48]))
    cx = float(lm[48:68, 0].mean())
    y1, y2 = int(lm[33, 1] + 0.1 * w), int(lm[8, 1] - 0.1 * w)
    min_len = max(2, int(0.04 * w))
    counts = []
    for f in COLUMNS:
        x = int(round(cx + f * w))
        col = (cr[y1:y2, max(0, x - 1) : x + 2].mean(axis=1) > threshold).astype(np.uint8)
        col = cv2.morphologyEx(col[:, None], cv2.MORPH_CLOSE, np.ones((3, 1), np.uint8))[:, 0]
        runs = np.diff(np.concatenate([[0], col, [0]]).astype(np.int8))
        starts, stops = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
        counts.append(int(np.sum(stops - starts >= min_len)))
    return int(np.median(counts))


def lip_threshold(rgb: npt.NDArray[np.uint8], lm: npt.NDArray[np.float32]) -> float:
    """Otsu's threshold of the red chroma around the mouth of the input frame: lips vs skin."""
    cr = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 1]
    w = float(np.linalg.norm(lm[54] - lm[48]))
    x1, x2 = int(lm[48, 0] - 0.3 * w), int(lm[54, 0] + 0.3 * w)
    y1, y2 = int(lm[33, 1] + 0.1 * w), int(lm[8, 1] - 0.1 * w)
    t, _ = cv2.threshold(
        np.ascontiguousarray(cr[y1:y2, x1:x2]), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU
    )
    return float(t)


def doubled(rgb: npt.NDArray[np.uint8], lm: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """``rgb`` with a copy of its own lips pasted half a mouth width below them: the
    "second pair of lips" a mouth from another head pose leaves."""
    out = rgb.copy()
    w = float(np.linalg.norm(lm[54] - lm[48]))
    x1, y1 = (lm[48:60].min(axis=0) - 0.05 * w).astype(int)
    x2, y2 = (lm[48:60].max(axis=0) + 0.05 * w).astype(int)
    dy = int(0.5 * w)
    out[y1 + dy : y2 + dy, x1:x2] = rgb[y1:y2, x1:x2]
    return out
