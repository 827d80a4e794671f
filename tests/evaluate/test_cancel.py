"""``should_cancel`` stops an evaluation: polled as frames go, between steps and inside the
long loops, so a cancel (a service's job cancel, SIGTERM) ends it within 2 s."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lipsync.errors import Canceled
from lipsync.evaluate import evaluate
from lipsync.evaluate.cancel import Background, CancelPoll
from lipsync.evaluate.faces import detect_every_for
from lipsync.evaluate.mouth import measure_mouth
from lipsync.evaluate.sync import calibrated_sync, frame_log_mel, mouth_features
from tests import media_factory as mf

CLIP = "video_videoretalking_face2.mp4"  # 5 s, with its own speech


class _CancelAt:
    """A cancel requested ``after_s`` seconds after start() (as a service's job cancel or
    SIGTERM comes, from outside); ``calls``: how often it was asked."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.requested_at: float | None = None
        self.calls = 0
        self._timer = threading.Timer(after_s, self._request)

    def _request(self) -> None:
        self.requested_at = time.monotonic()

    def start(self) -> None:
        self._timer.start()

    def __call__(self) -> bool:
        self.calls += 1
        return self.requested_at is not None


def test_a_cancel_before_the_start_does_no_work(portrait_video: Path) -> None:
    calls: list[float] = []

    def cancel() -> bool:
        calls.append(time.monotonic())
        return True

    t = time.monotonic()
    with pytest.raises(Canceled) as info:
        evaluate(portrait_video, should_cancel=cancel)
    assert time.monotonic() - t < 1.0
    assert info.value.code == "canceled" and len(calls) == 1


@pytest.mark.parametrize("with_reference", [False, True])
def test_a_cancel_mid_way_stops_within_two_seconds(
    with_reference: bool, shared_media: Path, tmp_path: Path
) -> None:
    clip = mf.shared_file(shared_media, CLIP)
    cancel = _CancelAt(1.0)
    cancel.start()
    with pytest.raises(Canceled):
        evaluate(
            clip,
            reference=clip if with_reference else None,
            models_dir=tmp_path,
            should_cancel=cancel,
        )
    stopped = time.monotonic()
    assert cancel.requested_at is not None  # it did not finish before the cancel came
    assert stopped - cancel.requested_at < 2.0
    assert cancel.calls >= 2  # polled as it went, not only at the start


def test_the_mouth_pass_polls_every_few_frames(shared_media: Path) -> None:
    clip = mf.shared_file(shared_media, CLIP)
    stamps: list[float] = []

    def never() -> bool:
        stamps.append(time.monotonic())
        return False

    t = time.monotonic()
    track = measure_mouth(clip, fps=25.0, should_cancel=never)
    stamps.append(time.monotonic())  # the end, as if polled once more
    assert len(track) == 125 and track.face_rate == 1.0
    # Asked every 0.1-0.5 s (at most every 0.1 s: a poll may cost a service a read). The
    # longer gaps are the CNN detections, single calls, polled before each: the whole first
    # frame (0.85 s on an idle 2-core CPU) and near the face every 2 s (0.15 s).
    cnn_calls = 1 + (len(track) - 1) // detect_every_for(25.0)
    gaps = np.sort(np.diff([t, *stamps]))
    assert len(stamps) >= 4
    assert float(gaps[-1 - cnn_calls]) < 0.5, gaps


def test_the_offset_search_polls_inside_its_loop(shared_media: Path) -> None:
    from lipsync.media.audio import load_audio, to_mono

    clip = mf.shared_file(shared_media, CLIP)
    track = measure_mouth(clip, fps=25.0)
    speech = to_mono(load_audio(clip, sample_rate=16000, channels=1)[0])
    mouth = mouth_features(track.aperture, track.pixels)
    mel = frame_log_mel(speech, 25.0, len(track))
    assert calibrated_sync(mouth, mel, 25.0) is not None
    stamps: list[float] = []

    def never() -> bool:
        stamps.append(time.monotonic())
        return False

    t = time.monotonic()
    assert calibrated_sync(mouth, mel, 25.0, should_cancel=never) is not None
    # Asked as the lags go: at the first, then at most every 0.1 s.
    assert len(stamps) >= 1 + int((time.monotonic() - t) / 0.5)
    with pytest.raises(Canceled):
        calibrated_sync(mouth, mel, 25.0, should_cancel=lambda: True)


def test_waiting_for_the_sound_side_does_not_outlast_a_cancel() -> None:
    release = threading.Event()
    job = Background(lambda: release.wait(10.0))
    t = time.monotonic()
    with pytest.raises(Canceled):
        job.wait(CancelPoll(lambda: time.monotonic() - t > 0.2))
    assert time.monotonic() - t < 1.0
    release.set()
    assert Background(lambda: 42).wait(CancelPoll(None)) == 42
    boom = Background(lambda: 1 // 0)
    with pytest.raises(ZeroDivisionError):
        boom.wait(CancelPoll(None))
