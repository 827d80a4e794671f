"""Landmark geometry of the ``retrieval`` engine: similarity transforms, the rigid-point
template (interocular distance 1, "template units"), the pose- and scale-normalised mouth
shape of a frame, and the boxes the engine works in (the mouth mask's ellipse, the nose
base it registers on, a stored crop's extent)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lipsync.engines.retrieval.tuning import DEFAULT_TUNING, RetrievalTuning
from lipsync.face.geometry import face_axes

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Points that move with the skull, not with the jaw or the lips (eye corners, nose).
RIGID = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))


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


def mouth_ellipse(
    lm: F32, tuning: RetrievalTuning = DEFAULT_TUNING
) -> tuple[F32, F32, F32, float, float, float]:
    """The mouth mask's ellipse for landmarks ``lm``: centre, unit axes across and down,
    half-axes across, up and down (pixels; see :attr:`RetrievalTuning.mask_across`)."""
    across, down, _ = face_axes(lm)
    centre = lm[48:60].mean(axis=0).astype(np.float32)
    a = tuning.mask_across * float(np.linalg.norm(lm[54] - lm[48]))
    up = tuning.mask_up * max(float(np.dot(centre - lm[33], down)), 1.0)
    dn = tuning.mask_down * max(float(np.dot(lm[8] - centre, down)), 1.0)
    return centre, across, down, max(a, 2.0), up, dn


def ellipse_box(
    lm: F32, grow: float | None = None, tuning: RetrievalTuning = DEFAULT_TUNING
) -> tuple[float, float, float, float]:
    """The box around the mouth mask's ellipse grown by ``grow`` (default: the crop
    margin)."""
    if grow is None:
        grow = tuning.crop_margin
    centre, across, down, a, up, dn = mouth_ellipse(lm, tuning)
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


def crop_box(
    lm: F32, tuning: RetrievalTuning = DEFAULT_TUNING
) -> tuple[float, float, float, float]:
    """What a candidate's crop covers: the mask ellipse with a margin, and the nose base."""
    e = ellipse_box(lm, tuning=tuning)
    n = nose_box(lm)
    m = 0.15 * (n[2] - n[0])
    return min(e[0], n[0] - m), min(e[1], n[1] - m), max(e[2], n[2] + m), max(e[3], n[3] + m)


def roll_iod(landmarks: npt.ArrayLike) -> tuple[F64, F64]:
    """Roll (angle of the line between the eye centres, radians) and interocular distance
    (pixels) of each (68, 2) landmark set."""
    lm = np.asarray(landmarks, np.float64)
    eyes = lm[:, 42:48].mean(axis=1) - lm[:, 36:42].mean(axis=1)
    return np.arctan2(eyes[:, 1], eyes[:, 0]), np.hypot(eyes[:, 0], eyes[:, 1])
