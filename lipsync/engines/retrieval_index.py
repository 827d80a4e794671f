"""An index of the input video's mouths, for the ``retrieval`` engine.

Built per job from what the pipeline's analysis pass already knows (smoothed 68-point
landmarks of every frame) plus one streaming decode of the video:

* **Geometry of every frame**, normalised for head pose and scale: each frame's rigid
  points (eye corners, nose) are aligned by a similarity transform onto a template
  (interocular distance 1); in that frame we read the inner-lip gap (openness), the mouth
  width (spread vs rounding), the outer-lip height, and the head's yaw and pitch (which a
  similarity cannot remove).
* **A bounded candidate set**: the frames whose mouths may be re-used. Short videos keep
  every usable frame; long ones keep runs of consecutive frames chosen to cover the
  mouth-shape space (farthest-point sampling), so that natural motion can be replayed.
* **Crops of the candidates only**: the region around the mouth (nose base to chin, cheek
  to cheek) at source resolution (capped), raw or JPEG-coded within a memory budget,
  with a small appearance descriptor (a normalised grey thumbnail of the lips in the
  template frame, how much teeth and dark mouth interior show, the skin colour around).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.base import SourceVideo
from lipsync.face.geometry import face_axes
from lipsync.media.decode import i420_crop_rgb, iter_frames
from lipsync.types import RGBImage

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Points that move with the skull, not with the jaw or the lips (eye corners, nose).
RIGID = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))

#: Mouth mask: an ellipse around the outer lips; across half-axis in mouth widths, up and
#: down half-axes as shares of the distance to the nose base and to the chin.
MASK_ACROSS = 0.74
MASK_UP = 0.9
MASK_DOWN = 0.62
CROP_MARGIN = 1.2  # crops cover the mask ellipse enlarged by this factor

MAX_MOUTH_PX = 200.0  # crops of larger mouths are stored downscaled to this mouth width
RAW_BUDGET_BYTES = 160 * 1024 * 1024  # above this, crops are stored JPEG-coded
JPEG_QUALITY = 94
THUMB = (24, 16)  # appearance thumbnail (w, h) in the template frame


# -- geometry ------------------------------------------------------------------------------
def similarity(src: npt.ArrayLike, dst: npt.ArrayLike) -> F64:
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) src -> dst,
    as a 2x3 matrix (Umeyama)."""
    s = np.asarray(src, np.float64)
    d = np.asarray(dst, np.float64)
    ms, md = s.mean(axis=0), d.mean(axis=0)
    s0, d0 = s - ms, d - md
    cov = d0.T @ s0 / len(s)
    u, sv, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u @ vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    var = float((s0**2).sum()) / len(s) or 1.0
    scale = float(np.trace(np.diag(sv) @ sign)) / var
    out = np.empty((2, 3), np.float64)
    out[:, :2] = scale * rot
    out[:, 2] = md - scale * rot @ ms
    return out


def apply(m: F64, pts: npt.ArrayLike) -> F32:
    p = np.asarray(pts, np.float64)
    return (p @ m[:, :2].T + m[:, 2]).astype(np.float32)


def compose(a: F64, b: F64) -> F64:
    """The 2x3 affine map x -> a(b(x))."""
    out = np.empty((2, 3), np.float64)
    out[:, :2] = a[:, :2] @ b[:, :2]
    out[:, 2] = a[:, :2] @ b[:, 2] + a[:, 2]
    return out


def rigid_template(landmarks: F32, valid: npt.NDArray[np.bool_]) -> F64:
    """Mean rigid-point layout (generalised Procrustes, two rounds), interocular distance 1."""
    rigid = landmarks[valid][:, RIGID].astype(np.float64)
    tmpl = rigid[0]
    step = max(1, len(rigid) // 400)
    for _ in range(2):
        tmpl = np.mean([apply(similarity(r, tmpl), r) for r in rigid[::step]], axis=0)
    le, re = tmpl[RIGID.index(36)], tmpl[RIGID.index(45)]  # outer eye corners
    li, ri = tmpl[RIGID.index(39)], tmpl[RIGID.index(42)]
    iod = float(np.linalg.norm((re + ri) / 2 - (le + li) / 2)) or 1.0
    centre = tmpl.mean(axis=0)
    # Rotate so the eye line is horizontal.
    ang = np.arctan2(*(((re + ri) / 2 - (le + li) / 2)[::-1]))
    c, s = np.cos(-ang), np.sin(-ang)
    rot = np.array([[c, -s], [s, c]])
    out: F64 = ((tmpl - centre) @ rot.T / iod).astype(np.float64)
    return out


@dataclass(frozen=True)
class MouthShape:
    """Pose- and scale-normalised mouth geometry of a set of frames (template units)."""

    gap: F32  # inner-lip gap (openness)
    width: F32  # outer mouth-corner distance
    height: F32  # outer-lip height
    yaw: F32  # nose tip offset from the jaw's middle, share of the jaw width
    pitch: F32  # nose base below the eye line

    def stack(self) -> F32:
        return np.stack([self.gap, self.width, self.height, self.yaw, self.pitch], axis=1)


def to_template(lm: F32, template: F64) -> F32:
    return apply(similarity(lm[list(RIGID)], template), lm)


def measure(landmarks: F32, template: F64) -> MouthShape:
    """Mouth geometry of each (68, 2) landmark set; NaN rows give NaN."""
    n = len(landmarks)
    out = np.full((5, n), np.nan, np.float32)
    for i, lm in enumerate(landmarks):
        if not np.isfinite(lm).all():
            continue
        c = to_template(lm, template)
        gap = np.mean([c[b, 1] - c[a, 1] for a, b in INNER_PAIRS])
        jaw_w = float(c[16, 0] - c[0, 0]) or 1.0
        out[:, i] = (
            float(gap),
            float(np.linalg.norm(c[54] - c[48])),
            float(c[57, 1] - c[51, 1]),
            float(c[30, 0] - (c[0, 0] + c[16, 0]) / 2) / jaw_w,
            float(c[33, 1] - c[36:48, 1].mean()),
        )
    return MouthShape(*out)


def mouth_ellipse(lm: F32) -> tuple[F32, F32, F32, float, float, float]:
    """The mouth mask's ellipse for landmarks ``lm``: centre, unit axes across and down,
    half-axes across, up and down (pixels)."""
    across, down, _ = face_axes(lm)
    centre = lm[48:60].mean(axis=0).astype(np.float32)
    a = MASK_ACROSS * float(np.linalg.norm(lm[54] - lm[48]))
    up = MASK_UP * max(float(np.dot(centre - lm[33], down)), 1.0)
    dn = MASK_DOWN * max(float(np.dot(lm[8] - centre, down)), 1.0)
    return centre, across, down, max(a, 2.0), up, dn


def ellipse_box(lm: F32, grow: float = CROP_MARGIN) -> tuple[float, float, float, float]:
    centre, across, down, a, up, dn = mouth_ellipse(lm)
    corners = [
        centre + s * across * a * grow + down * d * grow for s in (-1.0, 1.0) for d in (-up, dn)
    ]
    pts = np.asarray(corners, np.float32)
    x1, y1 = pts.min(axis=0)
    x2, y2 = pts.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)


def nose_box(lm: F32) -> tuple[float, float, float, float]:
    """The base of the nose and the skin under and beside it: rigid with the skull and well
    textured (nostrils, the nasolabial folds' start), where a chosen mouth's crop is
    registered onto the target frame. Wider would take in cheeks that move with the mouth."""
    nw = float(np.linalg.norm(lm[35] - lm[31])) or 1.0
    x1 = float(min(lm[31, 0], lm[35, 0])) - 1.25 * nw
    x2 = float(max(lm[31, 0], lm[35, 0])) + 1.25 * nw
    y1 = float(lm[30, 1]) - 0.1 * nw
    y2 = float(lm[33, 1] + 0.5 * max(float(lm[51, 1] - lm[33, 1]), 1.0))
    return x1, y1, x2, y2


def crop_box(lm: F32) -> tuple[float, float, float, float]:
    """What a candidate's crop covers: the mask ellipse with a margin, and the nose base."""
    e = ellipse_box(lm)
    n = nose_box(lm)
    m = 0.15 * (n[2] - n[0])
    return min(e[0], n[0] - m), min(e[1], n[1] - m), max(e[2], n[2] + m), max(e[3], n[3] + m)


# -- crops -------------------------------------------------------------------------------
@dataclass
class Crop:
    frame: int  # source frame index
    x1: int  # crop origin in the source frame
    y1: int
    scale: float  # crop pixels per source pixel (<= 1)
    landmarks: F32  # (68, 2) in source-frame pixels
    data: Any  # RGB array, or JPEG bytes
    shape: tuple[int, int]

    def image(self) -> RGBImage:
        if isinstance(self.data, np.ndarray):
            return self.data
        bgr = cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_COLOR)
        assert bgr is not None
        return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)

    def to_source(self) -> F64:
        """2x3 map from crop pixels to source-frame pixels."""
        s = 1.0 / self.scale
        return np.array([[s, 0.0, self.x1], [0.0, s, self.y1]], np.float64)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes) if isinstance(self.data, np.ndarray) else len(self.data)


@dataclass(frozen=True)
class Look:
    """Appearance of one candidate mouth."""

    thumb: F32  # normalised grey thumbnail of the lips in the template frame
    teeth: float  # share of the inner-lip area that is teeth (bright, unsaturated)
    dark: float  # share of the inner-lip area that is dark mouth interior
    opening: float  # lip gap read from the pixels down the mouth's middle, template units
    skin: F32  # mean RGB of the skin around the lips
    sharpness: float  # Laplacian energy inside the lips


def _pixel_opening(crop: RGBImage, lm: F32, skin_rgb: F32) -> float:
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


def _appearance(crop: RGBImage, lm_crop: F32, template: F64) -> Look:
    m = similarity(lm_crop[list(RIGID)], template)
    # Template frame -> thumbnail pixels: the mouth area, centred under the nose.
    c = apply(m, lm_crop[48:60]).mean(axis=0)
    tw, th = THUMB
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
    opening = _pixel_opening(crop, lm_crop, skin_col.astype(np.float32))
    return Look(
        thumb.reshape(-1).astype(np.float32),
        teeth,
        dark,
        opening,
        skin_col.astype(np.float32),
        sharp,
    )


@dataclass
class MouthIndex:
    template: F64
    shape: MouthShape  # every source frame
    valid: npt.NDArray[np.bool_]  # every source frame: a usable face
    candidates: npt.NDArray[np.int64]  # source frames with a stored crop, ascending
    crops: list[Crop]  # same order as candidates
    thumbs: F32  # (K, THUMB w*h)
    teeth: F32  # (K,)
    dark: F32  # (K,)
    opening: F32  # (K,) lip gap read from the pixels
    skin: F32  # (K, 3)
    sharpness: F32  # (K,) Laplacian energy of the lips, relative to the median
    stats: dict[str, Any] = field(default_factory=dict)

    def position(self, frame: int) -> int:
        """Position of source ``frame`` in :attr:`candidates`, or -1."""
        k = int(np.searchsorted(self.candidates, frame))
        return k if k < len(self.candidates) and int(self.candidates[k]) == frame else -1


def usable_frames(
    source: SourceVideo, shape: MouthShape, size: tuple[int, int]
) -> npt.NDArray[np.bool_]:
    """Frames whose mouth may be re-used: a face, the crop inside the picture, a pose near
    the clip's usual one, and no tracking glitch (a sudden jump of the lip points)."""
    lms = source.landmarks
    valid: npt.NDArray[np.bool_] = np.asarray(np.isfinite(lms.reshape(len(lms), -1)).all(axis=1))
    ok = valid.copy()
    w, h = size
    for i in np.flatnonzero(valid):
        x1, y1, x2, y2 = ellipse_box(lms[i], grow=1.0)
        nx1, ny1, nx2, _ = nose_box(lms[i])
        x1, y1, x2 = min(x1, nx1), min(y1, ny1), max(x2, nx2)
        mouth_w = float(np.linalg.norm(lms[i][54] - lms[i][48]))
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h or mouth_w < 12:
            ok[i] = False
    if ok.sum() > 8:
        yaw = shape.yaw[ok]
        med, mad = float(np.median(yaw)), float(np.median(np.abs(yaw - np.median(yaw))))
        ok &= ~(np.abs(shape.yaw - med) > max(0.25, 6 * mad))
        # Glitches: lip geometry jumping away from both neighbours.
        feat = np.stack([shape.gap, shape.width], axis=1)
        jump = np.full(len(lms), 0.0, np.float32)
        prev = np.abs(feat[1:-1] - feat[:-2]).sum(axis=1)
        nxt = np.abs(feat[1:-1] - feat[2:]).sum(axis=1)
        jump[1:-1] = np.nan_to_num(np.minimum(prev, nxt), nan=0.0)
        ref = float(np.median(jump[ok])) if ok.any() else 0.0
        ok &= ~(jump > max(0.08, 8 * ref))
    out: npt.NDArray[np.bool_] = np.asarray(ok & valid)
    return out


def choose_candidates(
    shape: MouthShape, ok: npt.NDArray[np.bool_], cap: int, run: int = 6
) -> npt.NDArray[np.int64]:
    """All usable frames when they fit in ``cap``; else runs of ``run`` consecutive usable
    frames by farthest-point sampling of their mean shape (openness and width)."""
    frames = np.flatnonzero(ok)
    if len(frames) <= cap:
        return frames.astype(np.int64)
    # Runs: consecutive usable frames cut into pieces of ``run``.
    runs: list[npt.NDArray[np.int64]] = []
    start = 0
    for k in range(1, len(frames) + 1):
        if k == len(frames) or frames[k] != frames[k - 1] + 1 or k - start == run:
            runs.append(frames[start:k])
            start = k
    feat = np.array(
        [[np.mean(shape.gap[r]), np.mean(shape.width[r]), np.mean(shape.yaw[r])] for r in runs],
        np.float64,
    )
    scale = feat.std(axis=0) + 1e-6
    feat = feat / scale
    feat[:, 2] *= 0.5  # pose matters less than mouth shape for coverage
    chosen = [int(np.argmin(feat[:, 0])), int(np.argmax(feat[:, 0]))]
    dist = np.minimum(
        np.linalg.norm(feat - feat[chosen[0]], axis=1),
        np.linalg.norm(feat - feat[chosen[1]], axis=1),
    )
    total = len(runs[chosen[0]]) + len(runs[chosen[1]])
    while total < cap and dist.max() > 0:
        k = int(np.argmax(dist))
        chosen.append(k)
        total += len(runs[k])
        dist = np.minimum(dist, np.linalg.norm(feat - feat[k], axis=1))
    return np.sort(np.concatenate([runs[k] for k in chosen])).astype(np.int64)


def build_index(
    source: SourceVideo,
    size: tuple[int, int],
    cap: int = 1500,
    budget_bytes: int = RAW_BUDGET_BYTES,
) -> MouthIndex:
    """Measure every frame, choose candidates, and crop them in one streaming decode pass.

    ``size`` is the frame size (width, height) after rotation.
    """
    t0 = time.perf_counter()
    lms = source.landmarks.astype(np.float32)
    valid: npt.NDArray[np.bool_] = np.asarray(np.isfinite(lms.reshape(len(lms), -1)).all(axis=1))
    template = rigid_template(lms, valid)
    shape = measure(lms, template)
    ok = usable_frames(source, shape, size)
    cand = choose_candidates(shape, ok, cap)
    # Crop boxes, scales and the storage form (raw if the total fits the budget).
    boxes: list[tuple[int, int, int, int, float]] = []
    total = 0
    w, h = size
    for f in cand:
        lm = lms[f]
        x1, y1, x2, y2 = crop_box(lm)
        bx1, by1 = max(0, int(np.floor(x1)) & ~1), max(0, int(np.floor(y1)) & ~1)
        bx2, by2 = (
            min(w & ~1, (int(np.ceil(x2)) + 1) & ~1),
            min(h & ~1, (int(np.ceil(y2)) + 1) & ~1),
        )
        mouth_w = float(np.linalg.norm(lm[54] - lm[48]))
        scale = min(1.0, MAX_MOUTH_PX / max(mouth_w, 1.0))
        boxes.append((bx1, by1, bx2, by2, scale))
        total += int((bx2 - bx1) * (by2 - by1) * 3 * scale * scale)
    use_jpeg = total > budget_bytes
    t_plan = time.perf_counter() - t0

    crops: list[Crop] = []
    looks: list[Look] = []
    want = {int(f): k for k, f in enumerate(cand)}
    last = int(cand[-1]) if len(cand) else -1
    t1 = time.perf_counter()
    if last >= 0:
        for frame in iter_frames(source.path, pixel_format="i420"):
            k = want.get(frame.index)
            if k is not None:
                bx1, by1, bx2, by2, scale = boxes[k]
                rgb = i420_crop_rgb(frame.image, bx1, by1, bx2, by2)
                lm_c = (lms[frame.index] - [bx1, by1]) * scale
                if scale < 1.0:
                    size_c = (
                        max(2, round(rgb.shape[1] * scale)),
                        max(2, round(rgb.shape[0] * scale)),
                    )
                    rgb = np.asarray(
                        cv2.resize(rgb, size_c, interpolation=cv2.INTER_AREA), np.uint8
                    )
                looks.append(_appearance(rgb, lm_c.astype(np.float32), template))
                data: Any = rgb
                if use_jpeg:
                    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                    data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[
                        1
                    ].tobytes()
                crops.append(
                    Crop(
                        int(frame.index),
                        bx1,
                        by1,
                        scale,
                        lms[frame.index].copy(),
                        data,
                        (rgb.shape[0], rgb.shape[1]),
                    )
                )
            if frame.index >= last:
                break
    got = np.array([c.frame for c in crops], np.int64)
    sharp_a = np.asarray([lk.sharpness for lk in looks], np.float32)
    med = float(np.median(sharp_a)) if len(sharp_a) else 1.0
    stats = {
        "frames": int(len(lms)),
        "face_frames": int(valid.sum()),
        "usable_frames": int(ok.sum()),
        "candidates": int(len(got)),
        "teeth_visible": int(sum(lk.teeth > 0.15 for lk in looks)),
        "crop_mb": round(sum(c.nbytes for c in crops) / 2**20, 1),
        "jpeg": bool(use_jpeg),
        "plan_s": round(t_plan, 3),
        "crop_pass_s": round(time.perf_counter() - t1, 3),
    }
    return MouthIndex(
        template=template,
        shape=shape,
        valid=valid,
        candidates=got,
        crops=crops,
        thumbs=np.asarray([lk.thumb for lk in looks], np.float32).reshape(len(crops), -1),
        teeth=np.asarray([lk.teeth for lk in looks], np.float32),
        dark=np.asarray([lk.dark for lk in looks], np.float32),
        opening=np.asarray([lk.opening for lk in looks], np.float32),
        skin=np.asarray([lk.skin for lk in looks], np.float32).reshape(len(crops), 3),
        sharpness=(sharp_a / max(med, 1e-6)).astype(np.float32),
        stats=stats,
    )
