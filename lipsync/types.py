"""Small value types shared by the pipeline stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

RGBImage = npt.NDArray[np.uint8]  # (H, W, 3) RGB
FloatArray = npt.NDArray[np.float32]

ProgressCallback = Callable[[str, float], None]
"""Called as ``progress(stage, fraction)`` with fraction in 0..1 of the whole job."""

CancelCheck = Callable[[], bool]
"""Returns True when the job should stop; polled between batches."""


@dataclass(frozen=True)
class FaceObs:
    """The chosen face in one frame, in that frame's pixel coordinates."""

    box: tuple[int, int, int, int]  # x1, y1, x2, y2: padded crop box (Wav2Lip convention)
    landmarks: FloatArray  # (68, 2) iBUG 68-point layout, smoothed over time
    person: int = 0  # whose face it is (the analysis groups the shots' faces into people)
    shot: int = 0  # the shot of the source frame it is in


@dataclass
class Patch:
    """A generated image region to be pasted back into a frame at ``(x1, y1)``."""

    x1: int
    y1: int
    image: RGBImage  # (h, w, 3)
    mask: FloatArray | None = None  # (h, w) 0..1; None: the compositor's lower-face mask
    upscale: float = 1.0  # how much the generator's output was enlarged to fill the patch

    @property
    def x2(self) -> int:
        return self.x1 + int(self.image.shape[1])

    @property
    def y2(self) -> int:
        return self.y1 + int(self.image.shape[0])


@dataclass(frozen=True)
class EngineReport:
    """What an engine says about its last job: which way it drew the mouths and why (engines
    with one way report their own name), and facts of its own (JSON-ready)."""

    path: str
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason, **self.details}


@dataclass
class Result:
    """What a finished run reports (the CLI summary and the service's job result)."""

    output: Path
    width: int
    height: int
    fps: float
    frames: int
    face_frames: int
    no_face_frames: int
    no_face_frame_indices: list[int]
    duration_s: float
    engine: str
    enhancer: str
    sync_mode: str
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)
    engine_info: dict[str, Any] = field(default_factory=dict)  # the report as JSON + counts
    # The source's shots ({"start", "end"}: decode-order frames, end exclusive), the face
    # chosen in each (how, among how many, whose), the people (id, frames, shots, how their
    # mouths were drawn), and the output frames left as the input has them because their
    # face could not be trusted ({"count", "reasons": {reason: count}, "frames": [...]}).
    shots: list[dict[str, int]] = field(default_factory=list)
    shot_faces: list[dict[str, Any]] = field(default_factory=list)
    people: list[dict[str, Any]] = field(default_factory=list)
    frames_kept_original: dict[str, Any] = field(default_factory=dict)
    occluded_frames: int = 0  # output frames whose new mouth was cut around an occluder
    engine_report: EngineReport | None = None

    @property
    def realtime_factor(self) -> float:
        """Processing seconds per second of output video (lower is faster)."""
        return self.wall_s / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("engine_report", None)  # in engine_info, as JSON
        data["output"] = str(self.output)
        data["realtime_factor"] = round(self.realtime_factor, 4)
        return data
