"""The Wav2Lip engine on PyTorch: the published ``wav2lip_gan.pth`` / ``wav2lip.pth``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lipsync.device import cpu_threads, resolve_device
from lipsync.engines.base import EngineContext
from lipsync.engines.wav2lip.common import FloatBatch, Wav2LipBase
from lipsync.engines.wav2lip.net import Wav2Lip, fold_batchnorm
from lipsync.engines.wav2lip.wing import WEIGHTS
from lipsync.enginespec import find_weights
from lipsync.torchload import load_strict, read_state_dict

#: The checkpoints the wing declares, the preferred first.
CHECKPOINTS = tuple(m.filename for m in WEIGHTS)


def load_generator(path: Path) -> Wav2Lip:
    """A Wav2Lip network in eval mode with ``path``'s weights, loaded strictly.

    Raises :class:`ModelMismatch` (one line) when keys or shapes differ from the network.
    """
    return load_strict(
        Wav2Lip(), read_state_dict(path), path, "the Wav2Lip 96x96 generator", "Wav2Lip"
    )


class Wav2LipEngine(Wav2LipBase):
    """Wav2Lip generator on PyTorch (CPU, or CUDA with optional fp16)."""

    name = "wav2lip"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.device = resolve_device(ctx.device)
        self.checkpoint = find_weights(ctx, CHECKPOINTS, self.name)
        self.fp16 = self.device == "cuda" and ctx.fp16
        if self.device == "cpu":
            # torch defaults to the host's physical cores; a container may allow fewer.
            threads = min(torch.get_num_threads(), cpu_threads())
            if threads > 0 and torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        model = fold_batchnorm(load_generator(self.checkpoint))
        self._dtype = torch.float16 if self.fp16 else torch.float32
        self._model = model.to(device=self.device, dtype=self._dtype).to(
            memory_format=torch.channels_last  # type: ignore[call-overload]
        )

    def _infer(self, mel: FloatBatch, face: FloatBatch) -> npt.NDArray[np.floating]:
        with torch.inference_mode():
            mel_t = torch.from_numpy(mel).to(self.device, self._dtype)
            face_t = (
                torch.from_numpy(face)
                .to(self.device, self._dtype)
                .contiguous(memory_format=torch.channels_last)
            )
            out = self._model(mel_t, face_t)
            result: npt.NDArray[np.floating] = out.float().cpu().numpy()
        return result

    def _details(self) -> dict[str, Any]:
        return {
            **super()._details(),
            "checkpoint": self.checkpoint.name,
            "device": self.device,
            "fp16": self.fp16,
        }

    def close(self) -> None:
        if hasattr(self, "_model"):
            del self._model
        if self.device == "cuda":
            torch.cuda.empty_cache()
