"""The weights registry: listing, hashing, verification, the table and require_model."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import pytest

import lipsync.models as models
from lipsync.errors import ModelMissing
from lipsync.models import (
    format_models_table,
    list_models,
    model_by_filename,
    model_files,
    require_model,
    sha256_file,
)

EXPECTED_FILES = {
    "wav2lip.pth",
    "wav2lip_gan.pth",
    "wav2lip_96.onnx",
    "wav2lip_gan_96.onnx",
    "GFPGANv1.4.onnx",
    "codeformer.onnx",
    "GPEN-BFR-512.onnx",
    "RestoreFormer++.onnx",
    "syncnet_v2.model",
    "s3fd.pth",
}


def test_registry_covers_every_supported_file() -> None:
    names = {m.filename for m in model_files()}
    assert names >= EXPECTED_FILES
    assert any(name.startswith("2DFAN4") for name in names)
    assert len(names) == len(model_files())  # no duplicates
    for m in model_files():
        assert m.name and m.used_by and m.licence and m.source
        assert m.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", m.sha256)
        assert m.size_bytes is None or m.size_bytes > 1_000_000
    assert "non-commercial" in model_by_filename()["wav2lip_gan.pth"].licence


def test_pinned_hashes_agree_with_torch_hub_file_names() -> None:
    # face-alignment's file names carry the first hex digits of their SHA-256.
    assert model_by_filename()["s3fd.pth"].sha256.startswith("619a316812")  # type: ignore[union-attr]
    fan = next(m for m in model_files() if m.filename.startswith("2DFAN4"))
    assert fan.sha256 is not None and fan.filename.split("-")[1].startswith(fan.sha256[:10])


def test_sha256_file_streams(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 2 chunks of 1 MiB
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=7) == hashlib.sha256(data).hexdigest()


def test_list_models_reports_presence_and_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = b"pretend weights"
    pinned = replace(model_by_filename()["wav2lip.pth"], sha256=hashlib.sha256(good).hexdigest())
    registry = tuple(pinned if m.filename == "wav2lip.pth" else m for m in model_files())
    monkeypatch.setattr(models, "model_files", lambda: registry)

    (tmp_path / "wav2lip.pth").write_bytes(good)
    (tmp_path / "s3fd.pth").write_bytes(b"a different file")  # pinned, will not match
    (tmp_path / "codeformer.onnx").write_bytes(b"unpinned")

    statuses = {s.model.filename: s for s in models.list_models(tmp_path)}
    assert set(statuses) == {m.filename for m in registry}

    ok = statuses["wav2lip.pth"]
    assert ok.present and ok.verified is True and ok.state == "verified"
    assert ok.size_bytes == len(good) and ok.sha256 == hashlib.sha256(good).hexdigest()

    bad = statuses["s3fd.pth"]
    assert bad.present and bad.verified is False and bad.state == "differs"

    unpinned = statuses["codeformer.onnx"]
    assert unpinned.present and unpinned.verified is None
    assert unpinned.state == "present (not pinned)"

    absent = statuses["wav2lip_gan.pth"]
    assert not absent.present and absent.verified is None and absent.sha256 is None
    assert absent.state == "missing"

    quick = {s.model.filename: s for s in models.list_models(tmp_path, hash_files=False)}
    assert quick["wav2lip.pth"].sha256 is None and quick["wav2lip.pth"].verified is None


def test_table_lists_every_file(tmp_path: Path) -> None:
    (tmp_path / "codeformer.onnx").write_bytes(b"x" * 2_000_000)
    table = format_models_table(list_models(tmp_path))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["file", "state", "size"]
    for m in model_files():
        assert m.filename in table
    assert "present (not pinned)" in table and "missing" in table
    assert "2.0 MB" in table
    assert "models/README.md" in table


def test_require_model(tmp_path: Path) -> None:
    (tmp_path / "wav2lip_gan.pth").write_bytes(b"x")
    assert require_model(tmp_path, "wav2lip_gan.pth") == tmp_path / "wav2lip_gan.pth"
    with pytest.raises(ModelMissing) as err:
        require_model(tmp_path, "GFPGANv1.4.onnx")
    message = err.value.message
    assert "GFPGANv1.4.onnx" in message and "models/" in message and "README" in message
    assert "github.com/clibdev" in message
    with pytest.raises(ModelMissing, match="custom.onnx"):
        require_model(tmp_path, "custom.onnx")


def test_readme_documents_every_file() -> None:
    readme = Path(__file__).resolve().parents[1] / "models" / "README.md"
    text = readme.read_text(encoding="utf-8")
    for m in model_files():
        assert m.filename in text, m.filename
        if m.sha256:
            assert m.sha256 in text, m.filename
    assert "lipsync models" in text
