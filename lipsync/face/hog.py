"""dlib's HOG face detector on its own, without the 68-point shape predictor.

:class:`lipsync.face.dlib_backend.DlibFaces` loads the detector and the 68-point model
(``shape_predictor_68_face_landmarks.dat``, not for commercial use) together; a tracker
whose landmarks come from another model (:mod:`lipsync.face.landmarks`) takes its boxes from
here, so the 68-point file is never opened. The detector's filters are compiled into dlib
(Boost Software License; trained on Labeled Faces in the Wild, see :mod:`lipsync.licences`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

BoxF = tuple[float, float, float, float]


@lru_cache(maxsize=1)
def _detector() -> Any:
    import dlib

    return dlib.get_frontal_face_detector()


class HogDetector:
    """Face boxes in dlib's convention (the :class:`~lipsync.face.tracker.BoxDetector`
    protocol) from dlib's HOG detector; one upsampled retry finds faces down to ~40 px."""

    max_upsample = 1

    def __init__(self) -> None:
        self._detector = _detector()

    def detect(self, gray: npt.NDArray[np.uint8], upsample: int = 0) -> list[BoxF]:
        rects = self._detector(gray, upsample)
        return [
            (float(r.left()), float(r.top()), float(r.right()), float(r.bottom())) for r in rects
        ]
