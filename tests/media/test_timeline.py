from __future__ import annotations

import numpy as np
import pytest

from lipsync.media.timeline import build_timeline, fit_audio


def times(n: int, fps: float = 25.0) -> np.ndarray:
    return np.arange(n) / fps


def test_loop_repeats_a_short_video_to_the_audio_length() -> None:
    t = build_timeline(times(10), 25, audio_s=1.0, mode="loop")
    assert t.n_out == 25
    assert list(t.source_index[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert t.audio_s == pytest.approx(1.0)


def test_loop_cuts_a_long_video() -> None:
    t = build_timeline(times(100), 25, audio_s=1.0, mode="loop")
    assert t.n_out == 25 and list(t.source_index) == list(range(25))


def test_bounce_plays_forward_then_backward_without_a_jump() -> None:
    t = build_timeline(times(5), 25, audio_s=12 / 25, mode="bounce")
    assert list(t.source_index) == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert np.all(np.abs(np.diff(t.source_index)) == 1)


def test_cut_off_takes_the_shorter() -> None:
    assert build_timeline(times(10), 25, audio_s=2.0, mode="cut_off").n_out == 10
    assert build_timeline(times(100), 25, audio_s=2.0, mode="cut_off").n_out == 50


def test_silence_keeps_the_video_length() -> None:
    t = build_timeline(times(40), 25, audio_s=0.5, mode="silence")
    assert t.n_out == 40 and t.audio_s == pytest.approx(1.6)


def test_remap_stretches_the_video_over_the_audio() -> None:
    t = build_timeline(times(10), 25, audio_s=20 / 25, mode="remap")
    assert t.n_out == 20
    assert t.source_index[0] == 0 and t.source_index[-1] == 9
    assert np.all(np.diff(t.source_index) >= 0)


def test_variable_frame_rate_resamples_by_time() -> None:
    # Frames at irregular times: output at 10 fps shows the latest frame at each tick.
    src = np.array([0.0, 0.05, 0.31, 0.32, 0.55])
    t = build_timeline(src, 10, audio_s=0.6, mode="cut_off")
    assert list(t.source_index) == [0, 1, 1, 1, 3, 3]


def test_still_image_lasts_as_long_as_the_audio() -> None:
    for mode in ("loop", "bounce", "cut_off", "silence", "remap"):
        t = build_timeline(np.zeros(1), 25, audio_s=3.0, mode=mode, is_image=True)  # type: ignore[arg-type]
        assert t.n_out == 75 and not t.source_index.any()


def test_fit_audio_pads_with_silence_and_cuts() -> None:
    x = np.ones((2, 100), np.float32)
    padded = fit_audio(x, 100, 1.5)
    assert padded.shape == (2, 150) and padded[:, 100:].sum() == 0
    assert fit_audio(x, 100, 0.5).shape == (2, 50)
