"""Shots: where an edited video cuts from one camera set-up (or one person) to another.

PySceneDetect's adaptive content detector runs on a small colour copy of every frame as the
analysis pass streams them. It compares each frame's change against the change of its
neighbours, so a fast camera move or head turn (large change on many frames in a row) is not
a cut, while a hard cut (one large change) is. It reports a cut ``window`` frames after it
happens; the analysis holds that many frames back so that nothing is tracked across a cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

THUMB_WIDTH = 192  # pixels: the detector's copy of each frame (its cost is per pixel)
MIN_SHOT_S = 0.32  # no shot shorter than this (a flash or a fast wipe is not two cuts)


@dataclass(frozen=True)
class Shot:
    """Frames ``start`` .. ``end - 1`` (decode order) of one shot."""

    start: int
    end: int

    def to_dict(self) -> dict[str, int]:
        return {"start": self.start, "end": self.end}


def thumbnail(i420: npt.NDArray[np.uint8], width: int = THUMB_WIDTH) -> npt.NDArray[np.uint8]:
    """A small BGR copy of an I420 frame (H*3/2, W), for the cut detector: about ``width``
    wide, each pixel the mean of a whole block of the frame's (an integer factor, which
    OpenCV averages about six times faster than a fractional one; the frame's last rows
    and columns short of a block are left out)."""
    h = i420.shape[0] * 2 // 3
    w = i420.shape[1]
    f = max(1, round(w / width))
    tw, th = (w // f) // 2 * 2, (h // f) // 2 * 2
    if tw < 2 or th < 2:  # a tiny frame: as it is
        return np.asarray(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), np.uint8)
    flat = i420.reshape(-1)
    cw, ch = w // 2, h // 2
    small = np.empty((th * 3 // 2, tw), np.uint8)
    small[:th] = cv2.resize(i420[: th * f, : tw * f], (tw, th), interpolation=cv2.INTER_AREA)
    sflat = small.reshape(-1)
    q = (tw // 2) * (th // 2)
    for k in range(2):  # the chroma planes: half the size on both sides, the same factor
        plane = flat[h * w + k * cw * ch : h * w + (k + 1) * cw * ch].reshape(ch, cw)
        sflat[th * tw + k * q : th * tw + (k + 1) * q] = cv2.resize(
            plane[: th // 2 * f, : tw // 2 * f], (tw // 2, th // 2), interpolation=cv2.INTER_AREA
        ).reshape(-1)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420), np.uint8)


class ShotDetector:
    """Feed frames in order (:meth:`feed`); get the first frame of each new shot as soon as
    the detector knows it, at most :attr:`lag` frames later."""

    def __init__(self, fps: float, adaptive_threshold: float = 3.0, min_content: float = 15.0):
        from scenedetect.detectors import AdaptiveDetector

        self.fps = float(fps)
        self.window = 2
        self._detector = AdaptiveDetector(
            adaptive_threshold=adaptive_threshold,
            min_scene_len=max(2, int(round(MIN_SHOT_S * self.fps))),
            window_width=self.window,
            min_content_val=min_content,
        )
        self.cuts: list[int] = []

    @property
    def lag(self) -> int:
        """How many frames after a cut the detector reports it."""
        return self.window

    def feed(self, index: int, i420: npt.NDArray[np.uint8]) -> list[int]:
        """Frame ``index`` (decode order, from 0, consecutive); the cuts found with it."""
        from scenedetect.common import FrameTimecode

        found = self._detector.process_frame(FrameTimecode(index, self.fps), thumbnail(i420))
        new = [int(tc.frame_num) for tc in found if int(tc.frame_num) > 0]
        self.cuts.extend(new)
        return new


def shots_from_cuts(cuts: list[int], n_frames: int) -> list[Shot]:
    """The shots of an ``n_frames`` video cut at ``cuts`` (first frames of new shots)."""
    edges = [0, *sorted(c for c in set(cuts) if 0 < c < n_frames), n_frames]
    return [Shot(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def shot_ids(shots: list[Shot], n_frames: int) -> npt.NDArray[np.int32]:
    """The shot number of every frame."""
    out = np.zeros(n_frames, np.int32)
    for k, s in enumerate(shots):
        out[s.start : s.end] = k
    return out
