"""Every weights file the project can use, and checks of a models directory.

No weights ship with the project (licences differ and several are non-commercial): users
put the files they want into ``models/`` (or ``$LIPSYNC_MODELS_DIR``). ``lipsync models``
prints :func:`format_models_table` of :func:`list_models`: which files are present, their
size and SHA-256, and whether that hash matches the published one.

Each engine declares its own weights in its wing (``lipsync/engines/<name>/wing.py``); the
files several parts share (face enhancers, detectors and landmarks, the evaluation's
SyncNet) are declared here, in :data:`SHARED_FILES`. :func:`model_files` lists both.

A ``sha256`` of ``None`` means no hash is published for that exact file ("not pinned"):
such a file is reported as present but unverified. Pinned hashes were taken from public,
content-addressed copies (Hugging Face blob ids, release notes) and are named in
``models/README.md``; a different but equivalent copy (re-saved, re-exported) shows as
"differs", which is a warning, not an error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lipsync.modelspec import HubFile, UrlFile, require_file
from lipsync.modelspec import ModelFile as ModelFile
from lipsync.registry import engine_weights


def default_models_dir() -> Path:
    """``$LIPSYNC_MODELS_DIR`` or ``./models`` (resolved when called, never at import)."""
    return Path(os.environ.get("LIPSYNC_MODELS_DIR", "models"))


_ASSETS = "https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0/"
#: MediaPipe's face mesh under the models folder: the default landmark model's file.
MESH_MODEL_FILE = "mediapipe/face_landmark.tflite"

#: The files no one engine owns.
SHARED_FILES: tuple[ModelFile, ...] = (
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
        download=UrlFile(
            "https://github.com/clibdev/GFPGAN-onnxruntime-demo/releases/latest/download/"
            "gfpgan-v1.4.onnx"
        ),
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
        download=UrlFile(_ASSETS + "codeformer.onnx"),
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
        # No commit of the dataset is pinned here (none is quoted with a hash): its main branch.
        download=HubFile(
            "Gourieff/ReActor",
            "models/facerestore_models/GPEN-BFR-512.onnx",
            revision="main",
            repo_type="dataset",
        ),
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
        download=UrlFile(_ASSETS + "restoreformer_plus_plus.onnx"),
    ),
    ModelFile(
        name="SyncNet v2",
        filename="syncnet_v2.model",
        used_by="evaluation (LSE-C / LSE-D lip-sync scores)",
        sha256=None,
        licence="MIT (joonson/syncnet_python)",
        source="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
        size_bytes=54_000_000,
        download=UrlFile("https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"),
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
        download=UrlFile("https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"),
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
        download=UrlFile("https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip"),
    ),
    # The clean landmark model (lipsync.face.landmarks): taken out of the mediapipe wheel by
    # scripts/bootstrap.sh, so it is normally present; listed here to be verified like the rest.
    ModelFile(
        name="MediaPipe face mesh",
        filename=MESH_MODEL_FILE,
        used_by="landmarks mediapipe (the face tracker's 68 points)",
        # SHA-256 of mediapipe/modules/face_landmark/face_landmark.tflite in
        # mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl (PyPI).
        sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        licence="Apache-2.0 (google/mediapipe)",
        source="scripts/bootstrap.sh: from the mediapipe 0.10.21 wheel on PyPI "
        "(mediapipe/modules/face_landmark/face_landmark.tflite)",
        size_bytes=1_242_398,
        commercial=True,
        manual="taken out of the hash-pinned mediapipe wheel by scripts/bootstrap.sh "
        "(scripts/mediapipe_models.sh), not downloaded on its own",
    ),
)


def model_files() -> tuple[ModelFile, ...]:
    """Every registered file: the engines' own (in the registry's order), then the shared."""
    engines = engine_weights()
    names = {m.filename for m in engines}
    return engines + tuple(m for m in SHARED_FILES if m.filename not in names)


def model_by_filename() -> dict[str, ModelFile]:
    """:func:`model_files` by file name (a path under ``models/``)."""
    return {m.filename: m for m in model_files()}


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
    return [model_status(models_dir, m, hash_files=hash_files) for m in model_files()]


def size_text(n: int | None) -> str:
    """``435.8 MB``; ``-`` for an unknown size."""
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
            size_text(s.size_bytes) if s.present else f"~{size_text(s.model.size_bytes)}",
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
    return require_file(models_dir, filename, model_by_filename().get(filename))
