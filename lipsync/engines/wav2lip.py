"""The Wav2Lip engine on PyTorch: the published ``wav2lip_gan.pth`` / ``wav2lip.pth``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from lipsync.device import cpu_threads, resolve_device
from lipsync.engines.base import EngineContext
from lipsync.engines.wav2lip_common import FloatBatch, Wav2LipBase, find_checkpoint
from lipsync.engines.wav2lip_net import Wav2Lip, fold_batchnorm
from lipsync.errors import ModelMismatch

CHECKPOINTS = ("wav2lip_gan.pth", "wav2lip.pth")

_OPTIONAL_SUFFIX = "num_batches_tracked"  # BatchNorm counter: absent from very old saves


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state.items():
        while key.startswith("module."):  # saved from nn.DataParallel
            key = key[len("module.") :]
        out[key] = value
    return out


_M = TypeVar("_M", bound=torch.nn.Module)


def _example(keys: list[str]) -> str:
    return keys[0] + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")


def read_state_dict(path: Path, what: str = "a Wav2Lip checkpoint") -> dict[str, torch.Tensor]:
    """The weights in a checkpoint file (a state dict, bare or under ``state_dict``),
    ``module.`` prefixes stripped; ``what`` names the expected content in errors."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, not a torch file, disallowed pickle content
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelMismatch(f"{path.name} is not a readable PyTorch checkpoint: {reason}") from exc
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, Mapping) or not state:
        raise ModelMismatch(f"{path.name} holds no state dict (expected {what})")
    return _strip_prefix(state)


def state_dict_problems(
    state: Mapping[str, Any], expected: Mapping[str, torch.Tensor]
) -> list[str]:
    """Missing, unexpected and wrongly shaped keys of ``state`` against a network's own
    ``state_dict()``, one short phrase each (empty when it loads strictly). BatchNorm
    ``num_batches_tracked`` counters may be absent."""
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(getattr(state[k], 'shape', ()))} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state
        and (not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_example(missing)}")
    if unexpected:
        problems.append(f"unexpected {_example(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {_example(wrong)}")
    return problems


def load_strict(
    model: _M, state: dict[str, torch.Tensor], path: Path, network: str, short: str
) -> _M:
    """``model`` in eval mode with ``state`` loaded strictly; :class:`ModelMismatch` (one
    line, naming ``network`` / ``short``) when keys, shapes or dtypes do not fit."""
    expected = model.state_dict()
    problems = state_dict_problems(state, expected)
    if problems:
        raise ModelMismatch(f"{path.name} does not match {network}: " + "; ".join(problems))
    for key, value in expected.items():  # tolerate saves without BatchNorm counters
        state.setdefault(key, value)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype or other incompatibility the checks above missed
        first = str(exc).strip().splitlines()[0]
        raise ModelMismatch(f"{path.name} does not load into {short}: {first}") from exc
    return model.eval()


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
        self.checkpoint = find_checkpoint(ctx, CHECKPOINTS, self.name)
        self.fp16 = self.device == "cuda" and bool(ctx.extra.get("fp16", False))
        if self.device == "cpu":
            # torch defaults to the host's physical cores; a container may allow fewer.
            wanted = ctx.extra.get("threads")
            threads = int(wanted) if wanted else min(torch.get_num_threads(), cpu_threads())
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

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "checkpoint": self.checkpoint.name,
            "device": self.device,
            "fp16": self.fp16,
        }

    def close(self) -> None:
        if hasattr(self, "_model"):
            del self._model
        if self.device == "cuda":
            torch.cuda.empty_cache()
