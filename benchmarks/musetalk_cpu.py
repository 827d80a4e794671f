"""CPU cost of the MuseTalk 1.5 networks at their published sizes, with random weights.

Builds the UNet from musetalkV15/musetalk.json's values (860 M parameters), the ft-MSE
VAE from sd-vae-ft-mse's config and whisper-tiny's encoder, fills them with small random
numbers (no weights are needed to time them) and times, per frame:

* the UNet: one call at timestep 0 on 8x32x32 latents with 50x384 audio tokens;
* the VAE encode (the engine encodes each crop twice: masked and whole) and decode at
  256x256;
* the whisper features: log-mel + encoder of a 30 s segment, divided by its 750 frames
  at 25 fps.

Usage: ``python -m benchmarks.musetalk_cpu [--batch 4] [--repeats 3] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lipsync.engines.musetalk.published import PUBLISHED_UNET, PUBLISHED_VAE, WHISPER_TINY


def _random(module: torch.nn.Module) -> torch.nn.Module:
    module = module.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:  # norm scales
                p.fill_(1.0)
            else:
                fan_in = max(1, p[0].numel())
                p.normal_(0.0, 1.0 / fan_in**0.5, generator=gen)
    return module.eval()


def _time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(PUBLISHED_UNET)
        vae = AutoencoderKL.from_config(PUBLISHED_VAE)
        whisper = WhisperEncoder(WhisperConfig(**WHISPER_TINY))
    unet, vae, whisper = _random(unet), _random(vae), _random(whisper)
    b = args.batch
    latents = torch.randn(b, 8, 32, 32)
    audio = torch.randn(b, 50, 384)
    images = torch.rand(b, 3, 256, 256) * 2 - 1
    small = torch.randn(b, 4, 32, 32)
    extractor = WhisperFeatureExtractor()
    speech = (0.1 * np.random.default_rng(0).standard_normal(16000 * 30)).astype(np.float32)
    t0 = torch.tensor([0])

    def whisper_30s() -> None:
        feats = extractor(speech, return_tensors="pt", sampling_rate=16000).input_features
        whisper(feats, output_hidden_states=True)

    with torch.inference_mode():
        unet_s = _time(lambda: unet(latents, t0, encoder_hidden_states=audio), args.repeats)
        enc_s = _time(lambda: vae.encode(images).latent_dist.mode(), args.repeats)
        dec_s = _time(lambda: vae.decode(small), args.repeats)
        whisper_s = _time(whisper_30s, args.repeats)
    result = {
        "threads": torch.get_num_threads(),
        "batch": b,
        "unet_ms_per_frame": round(1000 * unet_s / b, 1),
        "vae_encode_ms_per_frame": round(2000 * enc_s / b, 1),  # masked + whole crop
        "vae_decode_ms_per_frame": round(1000 * dec_s / b, 1),
        "whisper_ms_per_frame_25fps": round(1000 * whisper_s / 750, 2),
        "whisper_ms_per_30s_segment": round(1000 * whisper_s, 1),
        "unet_params": sum(p.numel() for p in unet.parameters()),
        "vae_params": sum(p.numel() for p in vae.parameters()),
        "whisper_encoder_params": sum(p.numel() for p in whisper.parameters()),
        "torch": torch.__version__,
    }
    result["total_ms_per_frame"] = round(
        result["unet_ms_per_frame"]
        + result["vae_encode_ms_per_frame"]
        + result["vae_decode_ms_per_frame"]
        + result["whisper_ms_per_frame_25fps"],
        1,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
