"""The form of a weights file's declaration: :class:`ModelFile`.

The shared files (enhancers, detectors, the evaluation's SyncNet) are declared in
:mod:`lipsync.models`; each engine declares its own in its wing
(``lipsync/engines/<name>/wing.py``). :func:`lipsync.models.model_files` lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lipsync.errors import ModelMissing


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


def require_file(models_dir: Path, filename: str, model: ModelFile | None = None) -> Path:
    """Path of ``filename`` in ``models_dir``; :class:`ModelMissing` saying where to get it
    (``model``: its declaration, for the source and the licence)."""
    path = Path(models_dir) / filename
    if path.is_file():
        return path
    where = f"; get it from {model.source}" if model else ""
    licence = f" (licence: {model.licence})" if model else ""
    raise ModelMissing(
        f"{filename} not found in {models_dir}/: put it under models/ "
        f"(see models/README.md){where}{licence}"
    )
