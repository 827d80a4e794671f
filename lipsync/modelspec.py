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
class HubFile:
    """A file on the Hugging Face hub: ``repo_id`` at ``revision`` (a commit id, or a tag or
    branch where no commit is pinned), ``path`` in the repository."""

    repo_id: str
    path: str
    revision: str
    repo_type: str = "model"  # model | dataset | space

    @property
    def pinned(self) -> bool:
        """The revision is a full commit id (a tag or branch may move)."""
        return len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)

    def url(self, endpoint: str = "https://huggingface.co") -> str:
        """Its ``resolve`` URL on ``endpoint`` (the hub, or a mirror: ``$HF_ENDPOINT``)."""
        prefix = {"dataset": "datasets/", "space": "spaces/"}.get(self.repo_type, "")
        base = endpoint.rstrip("/")
        return f"{base}/{prefix}{self.repo_id}/resolve/{self.revision}/{self.path}"

    def describe(self) -> str:
        prefix = {"dataset": "datasets/", "space": "spaces/"}.get(self.repo_type, "")
        rev = self.revision[:12] if self.pinned else f"{self.revision} (not pinned)"
        return f"hf://{prefix}{self.repo_id}@{rev}/{self.path}"


@dataclass(frozen=True)
class UrlFile:
    """A file at a plain https URL."""

    url: str

    def describe(self) -> str:
        return self.url


#: Where ``lipsync models pull`` fetches a file from.
Download = HubFile | UrlFile


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
    # Where ``lipsync models pull`` fetches it (a hub file at a pinned revision, or a URL);
    # None: no download that may be automated, ``manual`` says why (``source`` says where).
    download: Download | None = None
    manual: str = ""


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
