"""Head pose in the ``retrieval`` engine's choice and its pose gate.

A source mouth is pasted only where its head pose is close to the frame's: a mouth from a
head turned or tilted otherwise is a 2D picture of other 3D lips, and no similarity puts
it right (the "second pair of lips" below the real ones). The mismatch is measured in
:attr:`RetrievalTuning.gate_sigma` units: yaw, pitch, roll and the log of how much the
crop is magnified (a mouth blown up from a smaller face is a blurred one). Where it is
small the source mouth is used in full, where it is large only the frame's own mouth
(warped and drawn as the viseme engine does), and the switch is eased over a few frames
(:func:`ease_shares`). The same mismatch, and a softer yaw/pitch preference, join the
Viterbi choice as per-frame costs (:func:`pose_costs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lipsync.engines.retrieval.geometry import measure, roll_iod
from lipsync.engines.retrieval.index import MouthIndex
from lipsync.engines.retrieval.tuning import RetrievalTuning
from lipsync.types import FaceObs

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Pose:
    """A frame's head pose as the gate compares it: yaw and pitch (see MouthShape), roll
    (eye line angle, radians) and interocular distance (pixels)."""

    yaw: float
    pitch: float
    roll: float
    iod: float


@dataclass(frozen=True)
class CropPoses:
    """Per candidate: roll (eye line angle), interocular distance in source pixels, and
    the crop's scale (crop pixels per source pixel)."""

    roll: F64
    iod: F64
    scale: F64


def crop_poses(index: MouthIndex) -> CropPoses:
    roll, iod = roll_iod(np.stack([c.landmarks for c in index.crops]))
    return CropPoses(roll, iod, np.array([c.scale for c in index.crops], np.float64))


def measure_poses(faces: Sequence[FaceObs], template: npt.NDArray[np.float64]) -> list[Pose]:
    """The head pose of each face, measured once for the choice and the gate."""
    stack = np.stack([f.landmarks for f in faces]).astype(np.float32)
    shape = measure(stack, template)
    roll, iod = roll_iod(stack)
    return [
        Pose(float(shape.yaw[k]), float(shape.pitch[k]), float(roll[k]), float(iod[k]))
        for k in range(len(faces))
    ]


def mismatch(
    index: MouthIndex, crops: CropPoses, positions: I64, pose: Pose, tuning: RetrievalTuning
) -> F32:
    """How far the head pose of candidates ``positions`` is from a frame's ``pose``, in
    gate units: yaw, pitch, roll and the crop's magnification (0 where the frame's pose
    can't be read)."""
    sigma = tuning.gate_sigma
    roll_c, iod_c, scale_c = (x[positions] for x in (crops.roll, crops.iod, crops.scale))
    frames = index.candidates[positions]
    d_roll = np.angle(np.exp(1j * (pose.roll - roll_c)))
    mag = np.log(np.maximum(pose.iod / np.maximum(iod_c, 1e-6) / scale_c, 1e-6))
    terms = (
        (index.shape.yaw[frames] - pose.yaw) / sigma[0],
        (index.shape.pitch[frames] - pose.pitch) / sigma[1],
        d_roll / sigma[2],
        np.maximum(mag, 0.0) / sigma[3],
    )
    d = np.sqrt(sum(np.asarray(t, np.float64) ** 2 for t in terms))
    return np.nan_to_num(d, nan=0.0).astype(np.float32)


def pose_costs(
    index: MouthIndex, crops: CropPoses, states: I64, pose: Pose, tuning: RetrievalTuning
) -> F32:
    """Extra choice cost of candidates ``states`` for a frame of head pose ``pose``: yaw
    and pitch as a soft preference, and steeply beyond the pose gate's first threshold."""
    fr = index.candidates[states]
    dy = (index.shape.yaw[fr] - pose.yaw) / tuning.pose_sigma[0]
    dp = (index.shape.pitch[fr] - pose.pitch) / tuning.pose_sigma[1]
    soft = np.nan_to_num(tuning.w_pose * (dy**2 + dp**2), nan=0.0)
    over = np.maximum(mismatch(index, crops, states, pose, tuning) - tuning.gate_range[0], 0.0)
    out: F32 = (soft + tuning.w_pose_gate * over**2).astype(np.float32)
    return out


def ease_shares(
    idx: list[int],
    mism: list[float],
    shares: dict[int, float],
    tuning: RetrievalTuning,
    starts: frozenset[int] | set[int] = frozenset(),
) -> list[float]:
    """The share of the source mouth per frame of a batch (output indices ``idx``, pose
    mismatches ``mism``): 1 where the pose matches, 0 where only the frame's own mouth can
    be used, eased in between (it falls ahead of a frame that needs the own mouth and rises
    at most 1/gate_ease a frame). ``shares`` holds the shares already given per output
    index and is updated."""
    lo, hi = tuning.gate_range
    raw = [float(np.clip((hi - d) / (hi - lo), 0.0, 1.0)) for d in mism]
    step = 1.0 / tuning.gate_ease
    # Falling ahead: no frame may be more than k steps above a frame k ahead of it.
    ahead = list(raw)
    for k in range(len(raw) - 2, -1, -1):
        if idx[k + 1] == idx[k] + 1 and idx[k + 1] not in starts:
            ahead[k] = min(ahead[k], ahead[k + 1] + step)
    out: list[float] = []
    for i, w in zip(idx, ahead, strict=True):
        prev = shares.get(i - 1)
        if prev is not None and i not in starts:
            w = min(w, prev + step)
        w = round(w, 4)
        out.append(w)
        shares[i] = w
    return out
