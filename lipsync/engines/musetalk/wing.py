"""The ``musetalk`` engine's declaration: its options, the published files it loads in
MuseTalk's layout under ``models/``, and its pre-check (read without importing torch,
diffusers or transformers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lipsync.enginespec import EngineContext, EngineSpec
from lipsync.errors import ModelMissing
from lipsync.modelspec import Download, HubFile, ModelFile, require_file
from lipsync.optionspec import option

#: ``parsing_mode``'s values: the region of the face-parsing pasted back.
PARSING_MODES: dict[str, str] = {
    "jaw": "MuseTalk 1.5: the lower face grown down to the jaw, cheeks kept, nose left out",
    "raw": "the skin and lips as parsed",
    "neck": "the skin, lips and neck",
}


@dataclass(frozen=True)
class MuseTalkOptions:
    """The engine's own options, with the v1.5 scripts' defaults."""

    bbox_shift: int = option(
        0,
        help="MuseTalk: move the face crop's middle (the nose point) down by this many pixels, "
        "up when negative; changes how much of the face is regenerated (MuseTalk's bbox_shift)",
        label="Crop shift (MuseTalk)",
        minimum=-64,
        maximum=64,
        example="0",
        public=True,
        advanced=True,
    )
    extra_margin: int = option(
        10,
        help="MuseTalk 1.5: pixels added below the chin to the face crop: how far the jaw may "
        "move (MuseTalk's extra_margin)",
        label="Jaw margin (MuseTalk)",
        minimum=0,
        maximum=40,
        example="10",
        public=True,
        advanced=True,
    )
    parsing_mode: str = option(
        "jaw",
        help="MuseTalk: the region pasted back when the face-parsing weights "
        "(face-parse-bisent/79999_iter.pth) are in models/ (MuseTalk's parsing_mode)",
        label="Blend region (MuseTalk)",
        choices=lambda: PARSING_MODES,
        public=True,
        advanced=True,
    )
    left_cheek_width: int = option(
        90,
        help="MuseTalk, parsing_mode jaw: pixels (of the 512-pixel parsing) left of the face's "
        "middle where the jaw region may grow; beyond, the cheek is kept",
        label="Left cheek width (MuseTalk)",
        minimum=20,
        maximum=160,
        example="90",
        public=True,
        advanced=True,
    )
    right_cheek_width: int = option(
        90,
        help="MuseTalk, parsing_mode jaw: the same on the right of the face's middle",
        label="Right cheek width (MuseTalk)",
        minimum=20,
        maximum=160,
        example="90",
        public=True,
        advanced=True,
    )


MUSETALK_LICENCE = (
    "MuseTalk: code MIT; weights CreativeML OpenRAIL-M (Hugging Face model card: commercial "
    "use allowed within its use restrictions; the README: 'available for any purpose, even "
    "commercially')"
)
MUSETALK_SOURCE = (
    "https://huggingface.co/TMElyralab/MuseTalk (MuseTalk README, download_weights.sh)"
)
SD_VAE_LICENCE = "MIT (stabilityai/sd-vae-ft-mse model card)"
SD_VAE_SOURCE = "https://huggingface.co/stabilityai/sd-vae-ft-mse"
WHISPER_LICENCE = "Apache-2.0 (openai/whisper-tiny model card; openai/whisper's code: MIT)"
WHISPER_SOURCE = "https://huggingface.co/openai/whisper-tiny"
PARSER_LICENCE = (
    "MIT (zllrunning/face-parsing.PyTorch); trained on CelebAMask-HQ, whose images are for "
    "non-commercial research: check before commercial use"
)


def _file(
    name: str,
    filename: str,
    used_by: str,
    sha256: str,
    licence: str,
    source: str,
    size: int | None = None,
    download: Download | None = None,
    manual: str = "",
) -> ModelFile:
    # MuseTalk's weights, the VAE and whisper allow commercial use; the face parser's
    # training images (CelebAMask-HQ) are for non-commercial research: not settled.
    commercial = None if licence == PARSER_LICENCE else True
    return ModelFile(
        name,
        filename,
        used_by,
        sha256,
        licence,
        source,
        size,
        commercial=commercial,
        download=download,
        manual=manual,
    )


# The pinned revisions (full commit ids) of the hub repositories the files come from: the
# ones the pinned hashes below were quoted at.
MUSETALK_REPO = ("TMElyralab/MuseTalk", "2bcb936e2fddb4d86db4c62fd45b387d0c061571")
SD_VAE_REPO = ("stabilityai/sd-vae-ft-mse", "31f26fdeee1355a5c34592e401dd41e45d25a493")
WHISPER_REPO = ("openai/whisper-tiny", "169d4a4341b33bc18d8881c4b69c2e104e1cc0af")


def _hub(repo: tuple[str, str], path: str) -> HubFile:
    return HubFile(repo_id=repo[0], path=path, revision=repo[1])


# MuseTalk 1.5 keeps the published directory layout: the file names are paths under models/.
# SHA-256 pins: the Hugging Face Git-LFS object ids of the published files (for the small
# configs, the files' own SHA-256), as quoted alike by several independent public download
# manifests at TMElyralab/MuseTalk@2bcb936e / 3ef28bc5, stabilityai/sd-vae-ft-mse@31f26fde and
# openai/whisper-tiny@169d4a43 (sizes agree with the files' published sizes); 79999_iter.pth's
# is also the one clibdev/face-parsing.PyTorch's README gives for the original model. Another
# revision of a small config shows as "differs"; the loaders check the content strictly.
UNET_CONFIG = _file(
    "MuseTalk 1.5 UNet config",
    "musetalkV15/musetalk.json",
    "engine musetalk",
    "5b6923aee04d71692e0e9846c471e0a4ea07a4f686d39545e472bd4ba17e1b47",
    MUSETALK_LICENCE,
    MUSETALK_SOURCE,
    download=_hub(MUSETALK_REPO, "musetalkV15/musetalk.json"),
)
UNET = _file(
    "MuseTalk 1.5 UNet",
    "musetalkV15/unet.pth",
    "engine musetalk",
    "7ebf6c98c181e20838e4c0054e96e944ac60d5d692cc01db42839fe11b787007",
    MUSETALK_LICENCE,
    MUSETALK_SOURCE,
    3_400_074_924,
    download=_hub(MUSETALK_REPO, "musetalkV15/unet.pth"),
)
VAE_CONFIG = _file(
    "sd-vae-ft-mse config",
    "sd-vae/config.json",
    "engine musetalk",
    "92d3dfb746fca211a2c9e019e285f8597412211728dce3c5bcf4eda0f2d62e7e",
    SD_VAE_LICENCE,
    SD_VAE_SOURCE + " (config.json, into models/sd-vae/)",
    download=_hub(SD_VAE_REPO, "config.json"),
)
VAE = _file(
    "sd-vae-ft-mse",
    "sd-vae/diffusion_pytorch_model.bin",
    "engine musetalk",
    "1b4889b6b1d4ce7ae320a02dedaeff1780ad77d415ea0d744b476155c6377ddc",
    SD_VAE_LICENCE,
    SD_VAE_SOURCE + " (diffusion_pytorch_model.bin, into models/sd-vae/)",
    334_707_217,
    download=_hub(SD_VAE_REPO, "diffusion_pytorch_model.bin"),
)
WHISPER_CONFIG = _file(
    "whisper-tiny config",
    "whisper/config.json",
    "engine musetalk",
    "ffdccec4f3211f4c63310f2b7098f309fe70f3952cedc5e4d11e43f5b2379b98",
    WHISPER_LICENCE,
    WHISPER_SOURCE + " (config.json, into models/whisper/)",
    download=_hub(WHISPER_REPO, "config.json"),
)
WHISPER = _file(
    "whisper-tiny",
    "whisper/pytorch_model.bin",
    "engine musetalk (audio features)",
    "9607f98a2b22d9e229ae43c52ecea79dcede9e0c5cfae67e8da6eda86d8aac1d",
    WHISPER_LICENCE,
    WHISPER_SOURCE + " (pytorch_model.bin, into models/whisper/)",
    151_095_027,
    download=_hub(WHISPER_REPO, "pytorch_model.bin"),
)
WHISPER_PREPROCESSOR = _file(
    "whisper-tiny feature extractor",
    "whisper/preprocessor_config.json",
    "engine musetalk",
    "9b5cd03a36fbb8a627c64d98a5b5b126ead95a77720723944487311f0110b666",
    WHISPER_LICENCE,
    WHISPER_SOURCE + " (preprocessor_config.json, into models/whisper/)",
    download=_hub(WHISPER_REPO, "preprocessor_config.json"),
)
PARSER = _file(
    "face-parsing BiSeNet",
    "face-parse-bisent/79999_iter.pth",
    "engine musetalk, optional: the reference's face-parsing paste mask",
    "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
    PARSER_LICENCE,
    "https://github.com/zllrunning/face-parsing.PyTorch (README's Google Drive link, as "
    "MuseTalk's download_weights.sh fetches it)",
    53_289_463,
    manual="published only as a Google Drive link (no pinned, scriptable download); optional: "
    "without it a landmark mask is used",
)

#: Every file the engine needs (the parser is optional: without it, a landmark mask).
REQUIRED = (UNET_CONFIG, UNET, VAE_CONFIG, VAE, WHISPER_CONFIG, WHISPER, WHISPER_PREPROCESSOR)


def precheck(ctx: EngineContext) -> None:
    """The UNet weights given (``ctx.checkpoint``) exist, and every other needed file is in
    ``models/``; the first one missing is named, before gigabytes are loaded."""
    if ctx.checkpoint is not None and not Path(ctx.checkpoint).is_file():
        raise ModelMissing(
            f"checkpoint {Path(ctx.checkpoint)} for engine musetalk not found (the UNet "
            f"weights, by default {UNET.filename} under models/; see models/README.md)"
        )
    for model in REQUIRED:
        if not (ctx.checkpoint is not None and model is UNET):
            require_file(ctx.models_dir, model.filename, model)


ENGINE = EngineSpec(
    name="musetalk",
    factory="lipsync.engines.musetalk.engine:MuseTalkEngine",
    summary="MuseTalk 1.5: 256x256 latent inpainting (unet.pth, sd-vae, whisper-tiny); "
    "weights usable commercially; needs lipsync[musetalk]",
    about="MuseTalk 1.5 (`pip install lipsync[musetalk]`: diffusers + transformers): a "
    "256x256 face crop, its lower half masked, encoded by the ft-MSE VAE with the whole crop "
    "into 8 latent channels; the UNet runs once at timestep 0 with whisper-tiny's encoder "
    "states (all layers, 2 frames of context each side) as cross-attention; the VAE decodes "
    "and the face is pasted through the reference's face-parsing mask when "
    "`face-parse-bisent/79999_iter.pth` is present (`--parsing-mode`, `--left-cheek-width`, "
    "`--right-cheek-width`), else a feathered mouth-and-jaw mask; `--bbox-shift` and "
    "`--extra-margin` as in MuseTalk. Weights usable commercially (CreativeML OpenRAIL-M). "
    "Batched; fp16 on CUDA with `--fp16`; CPU works but is slow (seconds per frame, "
    "[docs/BENCHMARKS.md](docs/BENCHMARKS.md)).",
    options=MuseTalkOptions,
    reads=("checkpoint", "batch_size", "fp16"),
    weights=(*REQUIRED, PARSER),
    optional_weights=(PARSER.filename,),
    precheck=precheck,
)
