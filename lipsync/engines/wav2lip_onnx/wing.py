"""The ``wav2lip-onnx`` engine's declaration: the ONNX exports it loads, the shared options
it reads (read without importing onnxruntime)."""

from __future__ import annotations

from lipsync.engines.wav2lip.wing import WAV2LIP_LICENCE
from lipsync.enginespec import EngineSpec
from lipsync.modelspec import ModelFile, UrlFile

_ASSETS = "https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0/"

#: The exports, the preferred first (the engine loads the first one present).
WEIGHTS = (
    ModelFile(
        name="Wav2Lip GAN 96 (ONNX)",
        filename="wav2lip_gan_96.onnx",
        used_by="engine wav2lip-onnx (preferred)",
        sha256=None,
        licence=WAV2LIP_LICENCE,
        commercial=False,
        source=_ASSETS + "wav2lip_gan_96.onnx",
        download=UrlFile(_ASSETS + "wav2lip_gan_96.onnx"),
        size_bytes=145_000_000,
    ),
    ModelFile(
        name="Wav2Lip 96 (ONNX)",
        filename="wav2lip_96.onnx",
        used_by="engine wav2lip-onnx",
        sha256=None,
        licence=WAV2LIP_LICENCE,
        commercial=False,
        source=_ASSETS + "wav2lip_96.onnx",
        download=UrlFile(_ASSETS + "wav2lip_96.onnx"),
        size_bytes=145_000_000,
    ),
)

ENGINE = EngineSpec(
    name="wav2lip-onnx",
    factory="lipsync.engines.wav2lip_onnx.engine:Wav2LipOnnxEngine",
    summary="Wav2Lip generator as ONNX via onnxruntime (wav2lip_96.onnx)",
    about="The same network through onnxruntime (CUDA/TensorRT providers when present).",
    reads=("checkpoint", "batch_size"),
    weights=WEIGHTS,
    alternatives=True,
)
