"""Voice activity: silero-vad's bundled ONNX model via onnxruntime (no torch needed),
falling back to an energy detector when the model file is not installed."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SR = 16000
CHUNK = 512  # silero's window at 16 kHz (32 ms)
CONTEXT = 64


def silero_model_path() -> Path | None:
    """The ONNX file inside the installed ``silero-vad`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _session() -> Any:
    path = silero_model_path()
    if path is None:
        return None
    from lipsync.device import onnxruntime_module

    ort = onnxruntime_module()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def speech_probability(audio16k: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], float]:
    """Per-32 ms speech probability and the hop in seconds."""
    hop_s = CHUNK / SR
    sess = _session()
    n = int(np.ceil(audio16k.size / CHUNK))
    if n == 0:
        return np.zeros(0, np.float32), hop_s
    padded = np.zeros(n * CHUNK, np.float32)
    padded[: audio16k.size] = audio16k
    if sess is None:
        return _energy_vad(padded, n), hop_s
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, CONTEXT), np.float32)
    sr = np.array(SR, dtype=np.int64)
    probs = np.empty(n, np.float32)
    for i in range(n):
        x = np.concatenate([context, padded[None, i * CHUNK : (i + 1) * CHUNK]], axis=1)
        out, state = sess.run(None, {"input": x, "state": state, "sr": sr})
        probs[i] = float(np.asarray(out).reshape(-1)[0])
        context = x[:, -CONTEXT:]
    return probs, hop_s


def _energy_vad(padded: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
    frames = padded.reshape(n, CHUNK)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    ref = float(np.percentile(db, 95))
    return np.clip((db - (ref - 40.0)) / 15.0, 0.0, 1.0).astype(np.float32)
