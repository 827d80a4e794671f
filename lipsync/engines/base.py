"""The generator-engine interface.

An engine turns (frame, face, output-frame index) into a :class:`~lipsync.types.Patch` whose
mouth matches the speech at that output frame's time. ``prepare`` is called once per job with
the whole speech track (audio is small; frames are streamed), ``generate`` once per batch.
Engine objects may be cached per process and reused across jobs: ``prepare`` resets job state.
What an engine is given to load itself, :class:`EngineContext`, is declared with the engines'
declarations (:mod:`lipsync.enginespec`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.enginespec import EngineContext as EngineContext
from lipsync.types import EngineReport, FaceObs, Patch, RGBImage


@dataclass(frozen=True)
class SourceVideo:
    """What the analysis pass learned about the input video, for engines that use it."""

    path: Path
    fps: float
    frame_times: npt.NDArray[np.float64]  # (N,) seconds, decode order
    landmarks: npt.NDArray[np.float32]  # (N, 68, 2) smoothed; NaN rows where no face
    is_image: bool
    audio16k: npt.NDArray[np.float32] | None  # the video's own speech, mono 16 kHz, if any
    shots: npt.NDArray[np.int32] | None = None  # (N,) the shot of each frame (None: one)
    people: npt.NDArray[np.int32] | None = None  # (N,) whose face (-1: none; None: one person)
    #: (n_out,) the source frame each output frame shows (the timeline); None: not known
    output_source: npt.NDArray[np.int64] | None = None

    def shot_of(self) -> npt.NDArray[np.int32]:
        n = len(self.frame_times)
        return self.shots if self.shots is not None else np.zeros(n, np.int32)

    def person_of(self) -> npt.NDArray[np.int32]:
        if self.people is not None:
            return self.people
        valid = np.isfinite(self.landmarks.reshape(len(self.landmarks), -1)).all(axis=1)
        return np.where(valid, 0, -1).astype(np.int32)


class Engine(ABC):
    """Base class of every generator engine."""

    name: str = ""

    #: Engines that learn from the input video itself (e.g. index its mouth shapes) set this;
    #: the pipeline then calls :meth:`prepare_source` once per job before :meth:`prepare`.
    wants_source: bool = False

    def prepare_source(self, source: SourceVideo) -> None:  # noqa: B027 - optional hook
        """Learn from the input video (only called when ``wants_source`` is True)."""

    @abstractmethod
    def prepare(self, audio16k: npt.NDArray[np.float32], fps: float, n_frames: int) -> None:
        """Compute per-output-frame speech features for a job.

        ``audio16k`` is mono float32 at 16 kHz, already laid out on the output timeline
        (padded with silence or cut as the sync mode says); output frame ``i`` starts at
        ``i / fps`` seconds.
        """

    @abstractmethod
    def generate(
        self,
        frames: Sequence[RGBImage],
        faces: Sequence[FaceObs],
        indices: Sequence[int],
    ) -> list[Patch]:
        """One patch per (frame, face, output index) triple, in order."""

    def report(self) -> EngineReport:
        """What the last job did: the way it drew (by default the engine's name), why, and
        facts of its own (model file, device, ...)."""
        return EngineReport(self.name)

    def info(self) -> dict[str, Any]:
        """:meth:`report` as JSON."""
        return self.report().as_dict()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (GPU memory, sessions)."""


def batch_length(frames: Sequence[object], faces: Sequence[object], indices: Sequence[int]) -> int:
    """The length of one :meth:`Engine.generate` batch; ValueError when its three sequences
    disagree."""
    if not (len(frames) == len(faces) == len(indices)):
        raise ValueError("frames, faces and indices must have the same length")
    return len(frames)
