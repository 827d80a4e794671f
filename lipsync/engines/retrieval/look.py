"""The appearance of a candidate mouth, for the ``retrieval`` engine's index: a normalised
grey thumbnail of the lips in the template frame (to price cuts between two mouths), how
much teeth and dark interior show, the skin colour around, the sharpness of the lips, and
the opening read from the pixels (what a viewer sees; the landmarks miss a slightly parted
mouth)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.retrieval.geometry import RIGID, apply, compose, similarity
from lipsync.engines.retrieval.tuning import DEFAULT_TUNING, RetrievalTuning
from lipsync.face.geometry import face_axes
from lipsync.types import RGBImage

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Look:
    """Appearance of one candidate mouth."""

    thumb: F32  # normalised grey thumbnail of the lips in the template frame
    teeth: float  # share of the inner-lip area that is teeth (bright, unsaturated)
    dark: float  # share of the inner-lip area that is dark mouth interior
    opening: float  # lip gap read from the pixels down the mouth's middle, template units
    skin: F32  # mean RGB of the skin around the lips
    sharpness: float  # Laplacian energy inside the lips


def pixel_opening(crop: RGBImage, lm: F32, skin_rgb: F32) -> float:
    """How far apart the lips are down the middle of the mouth, read from the pixels: the
    longest run of rows between the upper and lower lip that are not lip-red or are dark
    (teeth, tongue edge, mouth interior), in interocular distances."""
    across, down, iod = face_axes(lm)
    width = float(np.linalg.norm(lm[54] - lm[48])) or 1.0
    top = (lm[50] + lm[51] + lm[52]) / 3
    bot = (lm[56] + lm[57] + lm[58]) / 3
    length = float(np.dot(bot - top, down))
    if length < 3:
        return 0.0
    start = top - down * 0.2 * length
    rows = max(8, int(round(1.4 * length)))
    cols = 7
    half = 0.12 * width
    step = 1.4 * length / rows
    # Strip pixels -> crop pixels: x along ``across``, y along ``down``.
    m = np.array(
        [
            [across[0] * (2 * half / cols), down[0] * step, start[0] - across[0] * half],
            [across[1] * (2 * half / cols), down[1] * step, start[1] - across[1] * half],
        ],
        np.float64,
    )
    strip = cv2.warpAffine(
        crop,
        m,
        (cols, rows),
        flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    lab = cv2.cvtColor(strip, cv2.COLOR_RGB2LAB).astype(np.float32).mean(axis=1)  # (rows, 3)
    skin = cv2.cvtColor(
        np.clip(skin_rgb, 0, 255).astype(np.uint8).reshape(1, 1, 3), cv2.COLOR_RGB2LAB
    ).astype(np.float32)[0, 0]
    red = lab[:, 1]
    lip_a = float(np.percentile(red, 90))
    is_lip = (
        red > skin[1] + 0.5 * (lip_a - skin[1]) if lip_a - skin[1] > 3 else np.zeros(rows, bool)
    )
    dark = lab[:, 0] < 0.6 * skin[0]
    lip_rows = np.flatnonzero(is_lip)
    if len(lip_rows) >= 2:
        inside = np.zeros(rows, bool)
        inside[lip_rows[0] : lip_rows[-1] + 1] = True
        gap_rows = inside & (~is_lip | dark)
    else:
        gap_rows = dark
    best = run = 0
    for g in gap_rows:
        run = run + 1 if g else 0
        best = max(best, run)
    return float(best * step / max(iod, 1.0))


def appearance(
    crop: RGBImage, lm_crop: F32, template: F64, tuning: RetrievalTuning = DEFAULT_TUNING
) -> Look:
    """The appearance descriptor of one candidate's crop (landmarks ``lm_crop`` in crop
    pixels)."""
    m = similarity(lm_crop[list(RIGID)], template)
    # Template frame -> thumbnail pixels: the mouth area, centred under the nose.
    c = apply(m, lm_crop[48:60]).mean(axis=0)
    tw, th = tuning.thumb
    span = 1.1  # template units across the thumbnail
    k = tw / span
    to_thumb = np.array([[k, 0, tw / 2 - k * c[0]], [0, k, th / 2 - k * c[1]]], np.float64)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    thumb = cv2.warpAffine(
        grey, compose(to_thumb, m), (tw, th), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    thumb = (thumb - thumb.mean()) / (float(thumb.std()) + 4.0)
    inner = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(lm_crop[60:68]).astype(np.int32)], 1)
    outer = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(outer, [np.round(lm_crop[48:60]).astype(np.int32)], 1)
    ring = cv2.dilate(outer, np.ones((9, 9), np.uint8), iterations=2) - cv2.dilate(
        outer, np.ones((5, 5), np.uint8)
    )
    skin = crop[ring > 0].astype(np.float32)
    skin_col = skin.mean(axis=0) if len(skin) else crop.reshape(-1, 3).mean(axis=0)
    skin_l = float(skin_col @ np.array([0.299, 0.587, 0.114], np.float32)) or 1.0
    px = crop[inner > 0].astype(np.float32)
    teeth = dark = 0.0
    if len(px):
        lum = px @ np.array([0.299, 0.587, 0.114], np.float32)
        sat = px.max(axis=1) - px.min(axis=1)
        teeth = float(np.mean((lum > 0.8 * skin_l) & (sat < 0.35 * lum + 10)))
        dark = float(np.mean(lum < 0.45 * skin_l))
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    sharp = float(np.mean(lap[outer > 0] ** 2)) if outer.any() else 0.0
    # Opening in template units: the pixel reading is in interocular distances already.
    opening = pixel_opening(crop, lm_crop, skin_col.astype(np.float32))
    return Look(
        thumb.reshape(-1).astype(np.float32),
        teeth,
        dark,
        opening,
        skin_col.astype(np.float32),
        sharp,
    )
