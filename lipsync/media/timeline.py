"""Sync modes: how output frames map onto source frames, and how long the output is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# The sync modes, name -> what it does, are declared with the sync_mode option.
from lipsync.options import SYNC_MODES as SYNC_MODES


@dataclass(frozen=True)
class Timeline:
    n_out: int  # output frames
    source_index: npt.NDArray[np.int64]  # (n_out,) decoded-frame index shown at each output frame
    audio_s: float  # length the output's audio must have (padded with silence or cut)


def build_timeline(
    frame_times: npt.NDArray[np.float64],
    fps: float,
    audio_s: float,
    mode: str,
    is_image: bool = False,
) -> Timeline:
    """Map output frames (constant ``fps``) onto decoded frames with times ``frame_times``.

    Variable-frame-rate sources are resampled by time: output time t shows the last source
    frame whose presentation time is <= t.
    """
    n_src = len(frame_times)
    if n_src == 0:
        raise ValueError("no source frames")
    n_audio = max(1, int(round(audio_s * fps)))
    if is_image:
        return Timeline(n_audio, np.zeros(n_audio, np.int64), n_audio / fps)
    t0 = float(frame_times[0])
    rel = np.asarray(frame_times, np.float64) - t0
    # Source length on the constant-rate grid (last frame lasts one period).
    n_virt = max(1, int(round(rel[-1] * fps)) + 1)
    if mode == "loop":
        n_out = n_audio
        virt = np.arange(n_out) % n_virt
    elif mode == "bounce":
        n_out = n_audio
        if n_virt == 1:
            virt = np.zeros(n_out, np.int64)
        else:
            period = 2 * n_virt - 2
            p = np.arange(n_out) % period
            virt = np.where(p < n_virt, p, period - p)
    elif mode == "cut_off":
        n_out = min(n_audio, n_virt)
        virt = np.arange(n_out)
    elif mode == "silence":
        n_out = n_virt
        virt = np.arange(n_out)
    elif mode == "remap":
        n_out = n_audio
        virt = np.minimum(n_virt - 1, (np.arange(n_out) * n_virt) // n_out)
    else:  # pragma: no cover - guarded by RunOptions
        raise ValueError(f"unknown sync mode {mode!r}")
    idx = np.searchsorted(rel, virt / fps + 1e-6, side="right") - 1
    return Timeline(int(n_out), np.clip(idx, 0, n_src - 1).astype(np.int64), n_out / fps)


def fit_audio(
    samples: npt.NDArray[np.float32], rate: int, seconds: float
) -> npt.NDArray[np.float32]:
    """Cut or pad (with silence) ``(C, N)`` samples to exactly ``seconds``."""
    n = int(round(seconds * rate))
    if samples.shape[-1] >= n:
        return np.ascontiguousarray(samples[..., :n])
    pad = [(0, 0)] * (samples.ndim - 1) + [(0, n - samples.shape[-1])]
    return np.pad(samples, pad)
