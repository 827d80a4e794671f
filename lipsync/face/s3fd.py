"""Optional S3FD face detector (the one Wav2Lip's reference inference uses).

Weights: ``s3fd.pth`` in the models directory, face-alignment's ``s3fd-619a316812.pth``
(identical to Wav2Lip's ``face_detection/detection/sfd/s3fd.pth``): a plain state dict for
:class:`lipsync.face.s3fd_net.S3FD`, loaded strictly. Nothing heavy happens at import:
torch is imported when a detector is built, and the network is cached per process and
device.

Detection follows face-alignment's ``sfd_detector``: BGR input minus the Caffe means, a
softmax per head, one square prior per cell of each feature map (centre at
``stride / 2 + i * stride``, side ``4 * stride`` for strides 4..128), SSD box decoding with
variances 0.1 (centre) and 0.2 (size), then greedy NMS at IoU 0.3 and a score threshold of
0.5. Dropping scores under the threshold before NMS gives the same survivors as after it
(a lower-scored box never suppresses a higher one) and is cheaper.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lipsync.models import require_model

if TYPE_CHECKING:
    from lipsync.face.s3fd_net import S3FD

S3FD_FILE = "s3fd.pth"
STRIDES: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # = lipsync.face.s3fd_net.STRIDES
VARIANCES = (0.1, 0.2)
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
CANDIDATE_SCORE = 0.05  # face-alignment's first cut on the softmax face score

Detection = tuple[float, float, float, float, float]  # x1, y1, x2, y2, score
Box = tuple[float, float, float, float]
FloatArray = npt.NDArray[np.float32]


# -- decoding (numpy only) -------------------------------------------------------------------
def decode(
    levels: Sequence[tuple[FloatArray, FloatArray]],
    strides: Sequence[int] = STRIDES,
    min_score: float = CANDIDATE_SCORE,
) -> FloatArray:
    """Candidate boxes (N, 5) ``x1, y1, x2, y2, score`` from per-level head outputs.

    ``levels[k]`` is ``(face score (h, w), offsets (4, h, w))`` of the feature map with
    ``strides[k]``: the prior of cell (row i, column j) is centred at
    ``(stride / 2 + j * stride, stride / 2 + i * stride)`` with side ``4 * stride``.
    """
    out: list[FloatArray] = []
    for (score, loc), stride in zip(levels, strides, strict=True):
        rows, cols = np.nonzero(score > min_score)
        if rows.size == 0:
            continue
        side = 4.0 * stride
        d = loc[:, rows, cols].astype(np.float32)  # (4, n)
        cx = stride / 2 + cols * stride + d[0] * VARIANCES[0] * side
        cy = stride / 2 + rows * stride + d[1] * VARIANCES[0] * side
        w = side * np.exp(d[2] * VARIANCES[1])
        h = side * np.exp(d[3] * VARIANCES[1])
        out.append(
            np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score[rows, cols]], axis=1)
        )
    if not out:
        return np.zeros((0, 5), np.float32)
    return np.concatenate(out).astype(np.float32)


def nms(boxes: FloatArray, iou_threshold: float = 0.3) -> npt.NDArray[np.intp]:
    """Indices of the boxes (N, 5) kept by greedy non-maximum suppression, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.intp)
    x1, y1, x2, y2, score = (boxes[:, k].astype(np.float64) for k in range(5))
    area = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    order = np.argsort(-score, kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        union = area[i] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, np.intp)


def detections(
    levels: Sequence[tuple[FloatArray, FloatArray]],
    score_threshold: float = 0.5,
    iou_threshold: float = 0.3,
    strides: Sequence[int] = STRIDES,
) -> list[Detection]:
    """Final detections, highest score first: decode, threshold, NMS."""
    boxes = decode(levels, strides, min_score=max(CANDIDATE_SCORE, score_threshold))
    kept = boxes[nms(boxes, iou_threshold)]
    return [(float(a), float(b), float(c), float(d), float(s)) for a, b, c, d, s in kept]


# -- box convention --------------------------------------------------------------------------
# S3FD was trained on WIDER FACE boxes: cheek to cheek, forehead to chin. The project models
# that box from landmarks in :func:`lipsync.face.geometry.crop_box` (with zero pads):
#   x: jaw extremes, y1 = brow - FOREHEAD * (chin - brow), y2 = chin,
# and dlib's detector box in :func:`lipsync.face.geometry.detector_like_box`:
#   (x1 + m, brow - m, x2 - m, chin - m), m = DLIB_MARGIN * landmark width.
# Inverting the first and applying the second turns an S3FD box into the box the dlib shape
# predictor expects. (No real S3FD weights are available here to calibrate on; the test
# checks the round trip against dlib's own box on the astronaut photo.)
FOREHEAD = 0.18
DLIB_MARGIN = 0.02


def dlib_like_box(box: Sequence[float]) -> Box:
    """The dlib-detector-like box for an S3FD box ``(x1, y1, x2, y2[, score])``."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w = x2 - x1
    brow = y2 - (y2 - y1) / (1.0 + FOREHEAD)
    m = DLIB_MARGIN * w
    return x1 + m, brow - m, x2 - m, y2 - m


# -- network ---------------------------------------------------------------------------------
def to_input(image: npt.NDArray[np.uint8]) -> FloatArray:
    """(1, 3, H, W) network input from an RGB (H, W, 3) or grayscale (H, W) uint8 image."""
    if image.ndim == 2:
        bgr = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 3:
        bgr = image[:, :, ::-1]
    else:
        raise ValueError(f"expected an RGB or grayscale image, got shape {image.shape}")
    x = bgr.astype(np.float32) - MEAN_BGR
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def load_s3fd(path: Path) -> S3FD:
    """The S3FD network in eval mode with ``path``'s weights, loaded strictly.

    Raises :class:`ModelMismatch` (one line) when keys or shapes differ from the network.
    """
    from lipsync.face.s3fd_net import S3FD
    from lipsync.torchload import load_strict, read_state_dict

    state = read_state_dict(path, what="the S3FD detector's state dict")
    return load_strict(S3FD(), state, path, "the S3FD detector", "S3FD")


@lru_cache(maxsize=4)
def _cached_model(path: str, mtime_ns: int, device: str) -> S3FD:
    del mtime_ns  # part of the cache key only: a replaced file is loaded again
    import torch

    from lipsync.device import cpu_threads

    if device == "cpu":
        threads = min(torch.get_num_threads(), cpu_threads())
        if threads > 0 and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return load_s3fd(Path(path)).to(device)


class S3fdFaces:
    """S3FD detections on RGB or grayscale uint8 images, on the CPU or a CUDA GPU."""

    def __init__(
        self,
        path: Path,
        device: str = "auto",
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
    ) -> None:
        from lipsync.device import resolve_device

        self.path = Path(path)
        self.device = resolve_device(device)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.model = _cached_model(
            str(self.path.resolve()), self.path.stat().st_mtime_ns, self.device
        )

    @classmethod
    def from_models_dir(cls, models_dir: Path, device: str = "auto") -> S3fdFaces:
        """``s3fd.pth`` from ``models_dir``; :class:`ModelMissing` when it is not there."""
        return cls(require_model(models_dir, S3FD_FILE), device)

    def heads(self, image: npt.NDArray[np.uint8]) -> list[tuple[FloatArray, FloatArray]]:
        """Per feature map: (face probability (h, w), box offsets (4, h, w))."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(to_input(image)).to(self.device)
            out = self.model(x)
            levels = []
            for k in range(0, len(out), 2):
                prob = torch.softmax(out[k].float(), dim=1)[0, 1]
                levels.append((prob.cpu().numpy(), out[k + 1][0].float().cpu().numpy()))
        return levels

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        """``(x1, y1, x2, y2, score)`` per face, in S3FD's convention, best first."""
        return detections(self.heads(image), self.score_threshold, self.iou_threshold)


class S3fdDetector:
    """S3FD as :class:`lipsync.face.tracker.FaceTracker`'s box detector: boxes are turned
    into dlib-like boxes (:func:`dlib_like_box`) for the 68-point shape predictor. S3FD
    finds small faces without upsampling, so ``upsample`` is not used."""

    max_upsample = 0

    def __init__(self, faces: S3fdFaces) -> None:
        self.faces = faces

    @classmethod
    def from_models_dir(cls, models_dir: Path, device: str = "auto") -> S3fdDetector:
        return cls(S3fdFaces.from_models_dir(models_dir, device))

    def detect(self, gray: npt.NDArray[np.uint8], upsample: int = 0) -> list[Box]:
        del upsample
        return [dlib_like_box(d) for d in self.faces.detect(gray)]
