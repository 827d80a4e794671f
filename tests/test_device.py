"""Device selection for torch and onnxruntime, and the CPU thread budget."""

from __future__ import annotations

import pytest

from lipsync.device import cpu_threads, onnx_providers, resolve_device
from lipsync.errors import DeviceUnavailable, InvalidOption


def test_resolve_device() -> None:
    torch = pytest.importorskip("torch")
    assert resolve_device("cpu") == "cpu"
    has_cuda = torch.cuda.is_available()
    assert resolve_device("auto") == ("cuda" if has_cuda else "cpu")
    if has_cuda:
        assert resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(DeviceUnavailable):
            resolve_device("cuda")
    with pytest.raises(InvalidOption):
        resolve_device("tpu")


def test_onnx_providers() -> None:
    ort = pytest.importorskip("onnxruntime")
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    auto = onnx_providers("auto")
    assert auto[-1] == "CPUExecutionProvider"
    gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
    if gpu & set(ort.get_available_providers()):
        assert onnx_providers("cuda")[0] in gpu
    else:
        assert auto == ["CPUExecutionProvider"]
        with pytest.raises(DeviceUnavailable):
            onnx_providers("cuda")


def test_cpu_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIPSYNC_THREADS", raising=False)
    assert cpu_threads() >= 1
    monkeypatch.setenv("LIPSYNC_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.setenv("LIPSYNC_THREADS", "zero")
    assert cpu_threads() >= 1
