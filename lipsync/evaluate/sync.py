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

**The offset estimate** (:func:`calibrated_sync`). One scalar (the aperture) against one
scalar (the envelope) is a weak detector on real speech: on the 5-10 s clips in
``../shared/media`` its peak landed up to 9 frames from the true offset. So the offset, and
the headline sync score, come from a per-video *calibrated* measure instead, in the spirit of
audio-visual synchrony by canonical correlation (Hershey & Movellan, NIPS 1999): the mouth
is described by its aperture plus the first :data:`CAL_COMPONENTS` principal components of the
face-aligned grey mouth patch; the speech by a 24-band log-mel spectrum per video frame with
+-2 frames of context. At each lag in -25..+25 frames a ridge regression predicts each mouth
feature from the speech, fitted and scored with 5-fold cross-validation over contiguous blocks
of time (so a fit can't memorise the frames it is scored on, and unrelated speech scores near
0). ``score_by_lag[L]`` is the best of those held-out correlations; the offset is the lag
where it peaks (of lags within :data:`PEAK_TIE` of the peak, the one nearest 0); ``score`` is
its value at lag 0, and ``confidence`` the peak minus the median over lags (as SyncNet's
confidence is). On the four shared clips with their own speech the estimated offset is
-1..+1 frames; with the speech shifted by 3-8 frames it reads the shift to within 2 frames
(12 frames: within 4), up to 25 frames on most clips; and lag 0 scores higher for the own
speech than for every copy shifted by 3 or more frames (tests/evaluate/test_shared_clips.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, sosfiltfilt

from lipsync.evaluate.blas import single_threaded_blas
from lipsync.evaluate.cancel import CancelPoll

SR = 16000
ENV_BAND = (800.0, 3000.0)
MAX_LAG = 5
MIN_PAIRS = 20

CAL_MAX_LAG = 25  # frames searched by the calibrated offset estimate (1 s at 25 fps)
CAL_COMPONENTS = 6  # principal components of the mouth patch, beside the aperture
CAL_MELS = 24
CAL_CONTEXT = 2  # frames of speech on each side fed to the regression
CAL_FOLDS = 5
CAL_RIDGE = 50.0
PEAK_TIE = 0.01
MIN_CAL_FRAMES = 60  # fewer face frames with speech than this: no calibrated estimate
# Seconds of face frames with speech under which the offset is reported as rough
# (``offset_reliable`` False): on windows of the shared clips with their own speech, the
# offset read within 1 frame of the whole clip's on 19 of 39 windows of 3 s, 13 of 31 of
# 4 s, 14 of 23 of 5 s, 11 of 16 of 6 s and 6 of 6 of 8 s; the score at lag 0 is less
# affected (a short clip's peak is broad and flat-topped, so its place wanders).
RELIABLE_OFFSET_S = 8.0
_MEL_BLOCK = 512  # frames per spectrum block (bounds memory on long videos)


@dataclass(frozen=True)
class CalibratedSync:
    """The per-video calibrated audio -> mouth measure (see the module docstring)."""

    score_by_lag: dict[int, float]  # lag (frames) -> best held-out correlation
    offset_frames: int  # where the score peaks; + = the video is late
    offset_ms: float
    score: float  # at lag 0: how well the speech, as heard, predicts the mouth
    peak_score: float
    confidence: float  # peak minus the median over lags
    frames_used: int
    seconds_used: float = 0.0  # frames_used at the video's frame rate

    @property
    def offset_reliable(self) -> bool:
        """Whether the offset comes from enough speech to be read to within a frame
        (:data:`RELIABLE_OFFSET_S`)."""
        return self.seconds_used >= RELIABLE_OFFSET_S

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["score_by_lag"] = {str(k): v for k, v in self.score_by_lag.items()}
        return d


@dataclass(frozen=True)
class SyncResult:
    r_by_lag: dict[int, float | None]  # lag (frames) -> Pearson r
    best_lag: int | None
    best_r: float | None
    r_at_zero: float | None
    frames_used: int
    calibrated: CalibratedSync | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["r_by_lag"] = {str(k): v for k, v in self.r_by_lag.items()}
        d["calibrated"] = None if self.calibrated is None else self.calibrated.to_dict()
        # Headline numbers (None when the clip is too short for the calibrated measure).
        d["offset_frames"] = None if self.calibrated is None else self.calibrated.offset_frames
        d["offset_ms"] = None if self.calibrated is None else self.calibrated.offset_ms
        d["offset_reliable"] = self.calibrated is not None and self.calibrated.offset_reliable
        d["score"] = None if self.calibrated is None else self.calibrated.score
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


def frame_log_mel(
    audio16k: npt.NDArray[np.floating[Any]], fps: float, n_frames: int, n_mels: int = CAL_MELS
) -> npt.NDArray[np.float64]:
    """Log mel power per video frame ``(n_frames, n_mels)``: a Hann window two frame periods
    long centred on each frame's mid-time; NaN rows for frames past the audio's end."""
    from lipsync.audio.mel import mel_filterbank

    x = np.asarray(audio16k, np.float64)
    out = np.full((n_frames, n_mels), np.nan)
    hop = SR / fps
    win = max(16, int(round(2 * hop)))
    n_fft = 1 << (win - 1).bit_length()
    fb = mel_filterbank(SR, n_fft, n_mels, 80.0, 7600.0).astype(np.float64)
    window = np.hanning(win + 1)[:-1]
    padded = np.concatenate([np.zeros(win), x, np.zeros(win)])
    centres = (np.arange(n_frames) + 0.5) * hop
    live = np.flatnonzero(centres < x.size)
    offs = np.arange(win)
    for b in range(0, live.size, _MEL_BLOCK):
        idx = live[b : b + _MEL_BLOCK]
        starts = np.round(centres[idx] - win / 2).astype(np.int64) + win
        frames = padded[starts[:, None] + offs[None, :]] * window
        power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
        out[idx] = np.log(power @ fb.T + 1e-10)
    return out


def mouth_features(
    aperture: npt.NDArray[np.floating[Any]],
    pixels: npt.NDArray[np.floating[Any]],
    components: int = CAL_COMPONENTS,
) -> npt.NDArray[np.float64]:
    """Aperture plus the leading principal components of the grey mouth patches
    ``(n, 1 + components)``; NaN rows where no face was found."""
    ap = np.asarray(aperture, np.float64)
    px = np.asarray(pixels, np.float64)
    ok = ~(np.isnan(ap) | np.isnan(px).any(axis=1))
    out = np.full((ap.size, 1 + components), np.nan)
    if ok.sum() <= components:
        return out
    centred = px[ok] - px[ok].mean(axis=0)
    u, sv, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(components, sv.size)
    out[ok, 0] = ap[ok]
    out[ok, 1 : 1 + k] = u[:, :k] * sv[:k]
    return out[:, : 1 + k]


def _with_context(feats: npt.NDArray[np.float64], context: int) -> npt.NDArray[np.float64]:
    n = feats.shape[0]
    cols = [feats[np.clip(np.arange(n) + d, 0, n - 1)] for d in range(-context, context + 1)]
    return np.concatenate(cols, axis=1)


def _held_out_r(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    """Best Pearson r between a mouth feature and its ridge prediction from ``x``, every
    prediction made by a fit that did not see that block of time."""
    n = x.shape[0]
    pred = np.empty_like(y)
    edges = np.linspace(0, n, CAL_FOLDS + 1).astype(int)
    eye = CAL_RIDGE * np.eye(x.shape[1])
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        train = np.ones(n, bool)
        train[lo:hi] = False
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
        xt = (x[train] - mu) / sd
        ym = y[train].mean(axis=0)
        w = np.linalg.solve(xt.T @ xt + eye, xt.T @ (y[train] - ym))
        pred[lo:hi] = ((x[lo:hi] - mu) / sd) @ w + ym
    rs = [pearson(pred[:, j], y[:, j]) for j in range(y.shape[1])]
    return max((r for r in rs if r is not None), default=-1.0)


def calibrated_sync(
    mouth: npt.NDArray[np.float64],
    mel: npt.NDArray[np.float64],
    fps: float,
    max_lag: int = CAL_MAX_LAG,
    *,
    should_cancel: Callable[[], bool] | None = None,
) -> CalibratedSync | None:
    """Score each lag by how well this video's own speech predicts its mouth (held out);
    ``mouth`` from :func:`mouth_features`, ``mel`` from :func:`frame_log_mel`;
    ``should_cancel`` is polled at each lag (:class:`lipsync.errors.Canceled`)."""
    poll = CancelPoll(should_cancel)
    n = min(mouth.shape[0], mel.shape[0])
    mouth, audio = mouth[:n], _with_context(mel[:n], CAL_CONTEXT)
    audio[np.isnan(mel[:n]).any(axis=1)] = np.nan  # no speech there: no pair
    frames = np.arange(n)
    scores: dict[int, float] = {}
    used = 0
    for lag in range(-max_lag, max_lag + 1):
        poll()
        src = frames - lag  # video frame i is paired with speech frame i - lag
        inside = (src >= 0) & (src < n)
        vi, ai = frames[inside], src[inside]
        ok = ~(np.isnan(mouth[vi]).any(axis=1) | np.isnan(audio[ai]).any(axis=1))
        if lag == 0:
            used = int(ok.sum())
        if ok.sum() < MIN_CAL_FRAMES:
            continue
        scores[lag] = round(_held_out_r(audio[ai[ok]], mouth[vi[ok]]), 4)
    if 0 not in scores or used < MIN_CAL_FRAMES:
        return None
    top = max(scores.values())
    # Lags scoring within PEAK_TIE of the top can't be told apart on one clip (a smooth mouth
    # gives a flat-topped curve): of those, the one nearest 0.
    peak = min((k for k, v in scores.items() if v >= top - PEAK_TIE), key=abs)
    return CalibratedSync(
        score_by_lag=scores,
        offset_frames=peak,
        offset_ms=round(peak * 1000.0 / fps, 1),
        score=scores[0],
        peak_score=scores[peak],
        confidence=round(scores[peak] - float(np.median(list(scores.values()))), 4),
        frames_used=used,
        seconds_used=round(used / fps, 3) if fps > 0 else 0.0,
    )


def measure_sync(
    aperture: npt.NDArray[np.floating[Any]],
    pixels: npt.NDArray[np.floating[Any]],
    audio16k: npt.NDArray[np.floating[Any]],
    fps: float,
    *,
    should_cancel: Callable[[], bool] | None = None,
) -> SyncResult:
    """Both measures: aperture/envelope r at lags -5..+5 and the calibrated offset estimate;
    ``should_cancel`` is polled as it goes (:class:`lipsync.errors.Canceled`)."""
    n = int(np.asarray(aperture).shape[0])
    plain = lag_correlation(aperture, speech_envelope(np.asarray(audio16k, np.float32), fps, n))
    CancelPoll(should_cancel)(force=True)
    with single_threaded_blas():  # small matrices: see .blas
        mouth = mouth_features(aperture, pixels)
        mel = frame_log_mel(audio16k, fps, n)
        cal = calibrated_sync(mouth, mel, fps, should_cancel=should_cancel)
    return replace(plain, calibrated=cal)
