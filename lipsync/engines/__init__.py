"""Generator engines: a declarative registry; modules are imported only when used.

Adding an engine means adding one module with an :class:`~lipsync.engines.base.Engine`
subclass and one entry in :data:`ENGINES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lipsync.engines.base import Engine, EngineContext
from lipsync.errors import InvalidOption


@dataclass(frozen=True)
class EngineSpec:
    name: str
    target: str  # "module:factory" - factory(ctx: EngineContext) -> Engine
    needs_weights: bool
    summary: str


ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec(
            "viseme",
            "lipsync.engines.viseme:VisemeEngine",
            needs_weights=False,
            summary="weight-free: mouth shapes from the speech, landmark-driven warp",
        ),
        EngineSpec(
            "retrieval",
            "lipsync.engines.retrieval:RetrievalEngine",
            needs_weights=False,
            summary="weight-free, photoreal: the person's own mouths from the input video",
        ),
        EngineSpec(
            "wav2lip",
            "lipsync.engines.wav2lip:Wav2LipEngine",
            needs_weights=True,
            summary="Wav2Lip generator (PyTorch) from wav2lip.pth / wav2lip_gan.pth",
        ),
        EngineSpec(
            "wav2lip-onnx",
            "lipsync.engines.wav2lip_onnx:Wav2LipOnnxEngine",
            needs_weights=True,
            summary="Wav2Lip generator as ONNX via onnxruntime (wav2lip_96.onnx)",
        ),
        EngineSpec(
            "musetalk",
            "lipsync.engines.musetalk:MuseTalkEngine",
            needs_weights=True,
            summary="MuseTalk 1.5: 256x256 latent inpainting (unet.pth, sd-vae, whisper-tiny); "
            "weights usable commercially; needs lipsync[musetalk]",
        ),
    )
}


def _resolve(target: str) -> Callable[[EngineContext], Engine]:
    module_name, _, attr = target.partition(":")
    factory: Callable[[EngineContext], Engine] = getattr(importlib.import_module(module_name), attr)
    return factory


def create_engine(name: str, ctx: EngineContext) -> Engine:
    spec = ENGINES.get(name)
    if spec is None:
        raise InvalidOption(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return _resolve(spec.target)(ctx)


class EngineCache:
    """Engines kept per process and reused across jobs (models load once per worker)."""

    def __init__(self) -> None:
        self._engines: dict[tuple[Any, ...], Engine] = {}

    def get(self, name: str, ctx: EngineContext) -> Engine:
        key = (
            name,
            str(ctx.checkpoint or ""),
            ctx.device,
            ctx.batch_size,
            tuple(ctx.pads),
            ctx.fp16,
            ctx.options,
        )
        engine = self._engines.get(key)
        if engine is None:
            engine = create_engine(name, ctx)
            self._engines[key] = engine
        return engine

    def clear(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
