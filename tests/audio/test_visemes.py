from __future__ import annotations

from pathlib import Path

import numpy as np

from lipsync.audio.vad import silero_model_path, speech_probability
from lipsync.audio.visemes import analyse
from lipsync.media.audio import load_audio


def _speech(path: Path) -> np.ndarray:
    return load_audio(path, sample_rate=16000, channels=1)[0][0]


def test_silero_model_ships_in_the_wheel_and_finds_speech(speech_wav: Path) -> None:
    assert silero_model_path() is not None
    probs, hop = speech_probability(_speech(speech_wav))
    assert hop == 0.032 and probs.max() > 0.8
    silence = np.zeros(16000, np.float32)
    assert speech_probability(silence)[0].max() < 0.2


def test_silence_keeps_the_mouth_closed() -> None:
    track = analyse(np.zeros(32000, np.float32), 25, 50)
    assert float(track.open.max()) == 0.0


def test_mouth_follows_speech_and_closes_in_the_pause(
    speech_pause: tuple[Path, float, float],
) -> None:
    path, p0, p1 = speech_pause
    audio = _speech(path)
    fps = 25
    n = int(len(audio) / 16000 * fps)
    track = analyse(audio, fps, n)
    t = (np.arange(n) + 0.5) / fps
    pause = (t > p0 + 0.15) & (t < p1 - 0.15)
    speech = (t < p0 - 0.1) | (t > p1 + 0.1)
    assert track.open[pause].max() < 0.05, "mouth closed in a 1 s pause"
    assert track.open[speech].max() > 0.8
    # It moves: many opening/closing cycles, not a constant.
    assert track.open[speech].std() > 0.15
    assert ((np.diff(np.sign(np.diff(track.open[speech]))) != 0).sum()) >= 6
    # And smoothly: no frame-to-frame jumps bigger than half the range.
    assert np.abs(np.diff(track.open)).max() < 0.6


def test_rounding_vs_spreading() -> None:
    # "ee" has strong 2nd-formant energy high up, "oo" low: synthesise both as formant sums.
    sr = 16000
    t = np.arange(sr) / sr

    def vowel(f1: float, f2: float) -> np.ndarray:
        f0 = 120 * t
        src = np.sign(np.sin(2 * np.pi * f0))  # buzzy source
        out = src * 0.05
        for f, a in ((f1, 0.6), (f2, 0.4)):
            out = out + a * np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
        return (0.3 * out).astype(np.float32)

    audio = np.concatenate([vowel(300, 2300), vowel(320, 800)])
    track = analyse(audio, 25, 50)
    assert track.spread[5:20].mean() > track.spread[30:45].mean() + 0.5


def test_open_vowels_read_higher_than_close_ones(tmp_path: Path) -> None:
    """Vowel height from espeak's real formants: "ah" (open) above "ee" and "oo" (close)."""
    from tests import media_factory as mf

    def mean_height(text: str) -> float:
        audio = _speech(mf.espeak(tmp_path / f"{text}.wav", text))
        n = int(len(audio) / 16000 * 25)
        track = analyse(audio, 25, n)
        assert track.height is not None and track.height.shape == (n,)
        voiced = track.speech > 0.5
        return float(track.height[voiced].mean())

    ah = mean_height("ah ah ah ah")
    assert ah > mean_height("ee ee ee ee") + 0.15
    assert ah > mean_height("oo oo oo oo") + 0.15
