"""Mouth aperture per frame, measured without the engines' landmarks.

The engines place and shape the mouth with dlib's 68-point landmarks, so an evaluator that
read the mouth through the same model would grade its own homework: a mouth the 68-point
model *believes* is open would score as open whatever the pixels show. This module uses
other sources only:

* **Face box**: dlib's CNN face detector (``mmod_human_face_detector.dat``, shipped in the
  ``face-recognition-models`` wheel), run on sampled frames (every 2 s, after a cut, when
  the face is lost) on a small copy of the frame; in between, the box follows the points
  below (:mod:`.faces`).
* **Face frame**: dlib's *5-point* shape model (``shape_predictor_5_face_landmarks.dat``,
  same wheel): the two corners of each eye and the base of the nose. It has no mouth points
  at all; it only fixes where the mouth region is (below the nose, scaled by the distance
  ``d`` between the eye centres, rotated with the eye line) (:mod:`.faces`).
* **Aperture from pixels**: the mouth region is warped to a 64x64 patch (``d`` wide: 1.2,
  tall: 0.84, centred 0.42 ``d`` below the nose base). Down its central columns we read the
  CIELAB redness (a*) and lightness profiles. Lips are the reddest band; between the first
  and the last lip row, rows that are not lip-red (teeth, tongue edge) or are dark (oral
  cavity, shadow) are the inner-lip gap. The longest such run of rows, converted to the
  face's scale and divided by the face height (``1.95 d``, the nose-bridge-to-chin height
  in 5-point units), is the aperture. Skin and lip colour references are taken over the
  whole clip. On a grey-scale video (no colour difference between lips and skin) only dark
  rows count. A pale lip (often the upper one) can miss the redness threshold and leave
  the gap outside the lip band; then a dark run (the oral cavity) next to the band,
  bounded on its other side by a row that is at least faintly lip-red, spans the gap
  (:func:`_pale_lip_gap`). Before that rule the pale-lipped MEAD speaker read 0 on a third
  of his frames, open mouths included.

On the real clips in ``../shared/media`` this measure follows the 68-point inner-lip gap
with r = 0.90 (face2, KatieHill, LatentSync), 0.84 (MEAD) and 0.69 (face4, whose lips
barely part) (tests/evaluate/test_shared_clips.py), its slope is 0.7-1.0 and a closed
mouth reads about 0.02-0.07 (the lip junction line), so :data:`CLOSED_APERTURE` (0.08)
marks a closed mouth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.evaluate.cancel import CancelPoll
from lipsync.evaluate.faces import (
    DETECT_EVERY,
    BoxF,
    FaceFinder,
    FaceFrame,
    FloatArray,
    detect_every_for,
)
from lipsync.media.decode import iter_frames

__all__ = [
    "CLOSED_APERTURE",
    "DETECT_EVERY",
    "SHAPE_SIZE",
    "FaceFinder",
    "FaceFrame",
    "MouthTrack",
    "TrackBuilder",
    "measure_mouth",
    "mouth_patch",
]

ROI_SIZE = 64
ROI_CENTRE_D = 0.42  # mouth-region centre below the nose base, in eye distances
ROI_HALF_W_D = 0.60
ROI_HALF_H_D = 0.42
FACE_HEIGHT_D = 1.95  # nose bridge to chin, in eye distances
CLOSED_APERTURE = 0.08  # below this share of the face height the mouth counts as closed
SHAPE_SIZE = 24  # the mouth patch is also kept as SHAPE_SIZE x SHAPE_SIZE grey levels (sync)
_DARK = 0.6  # a row darker than this share of the skin lightness is mouth interior
_LIP_SPLIT = 0.5  # lip threshold between the skin and the lip redness
_PALE_SPLIT = 0.2  # a pale lip's threshold (only next to a dark run outside the lip band)
_TEETH_ROWS = 12  # rows: most teeth shown between the oral cavity and a lip


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
    pale_a = skin_a + _PALE_SPLIT * (lip_a - skin_a)
    rows_to_face = (2 * ROI_HALF_H_D / ROI_SIZE) / FACE_HEIGHT_D
    for i, p in enumerate(profiles):
        if p is None:
            continue
        dark = p.lum < _DARK * skin_l
        rows = _gap_rows(p.a, dark, thr_a, pale_a) if colour else _longest_run(dark)
        out[i] = rows * rows_to_face
    return out, colour


def _gap_rows(a: FloatArray, dark: npt.NDArray[np.bool_], thr_a: float, pale_a: float) -> int:
    """Rows of the inner-lip gap down the centre columns: between the first and the last
    lip-red row, the rows that are not lip-red or are dark; or, where one lip is too pale
    to pass ``thr_a``, :func:`_pale_lip_gap`."""
    lip = a > thr_a
    idx = np.flatnonzero(lip)
    if idx.size == 0:
        return _longest_run(dark)
    top, bottom = int(idx[0]), int(idx[-1])
    inner = np.zeros(ROI_SIZE, bool)
    inner[top : bottom + 1] = (~lip[top : bottom + 1]) | dark[top : bottom + 1]
    return max(_longest_run(inner), _pale_lip_gap(dark, a > pale_a, top, bottom))


def _dark_runs(dark: npt.NDArray[np.bool_]) -> Iterator[tuple[int, int]]:
    """(first, last) row of each run of dark rows that touches neither edge of the patch
    (runs at an edge are nostrils, a beard or the chin's shadow, not a mouth)."""
    edges = np.diff(np.concatenate(([0], dark.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for lo, stop in zip(starts, stops, strict=True):
        if lo > 0 and stop < dark.size:
            yield int(lo), int(stop) - 1


def _pale_lip_gap(
    dark: npt.NDArray[np.bool_], pale: npt.NDArray[np.bool_], top: int, bottom: int
) -> int:
    """The gap when only one lip passed the redness threshold (a pale lip, most often the
    upper one, left the gap outside the lip band ``top..bottom``): a dark run (the oral
    cavity) above the band, with a row at least faintly lip-red (``pale``) above it, makes
    a gap from that pale lip's lower edge to the band's top (teeth may show between the
    dark run and either lip). The same mirrored below the band."""
    best = 0
    reach = _TEETH_ROWS
    for lo, hi in _dark_runs(dark):
        if hi < top and top - hi <= reach:
            above = np.flatnonzero(pale[max(0, lo - reach) : lo])
            if above.size:
                best = max(best, top - (max(0, lo - reach) + int(above[-1]) + 1))
        elif lo > bottom and lo - bottom <= reach:
            below = np.flatnonzero(pale[hi + 1 : hi + 1 + reach])
            if below.size:
                best = max(best, hi + int(below[0]) + 1 - bottom - 1)
    return best


class TrackBuilder:
    """Gathers one video's :class:`MouthTrack` frame by frame (:meth:`add`), for
    :func:`measure_mouth` and the joint pass over an output and its reference."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.width = self.height = 0
        self._profiles: list[_Profiles | None] = []
        self._points: list[FloatArray | None] = []
        self._boxes: list[BoxF | None] = []
        self._small: list[FloatArray | None] = []
        self._diffs: list[float] = []
        self._prev: npt.NDArray[np.float32] | None = None
        self._first: npt.NDArray[np.float32] | None = None  # the first frame's, with a face

    def add(
        self, rgb: npt.NDArray[np.uint8], got: tuple[FloatArray, BoxF] | None
    ) -> npt.NDArray[np.uint8] | None:
        """Record one frame and its face (``got``: the 5 points and box, or None); returns
        its mouth patch (:func:`mouth_patch`), None without a face."""
        self.height, self.width = rgb.shape[:2]
        if got is None:
            self._profiles.append(None)
            self._points.append(None)
            self._boxes.append(None)
            self._small.append(None)
            self._prev = None
            return None
        pts, box = got
        patch = mouth_patch(rgb, FaceFrame.from_points(pts))
        self._profiles.append(_profiles(patch))
        self._points.append(pts)
        self._boxes.append(box)
        grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if self._prev is not None:
            self._diffs.append(float(np.mean(np.abs(grey - self._prev))))
        elif len(self._profiles) == 1:
            self._first = grey
        self._prev = grey
        shape = cv2.resize(grey, (SHAPE_SIZE, SHAPE_SIZE), interpolation=cv2.INTER_AREA)
        self._small.append(np.asarray(shape, np.float32).reshape(-1))
        return patch

    def extend(self, later: TrackBuilder) -> None:
        """Append the frames another builder gathered right after this one's (the two
        halves of a video measured in two processes)."""
        if self._prev is not None and later._first is not None:
            self._diffs.append(float(np.mean(np.abs(later._first - self._prev))))
        if not self._profiles:
            self._first = later._first
        self._profiles += later._profiles
        self._points += later._points
        self._boxes += later._boxes
        self._small += later._small
        self._diffs += later._diffs
        self._prev = later._prev
        if later._profiles:
            self.width, self.height = later.width, later.height

    def finish(self) -> MouthTrack:
        aperture, colour = _apertures(self._profiles)
        n = len(self._profiles)
        points = np.full((n, 5, 2), np.nan, np.float32)
        box_arr = np.full((n, 4), np.nan, np.float32)
        pixels = np.full((n, SHAPE_SIZE * SHAPE_SIZE), np.nan, np.float32)
        for i, (p, b, g) in enumerate(zip(self._points, self._boxes, self._small, strict=True)):
            if p is not None and b is not None and g is not None:
                points[i] = p
                box_arr[i] = b
                pixels[i] = g
        return MouthTrack(
            fps=self.fps,
            width=self.width,
            height=self.height,
            aperture=aperture,
            points=points,
            boxes=box_arr,
            pixels=pixels,
            flicker=float(np.mean(self._diffs)) if self._diffs else None,
            lip_colour=colour,
        )


def measure_mouth(
    video: Path,
    detect_every: int | None = None,
    frames: Iterator[tuple[int, npt.NDArray[np.uint8]]] | None = None,
    fps: float = 25.0,
    *,
    should_cancel: Callable[[], bool] | None = None,
) -> MouthTrack:
    """Decode ``video`` once and measure the face and mouth in every frame. ``detect_every``:
    frames between CNN face detections (default: :data:`.faces.REDETECT_S` seconds at
    ``fps``); ``should_cancel`` is polled as frames go (:class:`lipsync.errors.Canceled`)."""
    poll = CancelPoll(should_cancel)
    every = detect_every if detect_every is not None else detect_every_for(fps)
    finder = FaceFinder(every, poll=poll)
    builder = TrackBuilder(fps)
    source = frames if frames is not None else ((f.index, f.image) for f in iter_frames(video))
    for _, rgb in source:
        poll()
        builder.add(rgb, finder.update(rgb))
    return builder.finish()
