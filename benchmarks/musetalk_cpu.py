"""CPU cost of the MuseTalk 1.5 networks at their published sizes, with random weights.

Builds the UNet from musetalkV15/musetalk.json's values (860 M parameters), the ft-MSE
VAE from sd-vae-ft-mse's config and whisper-tiny's encoder, fills them with small random
numbers (no weights are needed to time them) and times, per frame:

* the UNet: one call at timestep 0 on 8x32x32 latents with 50x384 audio tokens;
* the VAE encode (the engine encodes each crop twice: masked and whole) and decode at
  256x256;
* the whisper features: log-mel + encoder of a 30 s segment, divided by its 750 frames
  at 25 fps;
* the face-parsing BiSeNet (the engine runs it when ``face-parse-bisent/79999_iter.pth`` is
  present): the 512x512 parse of one blend square of a 720p frame and its jaw-mode mask.

Usage: ``python -m benchmarks.musetalk_cpu [--batch 4] [--repeats 3] [--threads N]
[--parts unet,vae,whisper,parser]``.
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


PARTS = ("unet", "vae", "whisper", "parser")


def _networks() -> dict[str, torch.nn.Module]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from lipsync.engines.musetalk.parsing import BiSeNet

    with torch.device("meta"):
        nets = {
            "unet": UNet2DConditionModel.from_config(PUBLISHED_UNET),
            "vae": AutoencoderKL.from_config(PUBLISHED_VAE),
            "whisper": WhisperEncoder(WhisperConfig(**WHISPER_TINY)),
            "parser": BiSeNet(),
        }
    return {name: _random(net) for name, net in nets.items()}


def _timings(
    nets: dict[str, torch.nn.Module], parts: list[str], b: int, repeats: int
) -> dict[str, float]:
    from transformers import WhisperFeatureExtractor

    from lipsync.engines.musetalk.blendmask import FaceParser

    unet, vae, whisper = nets["unet"], nets["vae"], nets["whisper"]
    images = torch.rand(b, 3, 256, 256) * 2 - 1
    speech = (0.1 * np.random.default_rng(0).standard_normal(16000 * 30)).astype(np.float32)
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    parser = FaceParser(nets["parser"])
    t0 = torch.tensor([0])

    def whisper_30s() -> None:
        extractor = WhisperFeatureExtractor()
        feats = extractor(speech, return_tensors="pt", sampling_rate=16000).input_features
        whisper(feats, output_hidden_states=True)

    jobs: dict[str, Callable[[], Any]] = {
        "unet": lambda: unet(
            torch.randn(b, 8, 32, 32), t0, encoder_hidden_states=torch.randn(b, 50, 384)
        ),
        "vae_encode": lambda: vae.encode(images).latent_dist.sample(),  # type: ignore[operator]
        "vae_decode": lambda: vae.decode(torch.randn(b, 4, 32, 32)),  # type: ignore[operator]
        "whisper": whisper_30s,
        "parser": lambda: parser.blend_mask(frame, (540, 200, 740, 430)),
    }
    wanted = [k for k in jobs if k.split("_")[0] in parts]
    with torch.inference_mode():
        return {k: _time(jobs[k], repeats) for k in wanted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS)
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = [p for p in args.parts.split(",") if p]
    nets = _networks()
    b = args.batch
    seconds = _timings(nets, parts, b, args.repeats)
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "batch": b}
    per_frame = {
        "unet": ("unet_ms_per_frame", 1000 / b),
        "vae_encode": ("vae_encode_ms_per_frame", 2000 / b),  # masked + whole crop
        "vae_decode": ("vae_decode_ms_per_frame", 1000 / b),
        "whisper": ("whisper_ms_per_frame_25fps", 1000 / 750),
        "parser": ("parser_mask_ms_per_frame", 1000),
    }
    for key, secs in seconds.items():
        name, scale = per_frame[key]
        result[name] = round(secs * scale, 2 if key == "whisper" else 1)
    if "whisper" in seconds:
        result["whisper_ms_per_30s_segment"] = round(1000 * seconds["whisper"], 1)
    for name, net in nets.items():
        result[f"{name}_params"] = sum(p.numel() for p in net.parameters())
    result["total_ms_per_frame"] = round(
        sum(v for k, v in result.items() if k.endswith("_ms_per_frame") or k.endswith("25fps")), 1
    )
    result["torch"] = torch.__version__
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
