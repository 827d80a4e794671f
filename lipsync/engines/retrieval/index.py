"""An index of the input video's mouths, for the ``retrieval`` engine.

Built per job from what the pipeline's analysis pass already knows (smoothed 68-point
landmarks of every frame) plus one streaming decode of the video:

* **Geometry of every frame**, normalised for head pose and scale: each frame's rigid
  points (eye corners, nose) are aligned by a similarity transform onto a template
  (interocular distance 1); in that frame we read the inner-lip gap (openness), the mouth
  width (spread vs rounding), the outer-lip height, and the head's yaw and pitch (which a
  similarity cannot remove). See :mod:`lipsync.engines.retrieval.geometry`.
* **A bounded candidate set**: the frames whose mouths may be re-used. Short videos keep
  every usable frame; long ones keep runs of consecutive frames chosen to cover the
  mouth-shape space (farthest-point sampling), so that natural motion can be replayed.
* **Crops of the candidates only**: the region around the mouth (nose base to chin, cheek
  to cheek) at source resolution (capped), raw or JPEG-coded within a memory budget,
  with a small appearance descriptor (:mod:`lipsync.engines.retrieval.look`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.engines.base import SourceVideo
from lipsync.engines.retrieval.geometry import (
    MouthShape,
    crop_box,
    ellipse_box,
    measure,
    nose_box,
    rigid_template,
)
from lipsync.engines.retrieval.look import Look, appearance
from lipsync.engines.retrieval.tuning import DEFAULT_TUNING, RetrievalTuning
from lipsync.media.decode import i420_crop_rgb, iter_frames
from lipsync.media.prefetch import Prefetch
from lipsync.types import RGBImage

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Box = tuple[int, int, int, int, float]  # x1, y1, x2, y2 in the source frame, and the scale


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


@dataclass
class MouthIndex:
    template: F64
    shape: MouthShape  # every source frame
    valid: npt.NDArray[np.bool_]  # every source frame: a usable face
    candidates: npt.NDArray[np.int64]  # source frames with a stored crop, ascending
    crops: list[Crop]  # same order as candidates
    thumbs: F32  # (K, thumb w*h)
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


def frame_size(source: SourceVideo) -> tuple[int, int]:
    """Displayed (width, height) of the source video (rotation applied, as decoded)."""
    for frame in iter_frames(source.path, pixel_format="luma"):
        h, w = frame.image.shape[:2]
        return int(w), int(h)
    return 0, 0


def usable_frames(
    source: SourceVideo,
    shape: MouthShape,
    size: tuple[int, int],
    tuning: RetrievalTuning = DEFAULT_TUNING,
) -> npt.NDArray[np.bool_]:
    """Frames whose mouth may be re-used: a face, the crop inside the picture, a pose near
    the clip's usual one, and no tracking glitch (a sudden jump of the lip points)."""
    lms = source.landmarks
    valid: npt.NDArray[np.bool_] = np.asarray(np.isfinite(lms.reshape(len(lms), -1)).all(axis=1))
    ok = valid.copy()
    w, h = size
    for i in np.flatnonzero(valid):
        x1, y1, x2, y2 = ellipse_box(lms[i], grow=1.0, tuning=tuning)
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


def _crop_boxes(
    lms: F32, cand: npt.NDArray[np.int64], size: tuple[int, int], tuning: RetrievalTuning
) -> tuple[list[Box], int]:
    """Each candidate's crop box (even-aligned, inside the frame) and scale, and the bytes
    all crops take raw."""
    boxes: list[Box] = []
    total = 0
    w, h = size
    for f in cand:
        lm = lms[f]
        x1, y1, x2, y2 = crop_box(lm, tuning)
        bx1, by1 = max(0, int(np.floor(x1)) & ~1), max(0, int(np.floor(y1)) & ~1)
        bx2, by2 = (
            min(w & ~1, (int(np.ceil(x2)) + 1) & ~1),
            min(h & ~1, (int(np.ceil(y2)) + 1) & ~1),
        )
        mouth_w = float(np.linalg.norm(lm[54] - lm[48]))
        scale = min(1.0, tuning.max_mouth_px / max(mouth_w, 1.0))
        boxes.append((bx1, by1, bx2, by2, scale))
        total += int((bx2 - bx1) * (by2 - by1) * 3 * scale * scale)
    return boxes, total


def _crop(
    image: Any, lm: F32, box: Box, template: F64, use_jpeg: bool, tuning: RetrievalTuning
) -> tuple[Any, Look, tuple[int, int]]:
    """One candidate's crop of a decoded I420 frame: its stored data (RGB, or JPEG bytes),
    its appearance and its (height, width)."""
    bx1, by1, bx2, by2, scale = box
    rgb = i420_crop_rgb(image, bx1, by1, bx2, by2)
    lm_c = (lm - [bx1, by1]) * scale
    if scale < 1.0:
        size_c = (
            max(2, round(rgb.shape[1] * scale)),
            max(2, round(rgb.shape[0] * scale)),
        )
        rgb = np.asarray(cv2.resize(rgb, size_c, interpolation=cv2.INTER_AREA), np.uint8)
    look = appearance(rgb, lm_c.astype(np.float32), template, tuning)
    data: Any = rgb
    if use_jpeg:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, tuning.jpeg_quality])[
            1
        ].tobytes()
    return data, look, (rgb.shape[0], rgb.shape[1])


@dataclass
class _IndexPlan:
    """What one index needs before the decode: every frame measured, the candidates, their
    crop boxes and the storage form."""

    lms: F32
    valid: npt.NDArray[np.bool_]
    template: F64
    shape: MouthShape
    ok: npt.NDArray[np.bool_]
    cand: npt.NDArray[np.int64]
    boxes: list[Box]
    use_jpeg: bool
    plan_s: float


def _plan(
    source: SourceVideo,
    size: tuple[int, int],
    cap: int | None,
    budget_bytes: int | None,
    tuning: RetrievalTuning,
) -> _IndexPlan:
    t0 = time.perf_counter()
    lms = source.landmarks.astype(np.float32)
    valid: npt.NDArray[np.bool_] = np.asarray(np.isfinite(lms.reshape(len(lms), -1)).all(axis=1))
    template = rigid_template(lms, valid)
    shape = measure(lms, template)
    ok = usable_frames(source, shape, size, tuning)
    cap = tuning.candidate_cap if cap is None else cap
    cand = choose_candidates(shape, ok, cap, tuning.candidate_run)
    # Crop boxes, scales and the storage form (raw if the total fits the budget).
    boxes, total = _crop_boxes(lms, cand, size, tuning)
    use_jpeg = total > (tuning.raw_budget_bytes if budget_bytes is None else budget_bytes)
    return _IndexPlan(
        lms, valid, template, shape, ok, cand, boxes, use_jpeg, time.perf_counter() - t0
    )


def _crop_pass(
    path: Any, plans: list[_IndexPlan], tuning: RetrievalTuning
) -> list[tuple[list[Crop], list[Look]]]:
    """Crops and looks of every plan's candidates, in one streaming decode of the video."""
    out: list[tuple[list[Crop], list[Look]]] = [([], []) for _ in plans]
    want: dict[int, list[tuple[int, int]]] = {}
    for p, plan in enumerate(plans):
        for k, f in enumerate(plan.cand):
            want.setdefault(int(f), []).append((p, k))
    last = max(want, default=-1)
    if last < 0:
        return out
    with Prefetch(iter_frames(path, pixel_format="i420")) as frames:
        for frame in frames:
            for p, k in want.get(frame.index, ()):
                plan = plans[p]
                lm = plan.lms[frame.index]
                data, look, shape = _crop(
                    frame.image, lm, plan.boxes[k], plan.template, plan.use_jpeg, tuning
                )
                out[p][1].append(look)
                bx1, by1, _, _, scale = plan.boxes[k]
                out[p][0].append(Crop(int(frame.index), bx1, by1, scale, lm.copy(), data, shape))
            if frame.index >= last:
                break
    return out


def build_index(
    source: SourceVideo,
    size: tuple[int, int],
    cap: int | None = None,
    budget_bytes: int | None = None,
    tuning: RetrievalTuning = DEFAULT_TUNING,
) -> MouthIndex:
    """Measure every frame, choose candidates, and crop them in one streaming decode pass.

    ``size`` is the frame size (width, height) after rotation; ``cap`` and
    ``budget_bytes`` default to the tuning's candidate cap and raw-crop budget.
    """
    return build_indices([source], size, cap, budget_bytes, tuning)[0]


def build_indices(
    sources: list[SourceVideo],
    size: tuple[int, int],
    cap: int | None = None,
    budget_bytes: int | None = None,
    tuning: RetrievalTuning = DEFAULT_TUNING,
) -> list[MouthIndex]:
    """:func:`build_index` for several views of one video (e.g. each person's frames, the
    others' landmarks NaN), all cropped in the same single decode."""
    plans = [_plan(src, size, cap, budget_bytes, tuning) for src in sources]
    t1 = time.perf_counter()
    cropped = _crop_pass(sources[0].path, plans, tuning)
    crop_s = round(time.perf_counter() - t1, 3)
    return [
        _assemble(p, crops, looks, crop_s) for p, (crops, looks) in zip(plans, cropped, strict=True)
    ]


def _assemble(plan: _IndexPlan, crops: list[Crop], looks: list[Look], crop_s: float) -> MouthIndex:
    got = np.array([c.frame for c in crops], np.int64)
    sharp_a = np.asarray([lk.sharpness for lk in looks], np.float32)
    med = float(np.median(sharp_a)) if len(sharp_a) else 1.0
    stats = {
        "frames": int(len(plan.lms)),
        "face_frames": int(plan.valid.sum()),
        "usable_frames": int(plan.ok.sum()),
        "candidates": int(len(got)),
        "teeth_visible": int(sum(lk.teeth > 0.15 for lk in looks)),
        "crop_mb": round(sum(c.nbytes for c in crops) / 2**20, 1),
        "jpeg": bool(plan.use_jpeg),
        "plan_s": round(plan.plan_s, 3),
        "crop_pass_s": crop_s,
    }
    return MouthIndex(
        template=plan.template,
        shape=plan.shape,
        valid=plan.valid,
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
