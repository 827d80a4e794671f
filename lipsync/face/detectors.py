"""Face box detectors by name (the names and their descriptions: :data:`lipsync.face.DETECTORS`)."""

from __future__ import annotations

from pathlib import Path

from lipsync.errors import InvalidOption
from lipsync.face import DETECTORS
from lipsync.face.tracker import BoxDetector


def create_detector(name: str, models_dir: Path, device: str) -> BoxDetector | None:
    """The box detector called ``name``; None for ``dlib`` (the tracker's own detector)."""
    if name not in DETECTORS:
        raise InvalidOption(f"detector must be one of {', '.join(DETECTORS)}", field="detector")
    if name == "s3fd":
        from lipsync.face.s3fd import S3fdDetector

        return S3fdDetector.from_models_dir(models_dir, device)
    return None
