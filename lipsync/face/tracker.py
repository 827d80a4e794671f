"""Find and follow one face through a video: detect on a downscaled frame every few
frames, follow the landmarks in between, re-detect when the track looks lost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.face.dlib_backend import DlibFaces
from lipsync.face.geometry import detector_like_box, landmark_box
from lipsync.face.landmarks import Landmarker
from lipsync.types import RGBImage

BoxF = tuple[float, float, float, float]


class BoxDetector(Protocol):
    """Face boxes like dlib's detector gives (the shape predictor's convention) on a
    grayscale image; ``upsample`` up to ``max_upsample`` doubles the image that often."""

    max_upsample: int

    def detect(self, gray: npt.NDArray[np.uint8], upsample: int = 0) -> list[BoxF]: ...


@dataclass(frozen=True)
class FaceChoice:
    """Which face to follow when several are visible."""

    index: int | None = None  # n-th face from the left (0-based)
    point: tuple[int, int] | None = None  # the face containing / nearest this pixel

    def pick(self, boxes: list[BoxF]) -> int:
        if self.point is not None:
            px, py = self.point
            inside = [i for i, b in enumerate(boxes) if b[0] <= px <= b[2] and b[1] <= py <= b[3]]
            if inside:
                return min(inside, key=lambda i: _area(boxes[i]))
            return min(range(len(boxes)), key=lambda i: _dist2(boxes[i], px, py))
        if self.index is not None:
            order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
            return order[self.index] if self.index < len(order) else -1
        return max(range(len(boxes)), key=lambda i: _area(boxes[i]))


def _area(b: BoxF) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _dist2(b: BoxF, x: float, y: float) -> float:
    return ((b[0] + b[2]) / 2 - x) ** 2 + ((b[1] + b[3]) / 2 - y) ** 2


def iou(a: BoxF, b: BoxF) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Feed frames in order with :meth:`update`; get (68, 2) landmarks or None per frame."""

    def __init__(
        self,
        choice: FaceChoice | None = None,
        detect_every: int = 10,
        detect_pixels: int = 640 * 480,
        fixed_box: tuple[int, int, int, int] | None = None,
        detector: BoxDetector | None = None,
        landmarker: Landmarker | None = None,
    ) -> None:
        """``fixed_box`` (x1, y1, x2, y2): the face is there in every frame; no detection,
        landmarks are read inside it (Wav2Lip's ``--box``). ``detector``: where face boxes
        come from (default dlib's HOG detector); ``landmarker``: the 68-point model
        (default dlib's shape predictor; see :mod:`lipsync.face.landmarks`)."""
        if landmarker is None:
            dlib_faces = DlibFaces()
            self.faces: Landmarker = dlib_faces
            self.detector: BoxDetector = detector or dlib_faces
        else:
            from lipsync.face.hog import HogDetector

            self.faces = landmarker
            self.detector = detector or HogDetector()
        self.fixed_box: BoxF | None = (
            tuple(float(v) for v in fixed_box) if fixed_box else None  # type: ignore[assignment]
        )
        self.choice = choice or FaceChoice()
        self.detect_every = max(1, detect_every)
        self.detect_pixels = detect_pixels
        self._box: BoxF | None = None  # detector-like box of the tracked face
        self._velocity = (0.0, 0.0)  # the box's move over the last frame, pixels
        self._seen: BoxF | None = None  # the last frame's box, as its landmarks put it
        self._since_detect = 0
        self.detections = 0
        self.max_faces_seen = 0
        self.faces_in_last_detection = 0
        # How far a second landmark fit, started from the first fit's own box, moved the
        # mouth (share of the mouth's width): dlib gives no confidence, but a fit that has
        # not settled on a face (motion blur, a box that lags a fast move) moves again.
        self.last_fit_error = 0.0

    def reset(self) -> None:
        """Forget the followed face (a cut: the next frame starts a new shot)."""
        self._box = None
        self._seen = None
        self._velocity = (0.0, 0.0)
        self._since_detect = 0
        self.last_fit_error = 0.0

    def _detect(self, gray: npt.NDArray[np.uint8]) -> list[BoxF]:
        """Whole-frame detection on a downscaled copy (upsampling once if nothing is found)."""
        h, w = gray.shape
        scale = min(1.0, float(np.sqrt(self.detect_pixels / float(h * w))))
        small = (
            np.asarray(
                cv2.resize(
                    gray,
                    (max(1, int(w * scale)), max(1, int(h * scale))),
                    interpolation=cv2.INTER_AREA,
                ),
                np.uint8,
            )
            if scale < 1.0
            else gray
        )
        self.detections += 1
        for up in range(self.detector.max_upsample + 1):
            boxes = self.detector.detect(small, up)
            if boxes:
                return [
                    (x1 / scale, y1 / scale, x2 / scale, y2 / scale) for x1, y1, x2, y2 in boxes
                ]
        return []

    def _detect_near(self, gray: npt.NDArray[np.uint8], box: BoxF) -> list[BoxF]:
        """Re-detection in a window around the tracked face, scaled so the face is ~110 px."""
        h, w = gray.shape
        bw, bh = box[2] - box[0], box[3] - box[1]
        x1, y1 = int(max(0, box[0] - bw)), int(max(0, box[1] - bh))
        x2, y2 = int(min(w, box[2] + bw)), int(min(h, box[3] + bh))
        if x2 - x1 < 16 or y2 - y1 < 16:
            return []
        scale = 110.0 / max(bw, 1.0)
        crop = gray[y1:y2, x1:x2]
        size = (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        crop = np.asarray(cv2.resize(crop, size, interpolation=interp), np.uint8)
        self.detections += 1
        return [
            (x1 + a / scale, y1 + b / scale, x1 + c / scale, y1 + d / scale)
            for a, b, c, d in self.detector.detect(crop, 0)
        ]

    def update(self, image: RGBImage | npt.NDArray[np.uint8]) -> npt.NDArray[np.float32] | None:
        """Landmarks of the followed face in ``image`` (RGB or grayscale), or None."""
        gray: npt.NDArray[np.uint8] = (
            np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), np.uint8)
            if image.ndim == 3
            else image
        )
        if self.fixed_box is not None:
            return self.faces.landmarks(gray, self.fixed_box)
        due = self._box is None or self._since_detect >= self.detect_every
        if due:
            self._since_detect = 0
            chosen: BoxF | None = None
            if self._box is not None:
                near = self._detect_near(gray, self._box)
                if near:
                    best = max(near, key=lambda b: iou(b, self._box))  # type: ignore[arg-type]
                    if iou(best, self._box) > 0.3:
                        chosen = best
            if chosen is None:
                boxes = self._detect(gray)
                self.max_faces_seen = max(self.max_faces_seen, len(boxes))
                self.faces_in_last_detection = len(boxes)
                if boxes and self._box is not None:
                    best = max(boxes, key=lambda b: iou(b, self._box))  # type: ignore[arg-type]
                    if iou(best, self._box) > 0.3:
                        chosen = best
                if chosen is None and boxes:
                    k = self.choice.pick(boxes)
                    chosen = boxes[k] if k >= 0 else None
            else:
                self.max_faces_seen = max(self.max_faces_seen, 1)
            if chosen is None:
                self._box = None
                return None
            self._velocity = (0.0, 0.0)
            self._seen = None
            self._box = chosen
        assert self._box is not None
        self._since_detect += 1
        lm = self.faces.landmarks(gray, self._box)
        if not self._plausible(lm, self._box):
            self._box = None
            return None
        lm = self._settle(gray, lm)
        if not due:
            self._follow(detector_like_box(lm))
        return lm

    def _follow(self, box: BoxF) -> None:
        """The next frame's box: this frame's, moved on by the last frame's motion (a box
        that stays where the face was lags a fast move, and the fit then slides)."""
        last = self._seen
        if last is not None:
            self._velocity = (
                0.5 * (box[0] + box[2] - last[0] - last[2]),
                0.5 * (box[1] + box[3] - last[1] - last[3]),
            )
        self._seen = box
        vx, vy = self._velocity
        self._box = (box[0] + vx, box[1] + vy, box[2] + vx, box[3] + vy)

    def _settle(
        self, gray: npt.NDArray[np.uint8], lm: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Fit again from the first fit's own box; keep the second fit when the mouth moved
        (the first had not settled), and re-detect soon when it moved a lot."""
        again = self.faces.landmarks(gray, detector_like_box(lm))
        width = float(np.linalg.norm(lm[54] - lm[48])) or 1.0
        err = float(np.mean(np.linalg.norm(again[48:68] - lm[48:68], axis=1))) / width
        self.last_fit_error = err
        if err > 0.08:
            self._since_detect = max(self._since_detect, self.detect_every - 1)
        return again if err > 0.02 else lm

    @staticmethod
    def _plausible(lm: npt.NDArray[np.float32], box: BoxF) -> bool:
        x1, y1, x2, y2 = landmark_box(lm)
        bw = box[2] - box[0]
        if bw <= 0:
            return False
        ratio = (x2 - x1) / bw
        return 0.6 < ratio < 1.8


# Face speed (face widths per second) from which the smoothing gives way to the raw
# landmarks, and at which it is gone: a head at rest or talking moves well below the first.
FAST_FROM, FAST_AT = 1.2, 3.0


def smooth_landmarks(
    track: npt.NDArray[np.float32],
    fps: float = 25.0,
    shots: npt.NDArray[np.int32] | None = None,
    window: int = 7,
) -> npt.NDArray[np.float32]:
    """Temporal smoothing of a (N, 68, 2) track with NaN gaps, per run of face frames and
    never across a cut (``shots``: the shot of each frame).

    A Savitzky-Golay filter (quadratic, zero-phase) removes detector jitter; like a One
    Euro filter its smoothing adapts to speed: where the face moves fast (from
    :data:`FAST_FROM` face widths a second) the raw landmarks take over, all of them from
    :data:`FAST_AT`, so the landmarks follow a quick head move instead of averaging it.
    """
    from lipsync.smoothing import savgol

    out = track.copy()
    valid = ~np.isnan(track[:, 0, 0])
    if shots is not None and len(shots) == len(track):
        breaks = np.concatenate([[False], shots[1:] != shots[:-1]])
    else:
        breaks = np.zeros(len(track), bool)
    n = len(track)
    i = 0
    while i < n:
        if not valid[i]:
            i += 1
            continue
        j = i + 1
        while j < n and valid[j] and not breaks[j]:
            j += 1
        w = min(window, (j - i) if (j - i) % 2 == 1 else (j - i) - 1)
        if w >= 5:
            seg = track[i:j]
            smooth = savgol(seg, w, 2)
            raw = _speed_weight(smooth, fps)[:, None, None]
            out[i:j] = (smooth * (1.0 - raw) + seg * raw).astype(np.float32)
        i = j
    return out


def _speed_weight(seg: npt.NDArray[np.float64], fps: float) -> npt.NDArray[np.float64]:
    """Per frame, how far the raw landmarks take over (0..1), from the face's speed."""
    centre = seg[:, 27:48].mean(axis=1)
    size = np.maximum(np.linalg.norm(seg[:, 16] - seg[:, 0], axis=1), 1.0)
    step = np.linalg.norm(np.diff(centre, axis=0), axis=1) / size[1:] * fps
    speed = np.concatenate([step[:1], np.maximum(step[1:], step[:-1]), step[-1:]])
    out: npt.NDArray[np.float64] = np.clip((speed - FAST_FROM) / (FAST_AT - FAST_FROM), 0, 1)
    return out
