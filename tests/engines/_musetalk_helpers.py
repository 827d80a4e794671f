"""Builders shared by the MuseTalk tests: random networks in the published layout, speech,
and the reference's computation restated from reading TMElyralab/MuseTalk.

No weights can be downloaded: the networks are randomly initialised from configs in the
published format (the UNet and VAE with the published schema but reduced widths, so a run
takes seconds on two cores; whisper-tiny and BiSeNet at their real sizes) and saved exactly
as the published files are laid out under ``models/``. The reference is restated here, not
imported (``musetalk/utils/audio_processor.py``, ``musetalk/models/vae.py``,
``scripts/inference.py``), on top of the libraries' own ``from_pretrained`` loaders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from lipsync.engines.musetalk.published import PUBLISHED_UNET, PUBLISHED_VAE, WHISPER_TINY

# The MuseTalk engine's networks need the musetalk extra: a test module importing these
# helpers is skipped without it.
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

# The same schemas with reduced widths and depth, for runs on CI's two cores.
SMALL_UNET = {
    **PUBLISHED_UNET,
    "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 1,
}
SMALL_VAE = {**PUBLISHED_VAE, "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1}
FPS = 25.0


def _old_attention_names(state: dict[str, Any]) -> dict[str, Any]:
    """A VAE state dict in the names sd-vae-ft-mse's .bin was saved with (diffusers 0.4)."""
    new_to_old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    out = {}
    for key, value in state.items():
        for new, old in new_to_old.items():
            marker = f".attentions.0.{new}."
            if marker in key:
                key = key.replace(marker, f".attentions.0.{old}.")
        out[key] = value
    return out


def write_published(
    directory: Path, unet_config: dict[str, Any], vae_config: dict[str, Any], seed: int = 0
) -> Path:
    """Random networks saved as MuseTalk's README lays them out under ``models/``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    torch.manual_seed(seed)
    for sub in ("musetalkV15", "sd-vae", "whisper"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    (directory / "musetalkV15" / "musetalk.json").write_text(json.dumps(unet_config, indent=2))
    unet = UNet2DConditionModel(**unet_config)
    torch.save(unet.state_dict(), directory / "musetalkV15" / "unet.pth")
    (directory / "sd-vae" / "config.json").write_text(json.dumps(vae_config, indent=2))
    vae = AutoencoderKL(**vae_config)
    state = _old_attention_names(vae.state_dict())
    torch.save(state, directory / "sd-vae" / "diffusion_pytorch_model.bin")
    config = WhisperConfig(**WHISPER_TINY)
    whisper = WhisperForConditionalGeneration(config)
    config.save_pretrained(directory / "whisper")
    # openai/whisper-tiny's pytorch_model.bin: WhisperForConditionalGeneration's state.
    torch.save(whisper.state_dict(), directory / "whisper" / "pytorch_model.bin")
    WhisperFeatureExtractor().save_pretrained(directory / "whisper")
    return directory


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    voiced = np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.3 * voiced + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def reference_chunks(whisper_dir: Path, audio: np.ndarray, fps: int) -> np.ndarray:
    """``AudioProcessor.get_audio_feature`` + ``get_whisper_chunk`` with the libraries'
    own loaders (``AutoFeatureExtractor`` / ``WhisperModel.from_pretrained``)."""
    from transformers import AutoFeatureExtractor, WhisperModel

    extractor = AutoFeatureExtractor.from_pretrained(str(whisper_dir))
    whisper = WhisperModel.from_pretrained(str(whisper_dir)).eval()
    sr = 16000
    seg = 30 * sr
    features = [
        extractor(audio[i : i + seg], return_tensors="pt", sampling_rate=sr).input_features
        for i in range(0, len(audio), seg)
    ]
    with torch.no_grad():
        feats = [
            torch.stack(whisper.encoder(f, output_hidden_states=True).hidden_states, dim=2)
            for f in features
        ]
    return reference_windows(torch.cat(feats, dim=1), len(audio), fps).numpy()


def reference_windows(whisper_feature: Any, librosa_length: int, fps: int) -> Any:
    """``get_whisper_chunk``'s trimming, zero padding and windows, on ``(1, T, L, D)``."""
    left = right = 2
    per_frame = 2 * (left + right + 1)
    multiplier = 50 / fps
    num_frames = math.floor((librosa_length / 16000) * fps)
    actual = math.floor((librosa_length / 16000) * 50)
    whisper_feature = whisper_feature[:, :actual, ...]
    pad = math.ceil(multiplier)
    whisper_feature = torch.cat(
        [
            torch.zeros_like(whisper_feature[:, : pad * left]),
            whisper_feature,
            torch.zeros_like(whisper_feature[:, : pad * 3 * right]),
        ],
        1,
    )
    prompts = []
    for i in range(num_frames):
        start = math.floor(i * multiplier)
        clip = whisper_feature[:, start : start + per_frame]
        assert clip.shape[1] == per_frame
        prompts.append(clip)
    out = torch.cat(prompts, dim=0)  # T, 10, L, D
    return out.reshape(out.shape[0], out.shape[1] * out.shape[2], out.shape[3])


def reference_faces(
    models_dir: Path, crops_bgr: np.ndarray, chunks: np.ndarray, seed: int | None = None
) -> np.ndarray:
    """``VAE.get_latents_for_unet`` for each crop, the UNet at t=0 with the positional
    encoding, ``VAE.decode_latents``: BGR uint8 faces, with ``from_pretrained``'s VAE.
    ``seed``: the reference's ``latent_dist.sample()`` after ``torch.manual_seed(seed)``
    (its inference path); None: the posterior mean (its training path)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    vae = AutoencoderKL.from_pretrained(str(models_dir / "sd-vae")).eval()
    config = json.loads((models_dir / "musetalkV15" / "musetalk.json").read_text())
    unet = UNet2DConditionModel(**config)
    unet.load_state_dict(torch.load(models_dir / "musetalkV15" / "unet.pth"))
    unet.eval()
    mask = torch.zeros((256, 256))
    mask[:128, :] = 1

    def prep(img: np.ndarray, half: bool) -> Any:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        x = torch.squeeze(torch.FloatTensor(np.transpose(np.asarray([rgb]) / 255.0, (3, 0, 1, 2))))
        if half:
            x = x * (mask > 0.5)
        return ((x - 0.5) / 0.5).unsqueeze(0)

    d_model = 384
    pe = torch.zeros(5000, d_model)
    position = torch.arange(0, 5000, dtype=torch.float).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    sf = vae.config.scaling_factor
    if seed is not None:
        torch.manual_seed(seed)

    def latent(img: np.ndarray, half: bool) -> Any:
        dist = vae.encode(prep(img, half)).latent_dist
        return sf * (dist.mode() if seed is None else dist.sample())

    out = []
    with torch.no_grad():
        inputs = [torch.cat([latent(c, True), latent(c, False)], dim=1) for c in crops_bgr]
        for latents, chunk in zip(inputs, chunks, strict=True):
            audio = torch.from_numpy(chunk)[None] + pe[None, : chunk.shape[0]]
            pred = unet(latents, torch.tensor([0]), encoder_hidden_states=audio).sample
            image = vae.decode((1 / sf) * pred).sample
            image = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
            out.append((image * 255).round().astype("uint8")[0, ..., ::-1])
    return np.stack(out)


def write_parser(models_dir: Path, seed: int = 0) -> Path:
    """A random BiSeNet saved as ``face-parse-bisent/79999_iter.pth`` (a bare state dict,
    the reference's module names), with running statistics that make its classes vary."""
    from lipsync.engines.musetalk.parsing import PARSER_WEIGHTS, BiSeNet

    torch.manual_seed(seed)
    net = BiSeNet()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.normal_(0.0, 0.1)
    path = models_dir / PARSER_WEIGHTS
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def face_landmarks(image: np.ndarray) -> np.ndarray:
    """The project's 68 landmarks of the face in ``image``."""
    from lipsync.face.tracker import FaceTracker

    lm = FaceTracker().update(image)
    assert lm is not None
    return np.asarray(lm, np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)
