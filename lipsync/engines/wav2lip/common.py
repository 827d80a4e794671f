"""What the Wav2Lip engines share: pre- and post-processing, the job flow.

The PyTorch and ONNX engines differ only in how they run the network on one batch
(:meth:`Wav2LipBase._infer`); everything around it lives here, so both give the same
patches for the same weights. The processing follows the original Wav2Lip inference
script step for step: crop the face box, BGR (the network was trained on OpenCV frames),
``cv2.resize`` to 96x96 with its default bilinear interpolation, the reference copy with
its lower half zeroed stacked in front of the full crop on the channel axis, ``/ 255``;
the output ``* 255`` truncated to uint8, resized back to the box and pasted whole.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.audio.mel import MEL_STEP_SIZE, NUM_MELS, mel_chunks, melspectrogram
from lipsync.engines.base import Engine, EngineContext, batch_length
from lipsync.types import EngineReport, FaceObs, Patch, RGBImage

IMG_SIZE = 96

FloatBatch = npt.NDArray[np.float32]


def clip_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """The face box clipped to the frame, at least one pixel wide and high."""
    x1, y1, x2, y2 = (int(v) for v in box)
    x1 = min(max(x1, 0), width - 1)
    y1 = min(max(y1, 0), height - 1)
    x2 = min(max(x2, x1 + 1), width)
    y2 = min(max(y2, y1 + 1), height)
    return x1, y1, x2, y2


def crop_faces(
    frames: Sequence[RGBImage], faces: Sequence[FaceObs]
) -> tuple[npt.NDArray[np.uint8], list[tuple[int, int, int, int]]]:
    """96x96 BGR face crops ``(N, 96, 96, 3)`` and the (clipped) boxes they came from."""
    crops = np.empty((len(frames), IMG_SIZE, IMG_SIZE, 3), dtype=np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    for i, (frame, face) in enumerate(zip(frames, faces, strict=True)):
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = clip_box(face.box, w, h)
        crop = np.ascontiguousarray(frame[y1:y2, x1:x2, ::-1])  # RGB -> BGR
        crops[i] = cv2.resize(crop, (IMG_SIZE, IMG_SIZE))
        boxes.append((x1, y1, x2, y2))
    return crops, boxes


def face_input(crops: npt.NDArray[np.uint8]) -> FloatBatch:
    """Network face input ``(N, 6, 96, 96)``: [masked crop, crop] channels, scaled to 0..1."""
    n = crops.shape[0]
    out = np.empty((n, 6, IMG_SIZE, IMG_SIZE), dtype=np.float32)
    chw = crops.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    out[:, 3:] = chw
    out[:, :3] = chw
    out[:, :3, IMG_SIZE // 2 :, :] = 0.0
    return out


def to_patches(
    pred: npt.NDArray[np.floating], boxes: Sequence[tuple[int, int, int, int]]
) -> list[Patch]:
    """Network output ``(N, 3, 96, 96)`` in 0..1 (BGR) -> full-box RGB patches."""
    scaled = np.clip(pred.astype(np.float32) * np.float32(255.0), 0.0, 255.0)
    faces = scaled.transpose(0, 2, 3, 1).astype(np.uint8)  # truncation, as the reference
    patches: list[Patch] = []
    for face, (x1, y1, x2, y2) in zip(faces, boxes, strict=True):
        resized = cv2.resize(face, (x2 - x1, y2 - y1))
        if resized.ndim == 2:  # a 1-pixel-wide box loses the channel axis in cv2
            resized = resized.reshape(y2 - y1, x2 - x1, 3)
        image = np.ascontiguousarray(resized[:, :, ::-1])  # BGR -> RGB
        mask = np.ones((y2 - y1, x2 - x1), dtype=np.float32)
        upscale = max(x2 - x1, y2 - y1) / IMG_SIZE
        patches.append(Patch(x1, y1, image, mask=mask, upscale=upscale))
    return patches


class Wav2LipBase(Engine):
    """The job flow of a Wav2Lip engine; subclasses run the network on one batch."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.batch_size = max(1, int(ctx.batch_size))
        self._chunks: FloatBatch | None = None
        self._frames_done = 0

    @abstractmethod
    def _infer(self, mel: FloatBatch, face: FloatBatch) -> npt.NDArray[np.floating]:
        """``mel (B, 1, 80, 16)``, ``face (B, 6, 96, 96)`` -> ``(B, 3, 96, 96)`` in 0..1."""

    def prepare(self, audio16k: npt.NDArray[np.float32], fps: float, n_frames: int) -> None:
        mel = melspectrogram(audio16k)
        self._chunks = mel_chunks(mel, fps, n_frames)
        self._frames_done = 0

    def mel_batch(self, indices: Sequence[int]) -> FloatBatch:
        """Speech windows ``(N, 1, 80, 16)`` for output frame indices (clamped to the job)."""
        if self._chunks is None:
            raise RuntimeError("prepare() must be called before generate()")
        if len(self._chunks) == 0:
            return np.zeros((len(indices), 1, NUM_MELS, MEL_STEP_SIZE), dtype=np.float32)
        idx = np.clip(np.asarray(indices, dtype=np.int64), 0, len(self._chunks) - 1)
        return np.ascontiguousarray(self._chunks[idx][:, None])

    def generate(
        self,
        frames: Sequence[RGBImage],
        faces: Sequence[FaceObs],
        indices: Sequence[int],
    ) -> list[Patch]:
        if not batch_length(frames, faces, indices):
            return []
        mels = self.mel_batch(indices)
        crops, boxes = crop_faces(frames, faces)
        faces_in = face_input(crops)
        outputs = []
        for start in range(0, len(frames), self.batch_size):
            stop = start + self.batch_size
            outputs.append(np.asarray(self._infer(mels[start:stop], faces_in[start:stop])))
        self._frames_done += len(frames)
        return to_patches(np.concatenate(outputs, axis=0), boxes)

    def report(self) -> EngineReport:
        return EngineReport(self.name, details=self._details())

    def _details(self) -> dict[str, Any]:
        return {"frames": self._frames_done}
