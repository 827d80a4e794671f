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
    # Commercial use: True allowed, False excluded (refused in commercial-only mode, see
    # lipsync.licences), None not settled (the model's or its training data's terms need
    # checking upstream).
    commercial: bool | None = None


MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile(
        name="Wav2Lip GAN",
        filename="wav2lip_gan.pth",
        used_by="engine wav2lip (preferred checkpoint)",
        sha256=None,
        licence=WAV2LIP_LICENCE,
        commercial=False,
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
        commercial=False,
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
        commercial=False,
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
        commercial=False,
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
        commercial=False,
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


def _musetalk(
    name: str,
    filename: str,
    used_by: str,
    sha256: str,
    licence: str,
    source: str,
    size: int | None = None,
) -> ModelFile:
    # MuseTalk's weights, the VAE and whisper allow commercial use; the face parser's
    # training images (CelebAMask-HQ) are for non-commercial research: not settled.
    commercial = None if licence == PARSER_LICENCE else True
    return ModelFile(name, filename, used_by, sha256, licence, source, size, commercial=commercial)


# MuseTalk 1.5 keeps the published directory layout: the file names are paths under models/.
# SHA-256 pins: the Hugging Face Git-LFS object ids of the published files (for the small
# configs, the files' own SHA-256), as quoted alike by several independent public download
# manifests at TMElyralab/MuseTalk@2bcb936e / 3ef28bc5, stabilityai/sd-vae-ft-mse@31f26fde and
# openai/whisper-tiny@169d4a43 (sizes agree with the files' published sizes); 79999_iter.pth's
# is also the one clibdev/face-parsing.PyTorch's README gives for the original model. Another
# revision of a small config shows as "differs"; the loaders check the content strictly.
MUSETALK_FILES: tuple[ModelFile, ...] = (
    _musetalk(
        "MuseTalk 1.5 UNet config",
        "musetalkV15/musetalk.json",
        "engine musetalk",
        "5b6923aee04d71692e0e9846c471e0a4ea07a4f686d39545e472bd4ba17e1b47",
        MUSETALK_LICENCE,
        MUSETALK_SOURCE,
    ),
    _musetalk(
        "MuseTalk 1.5 UNet",
        "musetalkV15/unet.pth",
        "engine musetalk",
        "7ebf6c98c181e20838e4c0054e96e944ac60d5d692cc01db42839fe11b787007",
        MUSETALK_LICENCE,
        MUSETALK_SOURCE,
        3_400_074_924,
    ),
    _musetalk(
        "sd-vae-ft-mse config",
        "sd-vae/config.json",
        "engine musetalk",
        "92d3dfb746fca211a2c9e019e285f8597412211728dce3c5bcf4eda0f2d62e7e",
        SD_VAE_LICENCE,
        SD_VAE_SOURCE + " (config.json, into models/sd-vae/)",
    ),
    _musetalk(
        "sd-vae-ft-mse",
        "sd-vae/diffusion_pytorch_model.bin",
        "engine musetalk",
        "1b4889b6b1d4ce7ae320a02dedaeff1780ad77d415ea0d744b476155c6377ddc",
        SD_VAE_LICENCE,
        SD_VAE_SOURCE + " (diffusion_pytorch_model.bin, into models/sd-vae/)",
        334_707_217,
    ),
    _musetalk(
        "whisper-tiny config",
        "whisper/config.json",
        "engine musetalk",
        "ffdccec4f3211f4c63310f2b7098f309fe70f3952cedc5e4d11e43f5b2379b98",
        WHISPER_LICENCE,
        WHISPER_SOURCE + " (config.json, into models/whisper/)",
    ),
    _musetalk(
        "whisper-tiny",
        "whisper/pytorch_model.bin",
        "engine musetalk (audio features)",
        "9607f98a2b22d9e229ae43c52ecea79dcede9e0c5cfae67e8da6eda86d8aac1d",
        WHISPER_LICENCE,
        WHISPER_SOURCE + " (pytorch_model.bin, into models/whisper/)",
        151_095_027,
    ),
    _musetalk(
        "whisper-tiny feature extractor",
        "whisper/preprocessor_config.json",
        "engine musetalk",
        "9b5cd03a36fbb8a627c64d98a5b5b126ead95a77720723944487311f0110b666",
        WHISPER_LICENCE,
        WHISPER_SOURCE + " (preprocessor_config.json, into models/whisper/)",
    ),
    _musetalk(
        "face-parsing BiSeNet",
        "face-parse-bisent/79999_iter.pth",
        "engine musetalk, optional: the reference's face-parsing paste mask",
        "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
        PARSER_LICENCE,
        "https://github.com/zllrunning/face-parsing.PyTorch (README's Google Drive link, as "
        "MuseTalk's download_weights.sh fetches it)",
        53_289_463,
    ),
)

# The clean landmark model (lipsync.face.landmarks): taken out of the mediapipe wheel by
# scripts/bootstrap.sh, so it is normally present; listed here to be verified like the rest.
MEDIAPIPE_FILES: tuple[ModelFile, ...] = (
    ModelFile(
        name="MediaPipe face mesh",
        filename="mediapipe/face_landmark.tflite",
        used_by="landmarks mediapipe (the face tracker's 68 points)",
        # SHA-256 of mediapipe/modules/face_landmark/face_landmark.tflite in
        # mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl (PyPI).
        sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        licence="Apache-2.0 (google/mediapipe)",
        source="scripts/bootstrap.sh: from the mediapipe 0.10.21 wheel on PyPI "
        "(mediapipe/modules/face_landmark/face_landmark.tflite)",
        size_bytes=1_242_398,
        commercial=True,
    ),
)

MODEL_FILES = MODEL_FILES + MUSETALK_FILES + MEDIAPIPE_FILES

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


COMMERCIAL_TEXT: dict[bool | None, str] = {True: "yes", False: "NO", None: "check"}


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
    """A plain-text table: file, state, size, sha256 (short), used by, commercial use
    (yes / NO / check), licence."""
    statuses = list(statuses)
    header = ("file", "state", "size", "sha256", "used by", "commercial", "licence")
    rows = [
        (
            s.model.filename,
            s.state,
            _size(s.size_bytes) if s.present else f"~{_size(s.model.size_bytes)}",
            _hash_cell(s),
            s.model.used_by,
            COMMERCIAL_TEXT[s.model.commercial],
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
