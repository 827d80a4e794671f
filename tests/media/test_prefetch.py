"""Decoding ahead on a thread: same frames in the same order, errors raised where they
would have been, and an early exit stops the thread and closes the decoder."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lipsync.errors import CorruptMedia
from lipsync.media.decode import iter_frames
from lipsync.media.prefetch import Prefetch
from lipsync.pipeline import render_prefetch
from tests.media.probe_media import video as make_video


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("lipsync-decode")}


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_same_frames_in_order(tmp_path: Path, depth: int) -> None:
    video = make_video(tmp_path / "v.mp4", "libx264", "mp4", size=(96, 64), frames=30)
    plain = [(f.index, f.time_s, f.image) for f in iter_frames(video, pixel_format="i420")]
    with Prefetch(iter_frames(video, pixel_format="i420"), depth) as ahead:
        got = [(f.index, f.time_s, f.image) for f in ahead]
    assert [g[:2] for g in got] == [p[:2] for p in plain]
    assert len(got) == 30
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(got, plain, strict=True))
    assert _threads() == set()


def test_error_is_raised_in_the_caller_after_the_good_items() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise CorruptMedia("decoding failed at frame 2")

    seen = []
    with pytest.raises(CorruptMedia, match="frame 2"), Prefetch(source(), 4) as ahead:
        for item in ahead:
            seen.append(item)
    assert seen == [1, 2]
    assert _threads() == set()


def test_early_exit_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()
    produced = []

    def source() -> Iterator[int]:
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    with Prefetch(source(), 3) as ahead:
        for item in ahead:
            if item == 5:
                break
    assert closed.is_set()  # the decoder's container is closed, not left to the GC
    assert _threads() == set()
    assert len(produced) <= 5 + 1 + 3 + 2  # never far ahead of the caller


def test_render_prefetch_holds_a_batch_within_a_byte_budget() -> None:
    assert render_prefetch(16, 1280 * 720) == 16
    assert render_prefetch(16, 3840 * 2160) == 5  # 12 MB frames: 64 MB at most
    assert render_prefetch(1, 640 * 480) == 2
    assert render_prefetch(512, 16 * 16) == 512
