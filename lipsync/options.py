"""Run options: one immutable value passed through the pipeline (no global config)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from lipsync.errors import InvalidOption

SyncMode = Literal["loop", "bounce", "cut_off", "silence", "remap"]
SYNC_MODES: tuple[str, ...] = get_args(SyncMode)
Device = Literal["auto", "cpu", "cuda"]
Detector = Literal["dlib", "s3fd"]
DETECTORS: tuple[str, ...] = get_args(Detector)
MIN_MAX_SIZE, MAX_MAX_SIZE = 64, 8192  # bounds of RunOptions.max_size (pixels)


def default_models_dir() -> Path:
    """``$LIPSYNC_MODELS_DIR`` or ``./models`` (resolved when called, never at import)."""
    return Path(os.environ.get("LIPSYNC_MODELS_DIR", "models"))


@dataclass(frozen=True)
class MediaLimits:
    """Bounds applied at probe time, before any heavy work."""

    max_width: int = 4096
    max_height: int = 4096
    max_duration_s: float = 600.0
    max_streams: int = 16
    max_file_bytes: int = 2 * 1024**3
    probe_timeout_s: float = 10.0


@dataclass(frozen=True)
class RunOptions:
    engine: str = "retrieval"  # falls back to the viseme warp for stills
    checkpoint: Path | None = None
    enhancer: str = "classical"
    sync_mode: SyncMode = "loop"
    fps: float = 25.0  # used for still images only; videos keep their own rate
    pads: tuple[int, int, int, int] = (0, 10, 0, 0)  # top, bottom, left, right (as Wav2Lip)
    box: tuple[int, int, int, int] | None = None  # fixed face box y1, y2, x1, x2 (Wav2Lip)
    face_index: int | None = None
    face_point: tuple[int, int] | None = None
    detector: Detector = "dlib"  # face boxes: dlib HOG, or S3FD with models/s3fd.pth
    device: Device = "auto"
    batch_size: int = 16
    blend: float = 1.0
    crf: int = 12
    preset: str = "veryfast"
    # Longer side of the output at most this many pixels (the frames are scaled before
    # anything works on them); None keeps the input's resolution.
    max_size: int | None = None
    models_dir: Path = field(default_factory=default_models_dir)
    limits: MediaLimits = field(default_factory=MediaLimits)

    def __post_init__(self) -> None:
        if self.sync_mode not in SYNC_MODES:
            raise InvalidOption(f"sync_mode must be one of {', '.join(SYNC_MODES)}")
        if not 1.0 <= self.fps <= 120.0:
            raise InvalidOption("fps must be between 1 and 120")
        if len(self.pads) != 4:
            raise InvalidOption("pads takes four integers: top bottom left right")
        if any(abs(p) > 512 for p in self.pads):
            raise InvalidOption("pads must be within -512..512 pixels")
        if self.box is not None and (
            len(self.box) != 4
            or self.box[0] >= self.box[1]
            or self.box[2] >= self.box[3]
            or min(self.box) < 0
        ):
            raise InvalidOption("box is Y1 Y2 X1 X2 in pixels with Y1 < Y2 and X1 < X2")
        if self.face_index is not None and self.face_point is not None:
            raise InvalidOption("give face_index or face_point, not both")
        if self.face_index is not None and self.face_index < 0:
            raise InvalidOption("face_index must be >= 0")
        if self.detector not in DETECTORS:
            raise InvalidOption(f"detector must be one of {', '.join(DETECTORS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InvalidOption("device must be auto, cpu or cuda")
        if not 1 <= self.batch_size <= 512:
            raise InvalidOption("batch_size must be between 1 and 512")
        if not 0.0 <= self.blend <= 1.0:
            raise InvalidOption("blend must be between 0 and 1")
        if not 0 <= self.crf <= 51:
            raise InvalidOption("crf must be between 0 and 51")
        if self.max_size is not None and not MIN_MAX_SIZE <= self.max_size <= MAX_MAX_SIZE:
            raise InvalidOption(
                f"max_size must be between {MIN_MAX_SIZE} and {MAX_MAX_SIZE} pixels"
            )
