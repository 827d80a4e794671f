"""The ONNX Wav2Lip engine: the same patches as the PyTorch engine for the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from lipsync.engines import create_engine
from lipsync.engines.base import EngineContext
from lipsync.engines.wav2lip import Wav2LipEngine
from lipsync.engines.wav2lip.export import export_onnx
from lipsync.engines.wav2lip.net import Wav2Lip
from lipsync.engines.wav2lip_onnx import Wav2LipOnnxEngine
from lipsync.errors import ModelMismatch, ModelMissing
from lipsync.types import FaceObs, Patch
from tests.engines._wav2lip_helpers import (
    FPS,
    speech_like,
)
from tests.media_factory import astronaut

N = 6


class _NhwcFaceFirst(torch.nn.Module):
    """The generator behind NHWC inputs given face first: another plausible export."""

    def __init__(self, net: Wav2Lip) -> None:
        super().__init__()
        self.net = net

    def forward(self, face: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel.permute(0, 3, 1, 2), face.permute(0, 3, 1, 2))


MODELS = ("wav2lip", "wav2lip-onnx")  # models_dir, model and face: tests/engines/conftest.py


def _run(engine_name: str, ctx: EngineContext, face: FaceObs) -> list[Patch]:
    engine = create_engine(engine_name, ctx)
    engine.prepare(speech_like(1.0, seed=5), FPS, N)
    return engine.generate([astronaut()] * N, [face] * N, list(range(N)))


def _assert_close(a: list[Patch], b: list[Patch]) -> None:
    assert len(a) == len(b)
    for pa, pb in zip(a, b, strict=True):
        assert (pa.x1, pa.y1, pa.image.shape) == (pb.x1, pb.y1, pb.image.shape)
        diff = np.abs(pa.image.astype(int) - pb.image.astype(int))
        assert diff.max() <= 2, f"max diff {diff.max()}"
        assert (diff == 0).mean() > 0.98


def test_onnx_engine_matches_torch_engine(models_dir: Path, face: FaceObs) -> None:
    ctx = EngineContext(device="cpu", models_dir=models_dir, batch_size=4)
    torch_patches = _run("wav2lip", ctx, face)
    onnx_patches = _run("wav2lip-onnx", ctx, face)
    _assert_close(torch_patches, onnx_patches)
    assert all(p.mask is not None and np.all(p.mask == 1.0) for p in onnx_patches)
    assert onnx_patches[0].image.std() > 5


def test_info_reports_file_and_cpu_provider(models_dir: Path) -> None:
    engine = Wav2LipOnnxEngine(EngineContext(device="cpu", models_dir=models_dir))
    info = engine.info()
    assert info["checkpoint"] == "wav2lip_gan_96.onnx"
    assert info["device"] == "cpu" and info["providers"] == ["CPUExecutionProvider"]


def test_fixed_batch_and_nhwc_exports(
    tmp_path: Path, model: Wav2Lip, models_dir: Path, face: FaceObs
) -> None:
    reference = _run("wav2lip-onnx", EngineContext(device="cpu", models_dir=models_dir), face)

    fixed = export_onnx(model, tmp_path / "wav2lip_96.onnx", dynamic_batch=False)
    batch_dim = onnx.load(str(fixed)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_value == 1
    ctx = EngineContext(device="cpu", models_dir=tmp_path, batch_size=4)
    _assert_close(reference, _run("wav2lip-onnx", ctx, face))

    nhwc = export_onnx(
        _NhwcFaceFirst(model),
        tmp_path / "nhwc.onnx",
        inputs=(torch.zeros(1, 96, 96, 6), torch.zeros(1, 80, 16, 1)),
        names=("target", "source"),
    )
    ctx = EngineContext(device="cpu", checkpoint=nhwc, models_dir=tmp_path, batch_size=4)
    _assert_close(reference, _run("wav2lip-onnx", ctx, face))


def _identity_model(path: Path, shape: list[int]) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_wrong_model_raises_mismatch(tmp_path: Path) -> None:
    _identity_model(tmp_path / "wav2lip_gan_96.onnx", [1, 3, 512, 512])
    with pytest.raises(ModelMismatch, match="not a Wav2Lip 96 model"):
        Wav2LipOnnxEngine(EngineContext(device="cpu", models_dir=tmp_path))


def test_garbage_file_raises_mismatch(tmp_path: Path) -> None:
    (tmp_path / "wav2lip_96.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelMismatch, match="cannot be loaded by onnxruntime"):
        Wav2LipOnnxEngine(EngineContext(device="cpu", models_dir=tmp_path))


def test_missing_model_raises_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as err:
        Wav2LipOnnxEngine(EngineContext(device="cpu", models_dir=tmp_path))
    assert "wav2lip_gan_96.onnx" in err.value.message and "models/" in err.value.message


def test_torch_engine_not_needed_for_onnx(models_dir: Path) -> None:
    # Both engines coexist with the same files; the PyTorch one ignores the ONNX file.
    engine = Wav2LipEngine(EngineContext(device="cpu", models_dir=models_dir))
    assert engine.info()["checkpoint"] == "wav2lip_gan.pth"
