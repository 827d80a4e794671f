"""Occluders painted over: did the output change pixels of the lower face that are not this
person's skin or lips in the input (a hand, a microphone, a pen in front of the mouth)?

Weight-free, per video: the input's own skin and lip colour is a 2-D Gaussian in the CIELAB
a*b* plane (lightness is left out, so shadows on the skin stay skin), fitted to samples of
the reference frames (:func:`skin_samples`: both cheeks beside the nose, the forehead and
the reddest quarter of the lip area), pooled over the first :data:`MODEL_FRAMES` frames
with a face and then over every frame seen so far (:class:`SkinModel`). A pixel whose
squared Mahalanobis distance exceeds :data:`NOT_SKIN_D2` is not skin or lip.

Per frame pair, both frames are warped to a face-aligned patch of the lower face (placed with
the reference's 5 points, 2.3 eye distances wide from 0.25 above the nose base to 1.75
below it, :data:`PATCH_W` x :data:`PATCH_H`, about 21 pixels per eye distance). Counted are
the pixels inside the face's outline (a hexagon down to just under the chin) that changed by
more than :data:`CHANGE_NOISE` grey levels (a re-encode stays under it at this scale) and
are not skin or lip in the input; non-skin areas wholly inside the mouth (the open mouth's
inside, teeth, which every lip-sync edit repaints) are not counted. The measure of a frame
is the counted share of the outline's pixels; above :data:`OCCLUDED_SHARE` the frame is
flagged. A hand has skin colour, so it is not told from the face: this catches occluders
of another colour. A beard or moustache is not skin either, so an edit that moves it counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.evaluate.faces import FaceFrame

PATCH_W, PATCH_H = 48, 42
X_D = (-1.15, 1.15)  # the patch, in eye distances from the nose base (across, down)
Y_D = (-0.25, 1.75)
# The face's outline in the patch, (across, down) in eye distances.
OUTLINE_D = ((-1.0, -0.2), (1.0, -0.2), (1.0, 0.8), (0.55, 1.4), (-0.55, 1.4), (-1.0, 0.8))
MOUTH_X_D = (-0.6, 0.6)  # a non-skin area wholly inside this box is the mouth's inside
MOUTH_Y_D = (0.15, 1.05)
CHEEK_X_D = (0.55, 0.95)  # either side
CHEEK_Y_D = (0.0, 0.4)
FOREHEAD_X_D = (-0.5, 0.5)
FOREHEAD_Y_D = (-1.55, -1.2)
CHANGE_NOISE = 12.0  # grey levels
NOT_SKIN_D2 = 18.0  # squared Mahalanobis distance in a*b*
COV_FLOOR = 4.0  # added to the covariance's diagonal (a*b* units squared)
OCCLUDED_SHARE = 0.02  # share of the outline's pixels
MODEL_FRAMES = 25
_LIP_QUANTILE = 75


def _warp(
    rgb: npt.NDArray[np.uint8],
    face: FaceFrame,
    x_d: tuple[float, float],
    y_d: tuple[float, float],
    size: tuple[int, int],
) -> npt.NDArray[np.uint8]:
    """The face-aligned rectangle ``x_d`` x ``y_d`` (eye distances from the nose base) of
    ``rgb``, warped to ``size`` (w, h)."""
    cx, cy = (x_d[0] + x_d[1]) / 2, (y_d[0] + y_d[1]) / 2
    centre = face.nose + face.across * cx * face.d
    hw, hh = (x_d[1] - x_d[0]) / 2 * face.d, (y_d[1] - y_d[0]) / 2 * face.d
    c = centre + face.down * cy * face.d
    src = np.array(
        [
            c - face.across * hw - face.down * hh,
            c + face.across * hw - face.down * hh,
            c - face.across * hw + face.down * hh,
        ],
        np.float32,
    )
    w, h = size
    m = cv2.getAffineTransform(src, np.array([[0, 0], [w, 0], [0, h]], np.float32))
    return np.asarray(
        cv2.warpAffine(rgb, m, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE),
        np.uint8,
    )


def lower_face_patch(rgb: npt.NDArray[np.uint8], face: FaceFrame) -> npt.NDArray[np.uint8]:
    """The face-aligned lower-face patch (:data:`PATCH_W` x :data:`PATCH_H`) of ``rgb``."""
    return _warp(rgb, face, X_D, Y_D, (PATCH_W, PATCH_H))


def _ab(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """CIELAB (L, a*, b*) of an RGB image, float."""
    return np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB), np.float32)


def _to_patch(x_d: tuple[float, float], y_d: tuple[float, float]) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, x1, y0, y1) in the lower-face patch of a face-aligned rectangle."""
    sx, sy = PATCH_W / (X_D[1] - X_D[0]), PATCH_H / (Y_D[1] - Y_D[0])
    return (
        int(round((x_d[0] - X_D[0]) * sx)),
        int(round((x_d[1] - X_D[0]) * sx)),
        int(round((y_d[0] - Y_D[0]) * sy)),
        int(round((y_d[1] - Y_D[0]) * sy)),
    )


def _outline_mask() -> npt.NDArray[np.bool_]:
    sx, sy = PATCH_W / (X_D[1] - X_D[0]), PATCH_H / (Y_D[1] - Y_D[0])
    poly = np.array([[(x - X_D[0]) * sx, (y - Y_D[0]) * sy] for x, y in OUTLINE_D])
    mask = np.zeros((PATCH_H, PATCH_W), np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


OUTLINE = _outline_mask()
_MX0, _MX1, _MY0, _MY1 = _to_patch(MOUTH_X_D, MOUTH_Y_D)


def skin_samples(
    rgb: npt.NDArray[np.uint8],
    face: FaceFrame,
    patch: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.float32]:
    """(n, 2) a*b* samples of this person's skin and lips in one frame: both cheeks, the
    forehead and the reddest quarter of the lip area; ``patch``: this frame's
    :func:`lower_face_patch` when the caller has it."""
    lab = _ab(patch if patch is not None else lower_face_patch(rgb, face))
    parts = []
    for x_d in (CHEEK_X_D, (-CHEEK_X_D[1], -CHEEK_X_D[0])):
        x0, x1, y0, y1 = _to_patch(x_d, CHEEK_Y_D)
        parts.append(lab[y0:y1, x0:x1, 1:].reshape(-1, 2))
    lips = lab[_MY0:_MY1, _MX0:_MX1].reshape(-1, 3)
    parts.append(lips[lips[:, 1] >= np.percentile(lips[:, 1], _LIP_QUANTILE), 1:])
    forehead = _ab(_warp(rgb, face, FOREHEAD_X_D, FOREHEAD_Y_D, (16, 6)))
    parts.append(forehead[..., 1:].reshape(-1, 2))
    return np.concatenate(parts).astype(np.float32)


@dataclass
class SkinModel:
    """A Gaussian of this person's skin and lip colour in a*b*, from pooled samples."""

    count: int = 0
    total: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(2))
    outer: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((2, 2)))

    def add(self, samples: npt.NDArray[np.float32]) -> None:
        s = samples.astype(np.float64)
        self.count += s.shape[0]
        self.total += s.sum(axis=0)
        self.outer += s.T @ s

    def not_skin(self, lab: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        """Which pixels of a CIELAB image are not skin or lip by this model."""
        mean = self.total / max(self.count, 1)
        cov = self.outer / max(self.count, 1) - np.outer(mean, mean) + COV_FLOOR * np.eye(2)
        inv = np.linalg.inv(cov)
        d = lab[..., 1:].astype(np.float64) - mean
        d2 = np.einsum("...i,ij,...j->...", d, inv, d)
        return np.asarray(d2 > NOT_SKIN_D2)


def _outside_mouth(not_skin: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``not_skin`` less its areas that lie wholly inside the mouth box."""
    count, labels = cv2.connectedComponents(not_skin.astype(np.uint8), connectivity=8)
    if count <= 1:
        return not_skin
    inside = np.zeros((PATCH_H, PATCH_W), bool)
    inside[_MY0:_MY1, _MX0:_MX1] = True
    escapes = np.zeros(count, bool)
    escapes[np.unique(labels[not_skin & ~inside])] = True
    escapes[0] = False
    return np.asarray(escapes[labels])


def occluder_change(
    output_patch: npt.NDArray[np.uint8],
    reference_patch: npt.NDArray[np.uint8],
    model: SkinModel,
) -> float:
    """The share of the face outline's pixels that changed from ``reference_patch`` to
    ``output_patch`` (both :func:`lower_face_patch` at the reference's face) and are not
    skin or lip in the reference by ``model`` (see the module docstring)."""
    grey_out = cv2.cvtColor(output_patch, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey_ref = cv2.cvtColor(reference_patch, cv2.COLOR_RGB2GRAY).astype(np.float32)
    changed = np.abs(grey_out - grey_ref) > CHANGE_NOISE
    foreign = _outside_mouth(model.not_skin(_ab(reference_patch)) & OUTLINE)
    return float(np.sum(changed & foreign & OUTLINE) / np.sum(OUTLINE))


class OcclusionMeter:
    """Per-frame :func:`occluder_change` over a video pair, the skin model fitted as it goes
    (the first :data:`MODEL_FRAMES` face frames are held until it has their samples)."""

    def __init__(self) -> None:
        self.model = SkinModel()
        self.values: dict[int, float] = {}
        self._held: list[tuple[int, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]] = []
        self._faces = 0

    def add(
        self,
        index: int,
        output: npt.NDArray[np.uint8],
        reference: npt.NDArray[np.uint8],
        face: FaceFrame,
    ) -> None:
        """One frame pair (RGB, same size) and the reference's face frame."""
        ref_patch = lower_face_patch(reference, face)
        out_patch = lower_face_patch(output, face)
        self.model.add(skin_samples(reference, face, ref_patch))
        self._faces += 1
        if self._faces < MODEL_FRAMES:
            self._held.append((index, out_patch, ref_patch))
            return
        self._flush()
        self.values[index] = occluder_change(out_patch, ref_patch, self.model)

    def _flush(self) -> None:
        for i, out_patch, ref_patch in self._held:
            self.values[i] = occluder_change(out_patch, ref_patch, self.model)
        self._held.clear()

    def finish(self) -> dict[int, float]:
        self._flush()
        return dict(sorted(self.values.items()))
