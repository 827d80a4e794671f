"""Wav2Lip's speech features, reproduced in NumPy.

This is the mel spectrogram of the original Wav2Lip ``audio.py`` with its ``hparams.py``
values, as computed with the librosa of that time (0.7): 16 kHz mono, pre-emphasis 0.97,
STFT (n_fft 800, hop 200, periodic Hann window of 800, centred frames with *reflect*
padding), magnitude, Slaney-style mel filterbank (80 bands, 55..7600 Hz, area-normalised),
decibels with a -100 dB floor, minus the 20 dB reference level, then symmetric
normalisation to [-4, 4]. Nothing here needs librosa or scipy at run time; the tests check
the result against librosa.

``mel_chunks`` then cuts the 80-columns-per-second spectrogram into one 16-column window
per video frame, exactly as the Wav2Lip inference loop does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from lipsync.errors import AudioEmpty

SAMPLE_RATE = 16_000
N_FFT = 800
HOP_SIZE = 200
WIN_SIZE = 800
NUM_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_STEP_SIZE = 16  # spectrogram columns per video frame window
MEL_FPS = SAMPLE_RATE / HOP_SIZE  # 80 columns per second

_BLOCK_FRAMES = 4096  # STFT frames per block: bounds memory for long tracks


def _hz_to_mel(freqs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = freqs / f_sp
    above = freqs >= min_log_hz
    mels[above] = min_log_mel + np.log(freqs[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    freqs = f_sp * mels
    above = mels >= min_log_mel
    freqs[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return freqs


def mel_filterbank(
    sr: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = NUM_MELS,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> npt.NDArray[np.float32]:
    """Triangular mel filters ``(n_mels, 1 + n_fft // 2)``, Slaney scale and area norm.

    Same construction as ``librosa.filters.mel(htk=False, norm="slaney")``, built in float64
    and returned as float32 as librosa does.
    """
    fftfreqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_pts = np.linspace(
        _hz_to_mel(np.array([fmin], dtype=np.float64))[0],
        _hz_to_mel(np.array([fmax], dtype=np.float64))[0],
        n_mels + 2,
    )
    mel_f = _mel_to_hz(mel_pts)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _mel_basis() -> npt.NDArray[np.float64]:
    # float32 values (as librosa returns them), used in float64 arithmetic.
    return mel_filterbank().astype(np.float64)


@lru_cache(maxsize=1)
def _window() -> npt.NDArray[np.float64]:
    # scipy.signal.get_window("hann", 800, fftbins=True): the periodic Hann window.
    n = np.arange(WIN_SIZE, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_SIZE)


def preemphasis(wav: npt.NDArray[np.floating], k: float = PREEMPHASIS) -> npt.NDArray[np.float64]:
    """``scipy.signal.lfilter([1, -k], [1], wav)``: y[n] = x[n] - k * x[n-1], zero state."""
    x = np.asarray(wav, dtype=np.float64)
    y = x.copy()
    y[1:] -= k * x[:-1]
    return y


def _stft_magnitude_mel(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Mel-filtered STFT magnitude ``(n_mels, 1 + len(y) // hop)`` of a pre-emphasised track."""
    pad = N_FFT // 2
    padded = np.pad(y, pad, mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP_SIZE
    frames = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, N_FFT),
        strides=(padded.strides[0] * HOP_SIZE, padded.strides[0]),
        writeable=False,
    )
    window = _window()
    basis = _mel_basis()
    out = np.empty((NUM_MELS, n_frames), dtype=np.float64)
    for start in range(0, n_frames, _BLOCK_FRAMES):
        block = frames[start : start + _BLOCK_FRAMES] * window
        magnitude = np.abs(np.fft.rfft(block, n=N_FFT, axis=1))  # (frames, 401)
        out[:, start : start + len(block)] = basis @ magnitude.T
    return out


def melspectrogram(wav: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Wav2Lip's normalised mel spectrogram ``(80, 1 + len(wav) // 200)`` of 16 kHz mono audio.

    Non-finite samples are treated as silence. Raises :class:`AudioEmpty` for an empty track.
    """
    x = np.asarray(wav, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise AudioEmpty("the speech track has no samples")
    if not np.all(np.isfinite(x)):
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if x.size < 2:  # reflect padding needs two samples
        x = np.pad(x, (0, 2 - x.size))
    mel = _stft_magnitude_mel(preemphasis(x))
    min_level = np.exp(MIN_LEVEL_DB / 20.0 * np.log(10.0))
    db = 20.0 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    norm = (2.0 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS_VALUE
    return np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_chunks(mel: npt.NDArray[np.float32], fps: float, n_frames: int) -> npt.NDArray[np.float32]:
    """One ``(80, 16)`` window per output frame, as the Wav2Lip inference loop cuts them.

    Frame ``i`` starts at column ``int(i * 80 / fps)``; a window that would run past the end
    is replaced by the last 16 columns. A spectrogram shorter than 16 columns is first
    extended by repeating its last column.
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    if mel.ndim != 2 or mel.shape[1] == 0:
        raise AudioEmpty("the speech track is too short for any speech features")
    if n_frames <= 0:
        return np.empty((0, mel.shape[0], MEL_STEP_SIZE), dtype=np.float32)
    if mel.shape[1] < MEL_STEP_SIZE:
        mel = np.pad(mel, ((0, 0), (0, MEL_STEP_SIZE - mel.shape[1])), mode="edge")
    total = mel.shape[1]
    mult = 80.0 / fps
    starts = (np.arange(n_frames, dtype=np.float64) * mult).astype(np.int64)
    starts = np.where(starts + MEL_STEP_SIZE > total, total - MEL_STEP_SIZE, starts)
    index = starts[:, None] + np.arange(MEL_STEP_SIZE)[None, :]  # (n, 16)
    out = mel[:, index]  # (80, n, 16)
    return np.ascontiguousarray(out.transpose(1, 0, 2), dtype=np.float32)
