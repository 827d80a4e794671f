"""Wav2Lip mel features against a librosa + scipy transcription of the original audio.py."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from lipsync.audio.mel import (
    MEL_STEP_SIZE,
    mel_chunks,
    mel_filterbank,
    melspectrogram,
    preemphasis,
)
from lipsync.errors import AudioEmpty

librosa = pytest.importorskip("librosa")
signal = pytest.importorskip("scipy.signal")

SR = 16_000


def reference_melspectrogram(wav: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """Wav2Lip's audio.melspectrogram with hparams.py values and librosa-0.7 padding."""
    y = signal.lfilter([1, -0.97], [1], wav)
    stft = librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect")
    basis = librosa.filters.mel(sr=SR, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    s = np.dot(basis, np.abs(stft))
    min_level = np.exp(-100 / 20 * np.log(10))
    s = 20 * np.log10(np.maximum(min_level, s)) - 20
    return np.clip((2 * 4) * ((s + 100) / 100) - 4, -4, 4)


def speech_like(seconds: float, seed: int) -> npt.NDArray[np.float32]:
    """Harmonic 'voice' with a gliding pitch, syllable envelope, a fricative burst, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.5 * t) + 10 * rng.standard_normal() * t
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase + rng.uniform(0, 6)) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3.3 * t + seed), 0, None) ** 1.5
    fricative = rng.standard_normal(t.size) * ((t % 0.7) > 0.55)
    fricative = signal.lfilter([1, -1], [1], fricative) * 0.05
    wav = 0.4 * voiced * envelope + fricative + 0.003 * rng.standard_normal(t.size)
    return (wav / np.max(np.abs(wav)) * 0.9).astype(np.float32)


def test_filterbank_equals_librosa() -> None:
    ours = mel_filterbank()
    ref = librosa.filters.mel(sr=SR, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    assert ours.dtype == np.float32 and ours.shape == (80, 401)
    assert np.abs(ours - ref).max() < 1e-7


def test_preemphasis_equals_lfilter() -> None:
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert np.allclose(preemphasis(x), signal.lfilter([1, -0.97], [1], x), atol=1e-12)


@pytest.mark.parametrize(("seconds", "seed"), [(3.0, 0), (1.37, 1), (0.26, 2), (5.01, 3)])
def test_melspectrogram_matches_reference(seconds: float, seed: int) -> None:
    wav = speech_like(seconds, seed)
    ours = melspectrogram(wav)
    ref = reference_melspectrogram(wav)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (80, 1 + len(wav) // 200)
    err = np.abs(ours - ref).max()
    assert err < 1e-4, f"max abs error {err}"
    # The test signal is in range: not everything clipped at the floor or the ceiling.
    assert ref.min() < -3.5 and ref.max() > 0.5


def test_tones_and_noise_match_reference() -> None:
    t = np.arange(SR * 2) / SR
    rng = np.random.default_rng(7)
    wav = (
        0.5 * np.sin(2 * np.pi * 220 * t)
        + 0.2 * np.sin(2 * np.pi * 3150 * t) * (t > 1)
        + 0.05 * rng.standard_normal(t.size)
    ).astype(np.float32)
    assert np.abs(melspectrogram(wav) - reference_melspectrogram(wav)).max() < 1e-4


def test_silence_is_the_floor() -> None:
    mel = melspectrogram(np.zeros(SR, dtype=np.float32))
    assert mel.shape == (80, 81)
    assert np.all(mel == -4.0)


def test_empty_audio_raises() -> None:
    with pytest.raises(AudioEmpty):
        melspectrogram(np.zeros(0, dtype=np.float32))


def test_non_finite_samples_are_silenced() -> None:
    wav = speech_like(0.5, 4)
    clean = wav.copy()
    clean[100:110] = 0.0
    wav[100:105] = np.nan
    wav[105:110] = np.inf
    assert np.array_equal(melspectrogram(wav), melspectrogram(clean))


def test_very_short_audio_gives_a_column() -> None:
    for n in (1, 2, 150, 399):
        mel = melspectrogram(np.full(n, 0.1, dtype=np.float32))
        assert mel.shape == (80, 1 + max(n, 2) // 200)


def reference_chunks(mel: npt.NDArray[np.float32], fps: float) -> list[npt.NDArray[np.float32]]:
    """The chunk loop of Wav2Lip's inference.py, verbatim in behaviour."""
    chunks = []
    mult = 80.0 / fps
    i = 0
    while True:
        start = int(i * mult)
        if start + MEL_STEP_SIZE > len(mel[0]):
            chunks.append(mel[:, len(mel[0]) - MEL_STEP_SIZE :])
            break
        chunks.append(mel[:, start : start + MEL_STEP_SIZE])
        i += 1
    return chunks


@pytest.mark.parametrize("fps", [25.0, 30.0, 29.97, 24.0, 60.0, 12.5])
def test_chunks_follow_reference_loop(fps: float) -> None:
    mel = melspectrogram(speech_like(2.3, 5))
    ref = reference_chunks(mel, fps)
    ours = mel_chunks(mel, fps, len(ref))
    assert ours.shape == (len(ref), 80, MEL_STEP_SIZE) and ours.dtype == np.float32
    for i, chunk in enumerate(ref):
        assert np.array_equal(ours[i], chunk), f"chunk {i} at {fps} fps"


def test_chunks_past_the_end_repeat_the_last_window() -> None:
    mel = np.arange(80 * 40, dtype=np.float32).reshape(80, 40)
    chunks = mel_chunks(mel, 25.0, 20)
    last = mel[:, 40 - MEL_STEP_SIZE :]
    # start = int(i * 3.2): frames 0..7 fit (7 * 3.2 = 22.4 -> 22 + 16 <= 40), then the tail.
    assert np.array_equal(chunks[7], mel[:, 22:38])
    for i in range(8, 20):
        assert np.array_equal(chunks[i], last)


def test_short_mel_is_padded_to_a_window() -> None:
    mel = np.tile(np.arange(5, dtype=np.float32), (80, 1))
    chunks = mel_chunks(mel, 25.0, 3)
    assert chunks.shape == (3, 80, MEL_STEP_SIZE)
    assert np.array_equal(chunks[0, 0, :5], np.arange(5))
    assert np.all(chunks[:, :, 5:] == 4.0)  # last column repeated
    assert np.array_equal(chunks[0], chunks[2])


def test_chunk_edge_cases() -> None:
    mel = np.zeros((80, 30), dtype=np.float32)
    assert mel_chunks(mel, 25.0, 0).shape == (0, 80, MEL_STEP_SIZE)
    with pytest.raises(ValueError):
        mel_chunks(mel, 0.0, 3)
    with pytest.raises(AudioEmpty):
        mel_chunks(np.zeros((80, 0), dtype=np.float32), 25.0, 3)


def test_mel_error_summary() -> None:
    """Worst case over several signals, printed for the record (pytest -s)."""
    worst = max(
        float(np.abs(melspectrogram(w) - reference_melspectrogram(w)).max())
        for w in (speech_like(2.0, s) for s in range(10, 14))
    )
    print(f"mel max abs error vs librosa: {worst:.3g}")
    assert worst < 1e-4
