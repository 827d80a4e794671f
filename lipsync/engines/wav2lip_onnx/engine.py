"""The Wav2Lip engine on onnxruntime: ``wav2lip_gan_96.onnx`` / ``wav2lip_96.onnx``.

Exports of the network differ in input names, layout and batch size, so inputs are matched
by shape: the 6-channel 96x96 face input and the 1-channel 80x16 speech input, each NCHW
or NHWC. A model with a fixed batch size is run in chunks of that size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.audio.mel import MEL_STEP_SIZE, NUM_MELS
from lipsync.device import onnx_session
from lipsync.engines.base import EngineContext
from lipsync.engines.wav2lip.common import IMG_SIZE, FloatBatch, Wav2LipBase
from lipsync.engines.wav2lip_onnx.wing import WEIGHTS
from lipsync.enginespec import find_weights
from lipsync.errors import ModelMismatch

#: The exports the wing declares, the preferred first.
CHECKPOINTS = tuple(m.filename for m in WEIGHTS)


@dataclass(frozen=True)
class _Input:
    name: str
    channels_last: bool
    dtype: type[np.floating]


def _dims(shape: list[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def _matches(dims: list[int | None], want: tuple[int, int, int]) -> bool:
    return all(d is None or d == w for d, w in zip(dims, want, strict=True))


def _classify(dims: list[int | None], channels: int, h: int, w: int) -> bool | None:
    """True for NHWC, False for NCHW, None when a 4-D shape fits neither."""
    if len(dims) != 4:
        return None
    nchw = _matches(dims[1:], (channels, h, w)) and dims[1] == channels
    nhwc = _matches(dims[1:], (h, w, channels)) and dims[3] == channels
    if nchw:
        return False
    if nhwc:
        return True
    return None


def _np_dtype(onnx_type: str) -> type[np.floating]:
    return np.float16 if onnx_type == "tensor(float16)" else np.float32


class Wav2LipOnnxEngine(Wav2LipBase):
    """Wav2Lip generator exported to ONNX, run with onnxruntime."""

    name = "wav2lip-onnx"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.checkpoint = find_weights(ctx, CHECKPOINTS, self.name)
        self._session = onnx_session(self.checkpoint, ctx.device)
        self._face, self._mel, self._fixed_batch = self._map_inputs()
        self._output = self._session.get_outputs()[0].name

    def _map_inputs(self) -> tuple[_Input, _Input, int | None]:
        face: _Input | None = None
        mel: _Input | None = None
        batch: int | None = None
        inputs = self._session.get_inputs()
        for arg in inputs:
            dims = _dims(list(arg.shape))
            face_layout = _classify(dims, 6, IMG_SIZE, IMG_SIZE)
            mel_layout = _classify(dims, 1, NUM_MELS, MEL_STEP_SIZE)
            if face_layout is not None and face is None:
                face = _Input(arg.name, face_layout, _np_dtype(arg.type))
            elif mel_layout is not None and mel is None:
                mel = _Input(arg.name, mel_layout, _np_dtype(arg.type))
            else:
                continue
            if dims[0] is not None:
                batch = dims[0] if batch is None else min(batch, dims[0])
        if face is None or mel is None or len(inputs) != 2:
            shapes = ", ".join(f"{a.name}{list(a.shape)}" for a in inputs)
            raise ModelMismatch(
                f"{self.checkpoint.name} is not a Wav2Lip 96 model: expected a 6x96x96 face "
                f"input and a 1x80x16 mel input, found {shapes}"
            )
        return face, mel, batch

    def _run(self, mel: FloatBatch, face: FloatBatch) -> npt.NDArray[np.floating]:
        feed = {
            self._face.name: (
                face.transpose(0, 2, 3, 1) if self._face.channels_last else face
            ).astype(self._face.dtype, copy=False),
            self._mel.name: (mel.transpose(0, 2, 3, 1) if self._mel.channels_last else mel).astype(
                self._mel.dtype, copy=False
            ),
        }
        out = np.asarray(self._session.run([self._output], feed)[0])
        if out.ndim == 4 and out.shape[1] != 3 and out.shape[3] == 3:
            out = out.transpose(0, 3, 1, 2)
        if out.ndim != 4 or out.shape[1:] != (3, IMG_SIZE, IMG_SIZE):
            raise ModelMismatch(
                f"{self.checkpoint.name} returned shape {list(out.shape)}, expected Bx3x96x96"
            )
        result: npt.NDArray[np.floating] = out.astype(np.float32, copy=False)
        return result

    def _infer(self, mel: FloatBatch, face: FloatBatch) -> npt.NDArray[np.floating]:
        size = self._fixed_batch
        if size is None or size == len(face):
            return self._run(mel, face)
        outputs = []
        for start in range(0, len(face), size):
            m, f = mel[start : start + size], face[start : start + size]
            n = len(f)
            if n < size:  # pad the last chunk of a fixed-batch model, drop the extra rows
                m = np.concatenate([m, np.repeat(m[-1:], size - n, axis=0)])
                f = np.concatenate([f, np.repeat(f[-1:], size - n, axis=0)])
            outputs.append(self._run(m, f)[:n])
        return np.concatenate(outputs, axis=0)

    def _details(self) -> dict[str, Any]:
        providers = list(self._session.get_providers())
        device = "cpu" if providers[:1] == ["CPUExecutionProvider"] else "cuda"
        return {
            **super()._details(),
            "checkpoint": self.checkpoint.name,
            "device": device,
            "providers": providers,
        }

    def close(self) -> None:
        self._session = None
