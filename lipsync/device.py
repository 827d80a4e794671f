"""Compute-device selection shared by the engines and enhancers.

Nothing heavy is imported at module level: torch and onnxruntime are imported inside the
functions that need them, so the API process can import this module without either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lipsync.errors import DeviceUnavailable, InvalidOption, ModelMismatch

#: Compute devices: name -> meaning, declared with the ``device`` option.
from lipsync.options import DEVICES as DEVICES


def _check(requested: str) -> str:
    if requested not in DEVICES:
        raise InvalidOption(f"device must be one of {', '.join(DEVICES)}, not {requested!r}")
    return requested


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` must be available."""
    _check(requested)
    if requested == "cpu":
        return "cpu"
    import torch

    available = bool(torch.cuda.is_available())
    if requested == "cuda" and not available:
        raise DeviceUnavailable("device cuda was requested but torch sees no CUDA GPU")
    return "cuda" if available else "cpu"


def onnx_providers(requested: str) -> list[str]:
    """onnxruntime execution providers for a device request, best first.

    ``cpu`` -> CPU only. ``auto`` -> TensorRT and/or CUDA when this onnxruntime build offers
    them, then CPU. ``cuda`` -> like ``auto`` but a build without a GPU provider raises
    :class:`DeviceUnavailable`.
    """
    _check(requested)
    if requested == "cpu":
        return ["CPUExecutionProvider"]
    available = set(onnxruntime_module().get_available_providers())
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if requested == "cuda" and not gpu:
        raise DeviceUnavailable(
            "device cuda was requested but onnxruntime has no CUDA/TensorRT provider "
            "(install onnxruntime-gpu)"
        )
    return [*gpu, "CPUExecutionProvider"]


def _cgroup_cpu_limit() -> float | None:
    """CPUs allowed by a cgroup v2/v1 quota (containers), or None when unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def cpu_threads() -> int:
    """CPU threads this process may really use: affinity mask and container quota applied.

    ``LIPSYNC_THREADS`` overrides. Used for torch intra-op threads and onnxruntime sessions,
    whose own defaults count the host's cores and oversubscribe inside a limited container.
    """
    override = os.environ.get("LIPSYNC_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, int(limit + 0.5)))
    return max(1, n)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def onnxruntime_module() -> Any:
    """``onnxruntime``, imported on first use with its telemetry events turned off (the
    1.2x+ wheels otherwise look up a Microsoft telemetry host: no network from a job)."""
    import onnxruntime as ort

    ort.disable_telemetry_events()
    return ort


def onnx_session(path: Path, requested: str = "auto") -> Any:
    """An onnxruntime ``InferenceSession`` on the best provider the device request allows.

    A GPU provider that fails to initialise (missing CUDA/TensorRT libraries) is dropped and
    the next one tried; with ``cuda`` requested, ending up on the CPU raises
    :class:`DeviceUnavailable`. A file onnxruntime cannot load raises :class:`ModelMismatch`.
    """
    ort = onnxruntime_module()

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = cpu_threads()
    options.log_severity_level = 3
    providers = onnx_providers(requested)
    gpu_error: Exception | None = None
    while len(providers) > 1:  # GPU providers first, dropped one by one on failure
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # provider libraries missing (or not a model: see below)
            gpu_error = exc
            providers = providers[1:]
            continue
        # onnxruntime may silently fall back to the CPU when GPU libraries are missing.
        if requested == "cuda" and session.get_providers()[:1] == ["CPUExecutionProvider"]:
            raise DeviceUnavailable("device cuda was requested but onnxruntime runs on the CPU")
        return session
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:
        raise ModelMismatch(
            f"{Path(path).name} cannot be loaded by onnxruntime: {_first_line(exc)}"
        ) from exc
    if requested == "cuda":
        reason = _first_line(gpu_error) if gpu_error else "no GPU provider"
        raise DeviceUnavailable(f"device cuda was requested but no GPU provider started: {reason}")
    return session
