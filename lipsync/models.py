"""Registry of every weights file the project can use, and checks of a models directory.

No weights ship with the project (licences differ and several are non-commercial): users
put the files they want into ``models/`` (or ``$LIPSYNC_MODELS_DIR``). ``lipsync models``
prints :func:`format_models_table` of :func:`list_models`: which files are present, their
size and SHA-256, and whether that hash matches the published one.

A ``sha256`` of ``None`` means no hash is published for that exact file ("not pinned"):
such a file is reported as present but unverified. Pinned hashes were taken from public,
content-addressed copies (Hugging Face blob ids, release notes) and are named in
``models/README.md``; a different but equivalent copy (re-saved, re-exported) shows as
"differs", which is a warning, not an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lipsync.errors import ModelMissing

WAV2LIP_LICENCE = "Wav2Lip: non-commercial research/personal use only (commercial: Sync Labs)"


@dataclass(frozen=True)
class ModelFile:
    """One supported weights file."""

    name: str
    filename: str
    used_by: str
    sha256: str | None  # None: no published hash for this exact file ("not pinned")
    licence: str
    source: str  # where users get it
    size_bytes: int | None = None  # approximate, a hint for users and progress bars
    optional: bool = True


MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile(
        name="Wav2Lip GAN",
        filename="wav2lip_gan.pth",
        used_by="engine wav2lip (preferred checkpoint)",
        sha256=None,
        licence=WAV2LIP_LICENCE,
        source="https://github.com/Rudrabha/Wav2Lip#getting-the-weights",
        size_bytes=435_800_000,
    ),
    ModelFile(
        name="Wav2Lip",
        filename="wav2lip.pth",
        used_by="engine wav2lip",
        # Hugging Face blob id (= SHA-256) of checkpoints/wav2lip.pth in vinthony/SadTalker,
        # a copy of the Wav2Lip release.
        sha256="b78b681b68ad9fe6c6fb1debc6ff43ad05834a8af8a62ffc4167b7b34ef63c37",
        licence=WAV2LIP_LICENCE,
        source="https://github.com/Rudrabha/Wav2Lip#getting-the-weights "
        "(also huggingface.co/vinthony/SadTalker)",
        size_bytes=435_800_000,
    ),
    ModelFile(
        name="Wav2Lip 96 (ONNX)",
        filename="wav2lip_96.onnx",
        used_by="engine wav2lip-onnx",
        sha256=None,
        licence=WAV2LIP_LICENCE,
        source="https://github.com/facefusion/facefusion-assets/releases/download/"
        "models-3.0.0/wav2lip_96.onnx",
        size_bytes=145_000_000,
    ),
    ModelFile(
        name="Wav2Lip GAN 96 (ONNX)",
        filename="wav2lip_gan_96.onnx",
        used_by="engine wav2lip-onnx (preferred)",
        sha256=None,
        licence=WAV2LIP_LICENCE,
        source="https://github.com/facefusion/facefusion-assets/releases/download/"
        "models-3.0.0/wav2lip_gan_96.onnx",
        size_bytes=145_000_000,
    ),
    ModelFile(
        name="GFPGAN v1.4 (ONNX)",
        filename="GFPGANv1.4.onnx",
        used_by="enhancer onnx:models/GFPGANv1.4.onnx",
        # SHA-256 published with the gfpgan-v1.4.onnx release of clibdev/GFPGAN-onnxruntime-demo.
        sha256="497ff5b6d6008ec101b2714776ce39ce67a722a78720dfce84231e612e45053e",
        licence="Apache-2.0 (GFPGAN; bundled StyleGAN2 parts under their own licences)",
        source="https://github.com/clibdev/GFPGAN-onnxruntime-demo/releases/latest/download/"
        "gfpgan-v1.4.onnx (save as GFPGANv1.4.onnx)",
        size_bytes=340_300_000,
    ),
    ModelFile(
        name="CodeFormer (ONNX)",
        filename="codeformer.onnx",
        used_by="enhancer onnx:models/codeformer.onnx",
        sha256=None,
        licence="S-Lab License 1.0: non-commercial use only",
        source="https://github.com/facefusion/facefusion-assets/releases/download/"
        "models-3.0.0/codeformer.onnx",
        size_bytes=377_000_000,
    ),
    ModelFile(
        name="GPEN-BFR-512 (ONNX)",
        filename="GPEN-BFR-512.onnx",
        used_by="enhancer onnx:models/GPEN-BFR-512.onnx",
        sha256=None,
        licence="GPEN (yangxy/GPEN) terms: check upstream before commercial use",
        source="https://huggingface.co/datasets/Gourieff/ReActor/resolve/main/models/"
        "facerestore_models/GPEN-BFR-512.onnx",
        size_bytes=285_000_000,
    ),
    ModelFile(
        name="RestoreFormer++ (ONNX)",
        filename="RestoreFormer++.onnx",
        used_by="enhancer onnx:models/RestoreFormer++.onnx",
        sha256=None,
        licence="RestoreFormer++ (wzhouxiff/RestoreFormerPlusPlus) terms: check upstream",
        source="https://github.com/facefusion/facefusion-assets/releases/download/"
        "models-3.0.0/restoreformer_plus_plus.onnx (save as RestoreFormer++.onnx)",
        size_bytes=300_000_000,
    ),
    ModelFile(
        name="SyncNet v2",
        filename="syncnet_v2.model",
        used_by="evaluation (LSE-C / LSE-D lip-sync scores)",
        sha256=None,
        licence="MIT (joonson/syncnet_python)",
        source="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
        size_bytes=54_000_000,
    ),
    ModelFile(
        name="S3FD face detector",
        filename="s3fd.pth",
        used_by="optional face detector (face-alignment's S3FD)",
        # Hugging Face blob id of s3fd-619a316812.pth; its prefix is the one in the file name.
        sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
        licence="BSD-3-Clause (face-alignment)",
        source="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth "
        "(save as s3fd.pth)",
        size_bytes=89_800_000,
    ),
    ModelFile(
        name="FAN 2D landmarks (2DFAN4)",
        filename="2DFAN4-cd938726ad.zip",
        used_by="optional landmark detector (face-alignment)",
        # Hugging Face blob id; its prefix is the one in the file name.
        sha256="cd938726adb1f15f361263cce2db9cb820c42585fa8796ec72ce19107f369a46",
        licence="BSD-3-Clause (face-alignment)",
        source="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip",
        size_bytes=91_000_000,
    ),
)

MUSETALK_LICENCE = "MuseTalk: MIT code; weights available for any purpose, incl. commercial"
MUSETALK_SOURCE = (
    "https://huggingface.co/TMElyralab/MuseTalk (MuseTalk README, download_weights.sh)"
)
SD_VAE_LICENCE = "MIT (stabilityai/sd-vae-ft-mse model card)"
SD_VAE_SOURCE = "https://huggingface.co/stabilityai/sd-vae-ft-mse"
WHISPER_LICENCE = "Apache-2.0 (openai/whisper-tiny model card)"
WHISPER_SOURCE = "https://huggingface.co/openai/whisper-tiny"

# MuseTalk 1.5 keeps the published directory layout: the file names are paths under models/.
MUSETALK_FILES: tuple[ModelFile, ...] = (
    ModelFile(
        name="MuseTalk 1.5 UNet config",
        filename="musetalkV15/musetalk.json",
        used_by="engine musetalk",
        sha256=None,
        licence=MUSETALK_LICENCE,
        source=MUSETALK_SOURCE,
    ),
    ModelFile(
        name="MuseTalk 1.5 UNet",
        filename="musetalkV15/unet.pth",
        used_by="engine musetalk",
        sha256=None,
        licence=MUSETALK_LICENCE,
        source=MUSETALK_SOURCE,
        size_bytes=3_400_074_924,
    ),
    ModelFile(
        name="sd-vae-ft-mse config",
        filename="sd-vae/config.json",
        used_by="engine musetalk",
        sha256=None,
        licence=SD_VAE_LICENCE,
        source=SD_VAE_SOURCE + " (config.json, into models/sd-vae/)",
    ),
    ModelFile(
        name="sd-vae-ft-mse",
        filename="sd-vae/diffusion_pytorch_model.bin",
        used_by="engine musetalk",
        sha256=None,
        licence=SD_VAE_LICENCE,
        source=SD_VAE_SOURCE + " (diffusion_pytorch_model.bin, into models/sd-vae/)",
        size_bytes=334_707_217,
    ),
    ModelFile(
        name="whisper-tiny config",
        filename="whisper/config.json",
        used_by="engine musetalk",
        sha256=None,
        licence=WHISPER_LICENCE,
        source=WHISPER_SOURCE + " (config.json, into models/whisper/)",
    ),
    ModelFile(
        name="whisper-tiny",
        filename="whisper/pytorch_model.bin",
        used_by="engine musetalk (audio features)",
        sha256=None,
        licence=WHISPER_LICENCE,
        source=WHISPER_SOURCE + " (pytorch_model.bin, into models/whisper/)",
        size_bytes=151_095_027,
    ),
    ModelFile(
        name="whisper-tiny feature extractor",
        filename="whisper/preprocessor_config.json",
        used_by="engine musetalk",
        sha256=None,
        licence=WHISPER_LICENCE,
        source=WHISPER_SOURCE + " (preprocessor_config.json, into models/whisper/)",
    ),
)

MODEL_FILES = MODEL_FILES + MUSETALK_FILES

MODELS_BY_FILENAME: dict[str, ModelFile] = {m.filename: m for m in MODEL_FILES}


@dataclass(frozen=True)
class ModelStatus:
    """What is on disk for one registered file."""

    model: ModelFile
    path: Path
    present: bool
    size_bytes: int | None = None
    sha256: str | None = None
    verified: bool | None = None  # None: absent, not hashed, or no pinned hash

    @property
    def state(self) -> str:
        if not self.present:
            return "missing"
        if self.verified is True:
            return "verified"
        if self.verified is False:
            return "differs"
        if self.model.sha256 is None:
            return "present (not pinned)"
        return "present"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks (weights files are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def model_status(models_dir: Path, model: ModelFile, *, hash_files: bool = True) -> ModelStatus:
    path = Path(models_dir) / model.filename
    if not path.is_file():
        return ModelStatus(model, path, present=False)
    size = path.stat().st_size
    digest = sha256_file(path) if hash_files else None
    verified = None if digest is None or model.sha256 is None else digest == model.sha256
    return ModelStatus(model, path, True, size, digest, verified)


def list_models(models_dir: Path, *, hash_files: bool = True) -> list[ModelStatus]:
    """Status of every registered file in ``models_dir`` (hashing present files)."""
    return [model_status(models_dir, m, hash_files=hash_files) for m in MODEL_FILES]


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} MB"


def _hash_cell(status: ModelStatus) -> str:
    if status.sha256:
        return status.sha256[:16]
    if status.model.sha256 is None:
        return "not pinned"
    return f"pinned {status.model.sha256[:10]}"


def format_models_table(statuses: Iterable[ModelStatus]) -> str:
    """A plain-text table: file, state, size, sha256 (short), used by, licence."""
    statuses = list(statuses)
    header = ("file", "state", "size", "sha256", "used by", "licence")
    rows = [
        (
            s.model.filename,
            s.state,
            _size(s.size_bytes) if s.present else f"~{_size(s.model.size_bytes)}",
            _hash_cell(s),
            s.model.used_by,
            s.model.licence,
        )
        for s in statuses
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(not s.present for s in statuses):
        lines.append("")
        lines.append("Missing files go in the models directory; see models/README.md for sources.")
    return "\n".join(lines)


def require_model(models_dir: Path, filename: str) -> Path:
    """Path of ``filename`` in ``models_dir``; :class:`ModelMissing` saying where to get it."""
    path = Path(models_dir) / filename
    if path.is_file():
        return path
    model = MODELS_BY_FILENAME.get(filename)
    where = f"; get it from {model.source}" if model else ""
    licence = f" (licence: {model.licence})" if model else ""
    raise ModelMissing(
        f"{filename} not found in {models_dir}/: put it under models/ "
        f"(see models/README.md){where}{licence}"
    )
