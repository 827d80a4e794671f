"""Speech -> mouth-shape trajectory, with no learned weights.

Per output frame we estimate three articulatory parameters from the signal itself:

* ``open``  0..1  jaw/lip opening: loudness in the voice band, raised for open vowels
  (energy high in the first-formant region) and lowered for close vowels;
* ``spread`` -1..1  lip rounding (-1, "oo") vs spreading (+1, "ee"), from where the
  second-formant energy sits;
* ``closed`` 0..1  evidence of a lip closure: silence, pauses (voice activity), and the
  short energy dips of stops and nasals (p/b/m) inside speech.

Trajectories are then smoothed with a coarticulation model (a short anticipatory lead,
critically damped smoothing) so the mouth moves like a mouth and never jitters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d

from lipsync.audio.vad import speech_probability

SR = 16000
HOP = 160  # 10 ms analysis hop
WIN = 512


@dataclass(frozen=True)
class MouthTrack:
    open: npt.NDArray[np.float32]  # (n_frames,) 0..1
    spread: npt.NDArray[np.float32]  # (n_frames,) -1..1
    speech: npt.NDArray[np.float32]  # (n_frames,) 0..1 voice activity
    # (n_frames,) 0..1 vowel openness: the share of first-formant energy high up (open
    # vowels as in "father" near 1, close ones as in "see", "two" near 0); None if unknown
    height: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return int(self.open.shape[0])


def _band(
    spec: npt.NDArray[np.float32], freqs: npt.NDArray[np.floating[Any]], lo: float, hi: float
) -> npt.NDArray[np.float32]:
    sel = (freqs >= lo) & (freqs < hi)
    return spec[:, sel].sum(axis=1)


def _norm(
    x: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_], lo_p: float = 5, hi_p: float = 95
) -> npt.NDArray[np.float32]:
    ref = x[mask] if mask.any() else x
    lo, hi = np.percentile(ref, [lo_p, hi_p])
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def _pauses(speech: npt.NDArray[np.bool_], min_len: int) -> npt.NDArray[np.bool_]:
    """True where non-speech runs last at least ``min_len`` samples of the track."""
    out = np.zeros_like(speech)
    n = speech.size
    i = 0
    while i < n:
        if not speech[i]:
            j = i
            while j < n and not speech[j]:
                j += 1
            if j - i >= min_len:
                out[i:j] = True
            i = j
        else:
            i += 1
    return out


BANDS = ((250, 4000), (550, 1100), (200, 550), (1700, 3200), (600, 1400), (4000, 8000))
BLOCK = 2048  # analysis frames per block: memory stays flat however long the speech is


def _band_energies(padded: npt.NDArray[np.float32], n_hops: int) -> list[npt.NDArray[np.float32]]:
    """Energy per 10 ms hop in each of :data:`BANDS`, computed block by block."""
    window = np.hanning(WIN).astype(np.float32)
    freqs = np.fft.rfftfreq(WIN, 1.0 / SR)
    out = [np.empty(n_hops, np.float32) for _ in BANDS]
    for start in range(0, n_hops, BLOCK):
        stop = min(n_hops, start + BLOCK)
        idx = np.arange(start, stop)[:, None] * HOP + np.arange(WIN)[None, :]
        spec = (np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2).astype(np.float32)
        for band, (lo, hi) in zip(out, BANDS, strict=True):
            band[start:stop] = _band(spec, freqs, lo, hi)
    return out


@dataclass(frozen=True)
class _Hops:
    """The speech on the 10 ms analysis grid."""

    t: npt.NDArray[np.float64]  # (n_hops,) centre time of each hop, seconds
    db: npt.NDArray[np.float32]  # voice-band level
    speech: npt.NDArray[np.bool_]  # voice activity with enough level
    pause: npt.NDArray[np.bool_]  # in a non-speech run of 200 ms or more
    bands: list[npt.NDArray[np.float32]]  # energy in each of BANDS


def _hops(audio: npt.NDArray[np.float32]) -> _Hops:
    """Band energies, level, voice activity and pauses per 10 ms hop."""
    n_hops = max(1, int(np.ceil(audio.size / HOP)))
    padded = np.zeros(n_hops * HOP + WIN, np.float32)
    padded[WIN // 2 : WIN // 2 + audio.size] = audio
    bands = _band_energies(padded, n_hops)
    db = 10 * np.log10(bands[0] + 1e-9)

    # Voice activity on the 10 ms grid.
    probs, vad_hop = speech_probability(audio)
    t_hop = (np.arange(n_hops) + 0.5) * HOP / SR
    vad = (
        np.interp(t_hop, (np.arange(probs.size) + 0.5) * vad_hop, probs)
        if probs.size
        else np.zeros(n_hops)
    )
    level_ok = db > (np.percentile(db, 97) - 45.0)
    speech = (vad > 0.4) & level_ok
    # Close the mouth in pauses of 200 ms or more; shorter gaps are articulation.
    pause = _pauses(speech, min_len=int(0.2 * SR / HOP))
    return _Hops(t_hop, db, speech, pause, bands)


def _closures(db: npt.NDArray[np.float32]) -> npt.NDArray[np.floating[Any]]:
    """Stop/nasal closures: sharp local dips in the voice-band level, 0..1."""
    win = int(0.08 * SR / HOP)
    local_max = maximum_filter1d(db, size=2 * win + 1)
    dip = np.clip((local_max - db - 10.0) / 10.0, 0.0, 1.0)
    is_min = db <= minimum_filter1d(db, size=5) + 0.5
    closure = dip * is_min
    return np.asarray(np.maximum(closure, gaussian_filter1d(closure, 1.5) * 2.0).clip(0, 1))


@dataclass(frozen=True)
class _Shape:
    """Mouth parameters per 10 ms hop, before smoothing."""

    openness: npt.NDArray[np.floating[Any]]
    spread: npt.NDArray[np.floating[Any]]
    height: npt.NDArray[np.float32]  # vowel height, 0..1
    loud: npt.NDArray[np.floating[Any]]  # loudness, 0..1


def _shape(hops: _Hops) -> _Shape:
    """Opening from loudness and vowel height, less for fricatives and closures, shut in
    pauses; spreading from where the second-formant energy sits."""
    voice, f1_hi, f1_lo, f2_hi, f2_lo, hiss = hops.bands
    db, speech = hops.db, hops.speech
    # Loudness -> opening (relative to this speaker's loud speech).
    ref = np.percentile(db[speech], 95) if speech.any() else np.percentile(db, 95)
    loud = np.clip((db - (ref - 32.0)) / 30.0, 0.0, 1.0) ** 1.4
    # Vowel height: share of first-formant energy high up -> open vowel.
    height = _norm(f1_hi / (f1_hi + f1_lo + 1e-9), speech)
    openness = loud * (0.45 + 0.55 * height)
    # Fricatives (s, f, sh): narrow opening with teeth together.
    fric = np.clip((hiss / (voice + hiss + 1e-9) - 0.35) / 0.4, 0.0, 1.0)
    openness = openness * (1.0 - 0.6 * fric) + 0.12 * fric * loud
    openness = openness * (1.0 - _closures(db))
    openness[hops.pause] = 0.0
    openness[~speech] *= 0.3

    spread = (_norm(f2_hi / (f2_hi + f2_lo + 1e-9), speech) * 2.0 - 1.0) * (loud > 0.05)
    return _Shape(openness, spread, height, loud)


def _to_frames(hops: _Hops, shape: _Shape, fps: float, n_frames: int, lead_s: float) -> MouthTrack:
    """Coarticulation (smoothing), then each video frame's state at its centre time plus
    ``lead_s``; the opening scaled so this speaker's loud open vowels reach ~1."""
    # Coarticulation: anticipatory lead, then smoothing with ~40 ms time constant.
    openness = gaussian_filter1d(shape.openness.astype(np.float32), sigma=3.0)
    spread = gaussian_filter1d(shape.spread.astype(np.float32), sigma=6.0)
    speech_f = gaussian_filter1d(hops.speech.astype(np.float32), sigma=3.0)
    height_f = gaussian_filter1d((shape.height * (shape.loud > 0.05)).astype(np.float32), sigma=3.0)

    # Resample to video frames: each frame shows the state at its centre time (+lead).
    t_frames = (np.arange(n_frames) + 0.5) / fps + lead_s
    o = np.interp(t_frames, hops.t, openness, left=0.0, right=0.0)
    s = np.interp(t_frames, hops.t, spread, left=0.0, right=0.0)
    v = np.interp(t_frames, hops.t, speech_f, left=0.0, right=0.0)
    h = np.interp(t_frames, hops.t, height_f, left=0.0, right=0.0)
    # Per-speaker scaling: loud open vowels reach ~1.
    top = np.percentile(o[v > 0.5], 97) if (v > 0.5).sum() > 3 else max(float(o.max()), 1e-3)
    o = np.clip(o / max(top, 0.15), 0.0, 1.0)
    return MouthTrack(
        open=o.astype(np.float32),
        spread=s.astype(np.float32),
        speech=v.astype(np.float32),
        height=h.astype(np.float32),
    )


def analyse(
    audio16k: npt.NDArray[np.float32], fps: float, n_frames: int, lead_s: float = 0.03
) -> MouthTrack:
    """Mouth parameters for ``n_frames`` video frames at ``fps`` from 16 kHz mono speech."""
    hops = _hops(np.asarray(audio16k, np.float32))
    return _to_frames(hops, _shape(hops), fps, n_frames, lead_s)
