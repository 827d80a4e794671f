"""Loading MuseTalk 1.5 exactly as published, from the layout its README gives:

.. code-block:: text

    models/
      musetalkV15/musetalk.json   UNet2DConditionModel config (8 input channels, 384 cross-attn)
      musetalkV15/unet.pth        its weights (a bare state dict)
      sd-vae/config.json          AutoencoderKL config (stabilityai/sd-vae-ft-mse)
      sd-vae/diffusion_pytorch_model.bin
      whisper/config.json         whisper-tiny, Hugging Face layout (openai/whisper-tiny)
      whisper/pytorch_model.bin
      whisper/preprocessor_config.json

Nothing is downloaded: a missing file raises :class:`~lipsync.errors.ModelMissing` naming
it and where it goes. Weights load strictly (every key, every shape) through
:mod:`lipsync.torchload`; anything else raises :class:`~lipsync.errors.ModelMismatch`.
The networks are built on the meta device and take the file's tensors directly, so a
3.4 GB UNet is not first filled with random numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lipsync.engines.musetalk import wing
from lipsync.errors import ModelMismatch
from lipsync.models import require_model
from lipsync.torchload import read_state_dict, state_dict_problems

# The files' names under models/, as the wing declares them.
UNET_CONFIG = wing.UNET_CONFIG.filename
UNET_WEIGHTS = wing.UNET.filename
VAE_CONFIG = wing.VAE_CONFIG.filename
VAE_WEIGHTS = wing.VAE.filename
WHISPER_CONFIG = wing.WHISPER_CONFIG.filename
WHISPER_WEIGHTS = wing.WHISPER.filename
WHISPER_PREPROCESSOR = wing.WHISPER_PREPROCESSOR.filename

#: Every file the engine needs, relative to the models directory.
FILES = tuple(m.filename for m in wing.REQUIRED)

# diffusers' old attention-block names (AutoencoderKL files saved before diffusers 0.14,
# such as sd-vae-ft-mse's .bin) and the names the current blocks use.
_OLD_ATTENTION_NAMES = {
    "query": "to_q",
    "key": "to_k",
    "value": "to_v",
    "proj_attn": "to_out.0",
}


def read_config(path: Path) -> dict[str, Any]:
    """A JSON config as a dict; :class:`ModelMismatch` when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelMismatch(f"{path.name} is not a readable JSON config: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelMismatch(f"{path.name} is not a JSON object")
    return data


def _build(factory: Any, what: str, path: Path) -> torch.nn.Module:
    """A network from its config, on the meta device (no memory, no random init)."""
    try:
        with torch.device("meta"):
            module: torch.nn.Module = factory()
    except Exception as exc:  # a config the library refuses (unknown block types, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelMismatch(f"{path.name} is not a valid {what} config: {first}") from exc
    return module


def load_into(
    module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, network: str
) -> torch.nn.Module:
    """``module`` (built on meta) with ``state`` assigned strictly, in eval mode, on CPU."""
    expected = module.state_dict()
    problems = state_dict_problems(state, expected)
    if problems:
        raise ModelMismatch(f"{path.name} does not match {network}: " + "; ".join(problems))
    try:
        module.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
            strict=True,
            assign=True,
        )
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelMismatch(f"{path.name} does not load into {network}: {first}") from exc
    leftover = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if leftover:  # non-persistent buffers: rebuild them on the CPU
        raise ModelMismatch(f"{path.name} leaves {network} incomplete: {leftover[0]}")
    return module.eval().requires_grad_(False)


def load_unet(models_dir: Path, weights: Path | None = None) -> Any:
    """The MuseTalk UNet (``UNet2DConditionModel``) from musetalk.json + unet.pth."""
    from diffusers import UNet2DConditionModel

    config_path = require_model(models_dir, UNET_CONFIG)
    weights_path = weights if weights is not None else require_model(models_dir, UNET_WEIGHTS)
    config = read_config(config_path)
    unet = _build(
        lambda: UNet2DConditionModel.from_config(config), "UNet2DConditionModel", config_path
    )
    state = read_state_dict(weights_path, "the MuseTalk UNet weights")
    return load_into(unet, state, weights_path, "the MuseTalk UNet of musetalk.json")


def rename_old_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VAE keys in diffusers' pre-0.14 attention names (``...attentions.0.query.weight``)
    renamed to the current ones (``...attentions.0.to_q.weight``); others unchanged."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) >= 2 and "attentions" in parts and parts[-2] in _OLD_ATTENTION_NAMES:
            parts[-2] = _OLD_ATTENTION_NAMES[parts[-2]]
            key = ".".join(parts)
        out[key] = value
    return out


def load_vae(models_dir: Path) -> Any:
    """The ft-MSE VAE (``AutoencoderKL``) from sd-vae/config.json + the .bin."""
    from diffusers import AutoencoderKL

    config_path = require_model(models_dir, VAE_CONFIG)
    weights_path = require_model(models_dir, VAE_WEIGHTS)
    config = read_config(config_path)
    vae = _build(lambda: AutoencoderKL.from_config(config), "AutoencoderKL", config_path)
    state = rename_old_attention(read_state_dict(weights_path, "the sd-vae weights"))
    return load_into(vae, state, weights_path, "the AutoencoderKL of sd-vae/config.json")


def _encoder_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The encoder's weights of a Whisper checkpoint (``WhisperForConditionalGeneration``'s
    ``model.encoder.*`` or ``WhisperModel``'s ``encoder.*``); decoder weights are not used."""
    encoder: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        name = key[len("model.") :] if key.startswith("model.") else key
        if name.startswith("encoder."):
            encoder[name[len("encoder.") :]] = value
        elif not name.startswith(("decoder.", "proj_out.")):
            unexpected.append(key)
    if unexpected:
        raise ModelMismatch(
            f"{path.name} does not match a Whisper checkpoint: unexpected {unexpected[0]}"
            + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )
    return encoder


def load_whisper(models_dir: Path) -> tuple[Any, Any]:
    """The Whisper encoder and its feature extractor from ``whisper/`` (HF layout)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config_path = require_model(models_dir, WHISPER_CONFIG)
    weights_path = require_model(models_dir, WHISPER_WEIGHTS)
    pre_path = require_model(models_dir, WHISPER_PREPROCESSOR)
    config_dict = read_config(config_path)
    read_config(pre_path)
    try:
        config = WhisperConfig.from_dict(config_dict)
    except Exception as exc:
        raise ModelMismatch(f"{config_path.name} is not a Whisper config: {exc}") from exc
    encoder = _build(lambda: WhisperEncoder(config), "Whisper", config_path)
    state = _encoder_state(read_state_dict(weights_path, "the Whisper weights"), weights_path)
    load_into(encoder, state, weights_path, "the Whisper encoder of whisper/config.json")
    try:
        extractor = WhisperFeatureExtractor.from_pretrained(
            str(pre_path.parent), local_files_only=True
        )
    except Exception as exc:
        raise ModelMismatch(f"{pre_path.name} is not a Whisper feature extractor: {exc}") from exc
    return encoder, extractor


@dataclass
class MuseTalkModels:
    """The three networks and the feature extractor, on CPU in float32."""

    unet: Any
    vae: Any
    whisper: Any
    extractor: Any

    @property
    def audio_dim(self) -> int:
        return int(self.whisper.config.d_model)


def load_models(models_dir: Path, unet_weights: Path | None = None) -> MuseTalkModels:
    """Every MuseTalk network from ``models_dir``; checks that they fit together."""
    models_dir = Path(models_dir)
    for name in FILES:  # name the first missing file before loading gigabytes
        if not (unet_weights is not None and name == UNET_WEIGHTS):
            require_model(models_dir, name)
    whisper, extractor = load_whisper(models_dir)
    vae = load_vae(models_dir)
    unet = load_unet(models_dir, unet_weights)
    d_model = int(whisper.config.d_model)
    latent = int(vae.config.latent_channels)
    if int(unet.config.cross_attention_dim) != d_model:
        raise ModelMismatch(
            f"musetalk.json's cross_attention_dim {unet.config.cross_attention_dim} "
            f"does not fit the Whisper states ({d_model})"
        )
    if int(unet.config.in_channels) != 2 * latent or int(unet.config.out_channels) != latent:
        raise ModelMismatch(
            f"musetalk.json's UNet takes {unet.config.in_channels} channels and gives "
            f"{unet.config.out_channels}; the VAE's latents have {latent} (expected "
            f"{2 * latent} in, {latent} out)"
        )
    return MuseTalkModels(unet, vae, whisper, extractor)
