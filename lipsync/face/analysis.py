"""The face analysis pass: one streaming decode of the source that finds the shots, follows
the chosen face of each shot (never across a cut), tells people apart, and marks the frames
whose landmarks can't be trusted.

Per shot, the face is chosen by the options: a fixed box, the n-th face from the left, the
face at a point, or ``auto``: when the video has its own speech and the shot shows several
faces, the face whose mouth moves with that speech (active speaker); else the largest.
Each shot's face is embedded on a few frames (:mod:`lipsync.face.identity`) and the shots'
faces are grouped into people, so a mouth is only ever taken from the same person.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.face.identity import EMBED_AT, SAME_PERSON, embed, group_people
from lipsync.face.landmarks import Landmarker
from lipsync.face.shots import Shot, ShotDetector, shot_ids, shots_from_cuts
from lipsync.face.tracker import BoxDetector, FaceChoice, FaceTracker
from lipsync.media.decode import DecodedFrame, i420_crop_rgb
from lipsync.occlusion import (
    OcclusionModel,
    OcclusionSampler,
    lips_hidden_in_thumb,
    mouth_thumb,
)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
NAN68 = np.full((68, 2), np.nan, np.float32)
MAX_CANDIDATES = 4  # faces followed at once in a shot when choosing the speaker
FIT_ERROR_MAX = 0.12  # a landmark fit that moves more than this on a second try: not trusted
UNSURE = 0.12  # embedding distances this close to the threshold get a second look
# The face moving more than this many face widths in one frame, or its width changing by
# more than this share (log ratio): faster than a filmed head moves (real clips: up to 0.08
# and 0.14), so the landmarks there are a fit's glitch or a whip pan's blur; not trusted,
# nor the frame either side of it (the smoothing spreads a glitch to its neighbours).
JUMP_MAX = 0.2
SCALE_JUMP_MAX = 0.2
EDGE_MARGIN = 0.05  # mouth widths around the lips that must lie inside the frame
SOURCE_HIDDEN = 0.15  # a frame whose lip band is hidden more than this lends no mouth


@dataclass(frozen=True)
class FaceSetup:
    """How faces are chosen: ``mode`` "auto" (speaker, else largest), "largest", "index"
    or "point" (see :class:`~lipsync.face.tracker.FaceChoice`), or "box" (fixed)."""

    mode: str = "auto"
    index: int | None = None
    point: tuple[int, int] | None = None
    fixed_box: tuple[int, int, int, int] | None = None  # x1, y1, x2, y2

    def choice(self) -> FaceChoice:
        return FaceChoice(self.index, self.point)


@dataclass
class ShotFace:
    """The face chosen in one shot, how, and whose it is."""

    shot: int
    chosen_by: str  # speaker | largest | index | point | box | none
    faces_seen: int = 0
    speaker_scores: list[float] = field(default_factory=list)
    person: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "shot": self.shot,
            "chosen_by": self.chosen_by,
            "faces_seen": self.faces_seen,
            "person": self.person,
        }
        if self.speaker_scores:
            out["speaker_scores"] = [round(s, 3) for s in self.speaker_scores]
        return out


@dataclass
class FaceAnalysis:
    """Per source frame: time, landmarks of the chosen face (NaN rows: none), shot, person
    (-1: no face) and whether its landmarks can be trusted (with the reason where not)."""

    times: F64
    landmarks: F32
    shots: list[Shot]
    shot_of: npt.NDArray[np.int32]
    person_of: npt.NDArray[np.int32]
    shot_faces: list[ShotFace]
    untrusted: dict[int, str]
    detections: int = 0
    max_faces_seen: int = 0
    # Per shot, the colours of its face's own skin and lips (occlusion masks), and the
    # frames whose lips something covers (their mouths are not to be re-used).
    occlusion: dict[int, OcclusionModel] = field(default_factory=dict)
    covered: set[int] = field(default_factory=set)


@dataclass
class _Candidate:
    """One face followed through a shot: its landmarks (NaN where lost), mouth features for
    the speaker choice, and embeddings on a few frames."""

    tracker: FaceTracker
    landmarks: list[F32] = field(default_factory=list)
    fit_error: list[float] = field(default_factory=list)
    patches: list[F32] = field(default_factory=list)
    faces: list[tuple[npt.NDArray[np.uint8], F32]] = field(default_factory=list)
    colours: OcclusionSampler = field(default_factory=OcclusionSampler)
    thumbs: dict[int, tuple[F32, F32]] = field(default_factory=dict)  # shot frame -> thumb
    found: int = 0


class _ShotState:
    """The faces followed in the current shot."""

    def __init__(self, index: int, start: int) -> None:
        self.index = index
        self.start = start
        self.candidates: list[_Candidate] = []
        self.faces_seen = 0


def _mouth_patch(gray: npt.NDArray[np.uint8], lm: F32) -> F32:
    """A small grey patch of the mouth (16x8), for the speaker choice's mouth features."""
    x1, y1 = lm[48:68].min(axis=0)
    x2, y2 = lm[48:68].max(axis=0)
    w = max(4.0, float(x2 - x1))
    cx, cy = float(x1 + x2) / 2, float(y1 + y2) / 2
    h, wd = gray.shape
    a, b = int(max(0, cx - 0.6 * w)), int(min(wd, cx + 0.6 * w))
    c, d = int(max(0, cy - 0.35 * w)), int(min(h, cy + 0.35 * w))
    if b - a < 4 or d - c < 2:
        return np.full(128, np.nan, np.float32)
    patch = cv2.resize(gray[c:d, a:b], (16, 8), interpolation=cv2.INTER_AREA)
    return np.asarray(patch, np.float32).reshape(-1)


class FaceAnalyser:
    """Feed the source's frames in order (:meth:`feed`, I420), then :meth:`finish`."""

    def __init__(
        self,
        setup: FaceSetup,
        fps: float,
        detector: BoxDetector | None = None,
        own_audio16k: npt.NDArray[np.float32] | None = None,
        identities: bool = True,
        stage: Callable[[str], AbstractContextManager[Any]] | None = None,
        occlusion: bool = True,
        landmarker: Landmarker | None = None,
    ) -> None:
        """``stage(name)``: a context that times its block under ``name`` ("shots" for the
        cut detector, "detect" for the faces, "identity" for the embeddings)."""
        self.setup = setup
        self.fps = fps
        self.detector = detector
        self.own_audio = own_audio16k
        self.identities = identities
        self.stage = stage or (lambda _name: nullcontext())
        self.occlusion = occlusion
        self.landmarker = landmarker
        self._occlusion: dict[int, OcclusionModel] = {}
        self._covered: set[int] = set()
        self._rng = np.random.default_rng(0)
        self.shot_detector = ShotDetector(fps)
        self._held: deque[DecodedFrame] = deque()
        self._cuts: set[int] = set()
        self._times: list[float] = []
        self._lms: list[F32] = []
        self._fit_error: list[float] = []
        self._shot: _ShotState | None = None
        self._shot_faces: list[ShotFace] = []
        self._faces: dict[int, list[tuple[npt.NDArray[np.uint8], F32]]] = {}
        self.detections = 0
        self.max_faces_seen = 0
        self._size = (0, 0)  # the frame's width and height

    # -- streaming ---------------------------------------------------------------------
    def with_cuts(self, frames: Iterator[DecodedFrame]) -> Iterator[tuple[DecodedFrame, list[int]]]:
        """``frames``, each with the cuts the cut detector found with it. The detector runs
        on whichever thread iterates this (the decoder's, beside the faces on this one);
        give each pair to :meth:`feed`."""
        try:
            for frame in frames:
                yield frame, self._find_cuts(frame)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # the decoder's container, at once (a cancel, an error)

    def _find_cuts(self, frame: DecodedFrame) -> list[int]:
        with self.stage("shots"):
            return self.shot_detector.feed(frame.index, frame.image)

    def feed(self, frame: DecodedFrame, cuts: list[int] | None = None) -> None:
        """One decoded I420 frame (decode order) and the cuts found with it (None: found
        here). Frames are held until the cut detector has seen far enough past them."""
        self._size = (int(frame.image.shape[1]), int(frame.image.shape[0]) * 2 // 3)
        self._cuts.update(self._find_cuts(frame) if cuts is None else cuts)
        self._held.append(frame)
        with self.stage("detect"):
            while len(self._held) > self.shot_detector.lag:
                self._process(self._held.popleft())

    def finish(self) -> FaceAnalysis:
        with self.stage("detect"):
            while self._held:
                self._process(self._held.popleft())
            self._close_shot()
        n = len(self._times)
        shots = shots_from_cuts(sorted(self._cuts), n)
        shot_of = shot_ids(shots, n)
        landmarks = np.stack(self._lms) if self._lms else np.zeros((0, 68, 2), np.float32)
        with self.stage("identity"):
            people = self._people()
        person_of = np.full(n, -1, np.int32)
        unnamed = max(people.values(), default=-1) + 1
        for sf in self._shot_faces:
            sf.person = people.get(sf.shot)
            if sf.person is None and sf.chosen_by != "none":
                # A face seen on too few frames to be embedded: a person of its own.
                sf.person = unnamed if self.identities else 0
                unnamed += int(self.identities)
        for shot, face in zip(shots, self._shot_faces, strict=False):
            if face.person is not None:
                person_of[shot.start : shot.end] = face.person
        valid = np.isfinite(landmarks[:, 0, 0]) if n else np.zeros(0, bool)
        person_of[~valid] = -1
        untrusted = self._untrusted(landmarks, shot_of, valid)
        return FaceAnalysis(
            np.asarray(self._times, np.float64),
            landmarks,
            shots,
            shot_of,
            person_of,
            self._shot_faces,
            untrusted,
            self.detections,
            self.max_faces_seen,
            self._occlusion,
            self._covered,
        )

    def _people(self) -> dict[int, int]:
        """Person id per shot with a face: one person when only one shot has a face, else
        the shots' faces embedded and grouped. Each shot's face is embedded once; a second
        frame of it only where two shots' distance is close to the threshold."""
        if not self.identities:
            return {}
        shots = sorted(self._faces)
        if len(shots) <= 1:
            return dict.fromkeys(shots, 0)
        emb = {k: [embed(*self._faces[k][0])] for k in shots}
        unsure: set[int] = set()
        for a in shots:
            for b in shots:
                d = float(np.linalg.norm(emb[a][0] - emb[b][0]))
                if a < b and abs(d - SAME_PERSON) < UNSURE:
                    unsure.update((a, b))
        for k in sorted(unsure):
            emb[k].extend(embed(*face) for face in self._faces[k][1:])
        return group_people(emb)

    def _process(self, frame: DecodedFrame) -> None:
        if self._shot is None or frame.index in self._cuts:
            self._close_shot()
            self._shot = _ShotState(len(self._shot_faces), frame.index)
        shot = self._shot
        assert shot is not None
        h = frame.image.shape[0] * 2 // 3
        gray = frame.image[:h]
        if not shot.candidates:
            self._start_candidates(shot, gray)
        for cand in shot.candidates:
            self._follow(shot, cand, frame, gray)
        self._times.append(frame.time_s)

    def _new_tracker(self, choice: FaceChoice) -> FaceTracker:
        fixed = self.setup.fixed_box
        return FaceTracker(
            choice, fixed_box=fixed, detector=self.detector, landmarker=self.landmarker
        )

    def _start_candidates(self, shot: _ShotState, gray: npt.NDArray[np.uint8]) -> None:
        """The shot's first frame: one tracker for the chosen face, or one per face when
        the speaker is to be chosen among several."""
        setup = self.setup
        first = self._new_tracker(setup.choice())
        shot.candidates = [_Candidate(first)]
        if setup.mode != "auto" or setup.fixed_box is not None or self.own_audio is None:
            return
        boxes = first._detect(gray)
        first.detections -= 1
        self.detections += 1
        if len(boxes) < 2:
            return
        boxes = sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))[:MAX_CANDIDATES]
        shot.candidates = [
            _Candidate(
                self._new_tracker(
                    FaceChoice(point=(int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)))
                )
            )
            for b in boxes
        ]

    def _follow(
        self, shot: _ShotState, cand: _Candidate, frame: DecodedFrame, gray: npt.NDArray[np.uint8]
    ) -> None:
        lm = cand.tracker.update(gray)
        if lm is None:
            cand.landmarks.append(NAN68)
            cand.fit_error.append(0.0)
            if len(shot.candidates) > 1:
                cand.patches.append(np.full(128, np.nan, np.float32))
            return
        cand.landmarks.append(lm)
        cand.fit_error.append(cand.tracker.last_fit_error)
        if len(shot.candidates) > 1:
            cand.patches.append(_mouth_patch(gray, lm))
        cand.found += 1
        if self.identities and cand.found in EMBED_AT:
            cand.faces.append(self._face_crop(frame, lm))
        if self.occlusion:
            if (cand.found - 1) % cand.colours.every == 0:
                cand.colours.add(*self._face_crop(frame, lm), self._rng)
            # Every frame: only the mouth's box is converted to RGB (a hot path).
            cand.thumbs[len(cand.landmarks) - 1] = mouth_thumb(
                *self._face_crop(frame, lm, lm[48:60], 0.6)
            )

    @staticmethod
    def _face_crop(
        frame: DecodedFrame, lm: F32, around: F32 | None = None, margin: float = 0.35
    ) -> tuple[npt.NDArray[np.uint8], F32]:
        """The RGB of the box of ``around`` (default: the whole face), grown by ``margin``
        of its width, and the landmarks in that box's pixels."""
        h = frame.image.shape[0] * 2 // 3
        w = frame.image.shape[1]
        pts = lm if around is None else around
        x1, y1 = pts.min(axis=0)
        x2, y2 = pts.max(axis=0)
        m = margin * float(x2 - x1)
        bx1, by1 = max(0, int(x1 - m)) // 2 * 2, max(0, int(y1 - m)) // 2 * 2
        bx2 = min(w, int(x2 + m) + 2) // 2 * 2
        by2 = min(h, int(y2 + m) + 2) // 2 * 2
        rgb = i420_crop_rgb(frame.image, bx1, by1, bx2, by2)
        return rgb, (lm - np.array([bx1, by1], np.float32)).astype(np.float32)

    def _close_shot(self) -> None:
        """Choose the shot's face and append its frames to the whole video's."""
        shot = self._shot
        if shot is None:
            return
        self._shot = None
        for c in shot.candidates:
            self.detections += c.tracker.detections
            self.max_faces_seen = max(self.max_faces_seen, c.tracker.max_faces_seen)
        k, sf = self._choose(shot)
        cand = shot.candidates[k]
        self._lms.extend(cand.landmarks)
        self._fit_error.extend(cand.fit_error)
        if cand.faces:
            self._faces[sf.shot] = cand.faces
        if self.occlusion and (model := cand.colours.model()) is not None:
            self._occlusion[sf.shot] = model
            for k, (thumb, outer) in cand.thumbs.items():
                if lips_hidden_in_thumb(model, thumb, outer) > SOURCE_HIDDEN:
                    self._covered.add(shot.start + k)
        self._shot_faces.append(sf)

    def _choose(self, shot: _ShotState) -> tuple[int, ShotFace]:
        index = len(self._shot_faces)
        setup = self.setup
        seen = max((c.tracker.max_faces_seen for c in shot.candidates), default=0)
        seen = max(seen, len(shot.candidates))
        if not any(c.found for c in shot.candidates):
            return 0, ShotFace(index, "none", seen)
        if setup.fixed_box is not None:
            return 0, ShotFace(index, "box", seen)
        if len(shot.candidates) == 1:
            how = {"index": "index", "point": "point"}.get(setup.mode, "largest")
            return 0, ShotFace(index, how, seen)
        scores = [self._speaker_score(shot, c) for c in shot.candidates]
        best = int(np.argmax(scores))
        return best, ShotFace(index, "speaker", seen, scores)

    def _speaker_score(self, shot: _ShotState, cand: _Candidate) -> float:
        """How well the video's own speech predicts this face's mouth over the shot
        (held-out calibrated correlation where the shot is long enough, else the best
        aperture/speech-envelope correlation at lags -2..2); -1 for a face barely seen."""
        from lipsync.evaluate.sync import (
            MIN_CAL_FRAMES,
            calibrated_sync,
            frame_log_mel,
            lag_correlation,
            mouth_features,
            speech_envelope,
        )

        assert self.own_audio is not None
        n = len(cand.landmarks)
        if cand.found < max(8, n // 3):
            return -1.0
        lms = np.stack(cand.landmarks)
        width = np.linalg.norm(lms[:, 54] - lms[:, 48], axis=1)
        aperture = np.linalg.norm(lms[:, 66] - lms[:, 62], axis=1) / np.maximum(width, 1e-6)
        start = int(round(self._times[shot.start] * 16000))
        audio = self.own_audio[start : start + int((n + 1) / self.fps * 16000)]
        ap = aperture.astype(np.float64)
        if cand.found >= MIN_CAL_FRAMES + 10:
            px = np.stack(cand.patches)
            cal = calibrated_sync(
                mouth_features(ap, px), frame_log_mel(audio, self.fps, len(ap)), self.fps, 2
            )
            if cal is not None:
                return float(cal.peak_score)
        plain = lag_correlation(ap, speech_envelope(audio, self.fps, len(ap)), 2)
        return float(plain.best_r) if plain.best_r is not None else -1.0

    def _untrusted(
        self, lms: F32, shot_of: npt.NDArray[np.int32], valid: npt.NDArray[np.bool_]
    ) -> dict[int, str]:
        """Frames whose landmarks are not to be painted on: a fit that did not settle, a
        mouth cut by the frame's edge (its points there are guesses, and a warp there
        smears the border), or a face that jumped further in one frame than a head moves
        (not at a cut)."""
        out: dict[int, str] = {}
        w, h = self._size
        for i in np.flatnonzero(valid):
            if self._fit_error[i] > FIT_ERROR_MAX:
                out[int(i)] = "landmarks_unsettled"
                continue
            lips = lms[i, 48:60]
            m = EDGE_MARGIN * float(np.linalg.norm(lips[6] - lips[0]))
            lo, hi = lips.min(axis=0) - m, lips.max(axis=0) + m
            if w and (lo[0] < 0 or lo[1] < 0 or hi[0] > w or hi[1] > h):
                out[int(i)] = "mouth_at_edge"
        if len(lms) < 2:
            return out
        centre = lms[:, 27:48].mean(axis=1)
        size = np.maximum(np.linalg.norm(lms[:, 16] - lms[:, 0], axis=1), 1.0)
        both = valid[1:] & valid[:-1] & (shot_of[1:] == shot_of[:-1])
        move = np.linalg.norm(centre[1:] - centre[:-1], axis=1) / size[1:]
        grow = np.abs(np.log(size[1:] / size[:-1]))
        with np.errstate(invalid="ignore"):
            jumped = both & ((move > JUMP_MAX) | (grow > SCALE_JUMP_MAX))
        for i in np.flatnonzero(jumped):
            for j in (i, i + 1, i + 2):  # the frame, and one either side of it
                if j < len(lms) and valid[j] and shot_of[j] == shot_of[i + 1]:
                    out.setdefault(int(j), "face_jumped")
        return out
