"""Does the mouth follow the speech? Pearson r between the mouth aperture and the speech
envelope at frame lags -5..+5, and the lag where it peaks (an estimate of any audio/video
offset).

The envelope is the RMS level of the speech band-passed to 800-3000 Hz (where open
vowels put their energy: a lowered jaw raises the first formant), over a window of two frame
periods centred on each frame, on a linear scale. Both series are smoothed with a
one-frame Gaussian before correlating. On the real clips in ``../shared/media`` this choice
(tried against 250-4000 Hz, 300-1000 Hz, 500-3000 Hz, decibel and square-root scales and
several modulation band-passes) separated a clip's own speech from other clips' speech the
most, both with this package's aperture and with the 68-point inner-lip gap.

Sign: a positive lag means the mouth moves that many frames *after* the sound (the video
is late); frames without a face are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, sosfiltfilt

SR = 16000
ENV_BAND = (800.0, 3000.0)
MAX_LAG = 5
MIN_PAIRS = 20


@dataclass(frozen=True)
class SyncResult:
    r_by_lag: dict[int, float | None]  # lag (frames) -> Pearson r
    best_lag: int | None
    best_r: float | None
    r_at_zero: float | None
    frames_used: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["r_by_lag"] = {str(k): v for k, v in self.r_by_lag.items()}
        return d


def speech_envelope(
    audio16k: npt.NDArray[np.float32], fps: float, n_frames: int
) -> npt.NDArray[np.float64]:
    """RMS of the 800-3000 Hz band per video frame (NaN for frames past the audio's end)."""
    x = np.asarray(audio16k, np.float64)
    out = np.full(n_frames, np.nan)
    if x.size < 64:
        return out
    sos = butter(4, ENV_BAND, btype="band", fs=SR, output="sos")
    band = sosfiltfilt(sos, x) if x.size > 60 else x
    csum = np.concatenate([[0.0], np.cumsum(band**2)])
    hop = SR / fps
    for i in range(n_frames):
        centre = (i + 0.5) * hop
        if centre >= x.size:
            break
        lo, hi = int(max(0, centre - hop)), int(min(x.size, centre + hop))
        if hi > lo:
            out[i] = np.sqrt((csum[hi] - csum[lo]) / (hi - lo))
    return out


def _smooth(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    valid = ~np.isnan(x)
    if valid.sum() < 2:
        return x
    idx = np.arange(x.size)
    filled = np.interp(idx, idx[valid], x[valid])
    out = gaussian_filter1d(filled, 1.0)
    out[~valid] = np.nan
    return out


def pearson(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float | None:
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < MIN_PAIRS:
        return None
    x, y = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else None


def lag_correlation(
    aperture: npt.NDArray[np.floating[Any]],
    envelope: npt.NDArray[np.floating[Any]],
    max_lag: int = MAX_LAG,
) -> SyncResult:
    """r(lag) = Pearson(aperture[i + lag], envelope[i]) for lag in -max_lag..max_lag."""
    n = min(aperture.size, envelope.size)
    ap = _smooth(np.asarray(aperture[:n], np.float64))
    env = _smooth(np.asarray(envelope[:n], np.float64))
    rs: dict[int, float | None] = {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            a, e = ap[lag:], env[: n - lag]
        else:
            a, e = ap[:lag], env[-lag:]
        r = pearson(a, e)
        rs[lag] = None if r is None else round(r, 4)
    scored = {k: v for k, v in rs.items() if v is not None}
    best = max(scored, key=lambda k: scored[k]) if scored else None
    used = int((~(np.isnan(ap) | np.isnan(env))).sum())
    return SyncResult(rs, best, scored.get(best) if best is not None else None, rs.get(0), used)
