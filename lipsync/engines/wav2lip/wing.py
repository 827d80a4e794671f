"""The ``wav2lip`` engine's declaration: the published checkpoints it loads, the shared
options it reads (read without importing torch)."""

from __future__ import annotations

from lipsync.enginespec import EngineSpec
from lipsync.modelspec import ModelFile

WAV2LIP_LICENCE = "Wav2Lip: non-commercial research/personal use only (commercial: Sync Labs)"
#: Why ``lipsync models pull`` does not fetch them.
WAV2LIP_MANUAL = (
    "the authors publish the checkpoints only behind links on their README (a SharePoint "
    "folder, non-commercial terms), not at a stable, pinned address; copies elsewhere are "
    "not the authors' distribution: download it yourself and put it under models/"
)

#: The released checkpoints, the preferred first (the engine loads the first one present).
WEIGHTS = (
    ModelFile(
        name="Wav2Lip GAN",
        filename="wav2lip_gan.pth",
        used_by="engine wav2lip (preferred checkpoint)",
        sha256=None,
        licence=WAV2LIP_LICENCE,
        commercial=False,
        source="https://github.com/Rudrabha/Wav2Lip#getting-the-weights",
        size_bytes=435_800_000,
        manual=WAV2LIP_MANUAL,
    ),
    ModelFile(
        name="Wav2Lip",
        filename="wav2lip.pth",
        used_by="engine wav2lip",
        # Hugging Face blob id (= SHA-256) of checkpoints/wav2lip.pth in vinthony/SadTalker,
        # a copy of the Wav2Lip release.
        sha256="b78b681b68ad9fe6c6fb1debc6ff43ad05834a8af8a62ffc4167b7b34ef63c37",
        licence=WAV2LIP_LICENCE,
        commercial=False,
        source="https://github.com/Rudrabha/Wav2Lip#getting-the-weights "
        "(also huggingface.co/vinthony/SadTalker)",
        size_bytes=435_800_000,
        manual=WAV2LIP_MANUAL,
    ),
)

ENGINE = EngineSpec(
    name="wav2lip",
    factory="lipsync.engines.wav2lip.engine:Wav2LipEngine",
    summary="Wav2Lip generator (PyTorch) from wav2lip.pth / wav2lip_gan.pth",
    about="The Wav2Lip generator in PyTorch, published checkpoints loaded as they are "
    "(strict key and shape match), mel features identical to the reference code; CUDA with "
    "optional fp16 (`--fp16`) when present.",
    reads=("checkpoint", "batch_size", "fp16"),
    weights=WEIGHTS,
    alternatives=True,
)
