"""A comparison measured in two processes gives one pass's numbers, and stops on a cancel."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import lipsync
from lipsync.errors import Canceled
from lipsync.evaluate import evaluate
from lipsync.evaluate.halves import LATER_SHARE, MIN_SPLIT_FRAMES, split_at
from lipsync.evaluate.reference import JointPass, measure_with_reference
from lipsync.media.decode import iter_frames
from tests import media_factory as mf


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _second_processes() -> list[int]:
    """This test process's children that are an evaluation's second process (Linux)."""
    found = []
    for pid in _children(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"lipsync.evaluate.halves" in cmd:
            found.append(pid)
    return found


def test_where_to_split() -> None:
    assert split_at(1000, processes=1) is None
    assert split_at(MIN_SPLIT_FRAMES - 1, processes=None) is None
    at = split_at(1000, processes=2)
    assert at == round(1000 * (1 - LATER_SHARE))
    assert split_at(1, processes=2) is None


def _close(one: JointPass, two: JointPass, rel: float = 0.05) -> None:
    """Two measurements of the same pair: the same frames, and the same numbers up to
    where the later half's fresh face detection puts its points (``rel``: how far the
    ratios may move; a short clip's 90th percentile is a few frames)."""
    for a, b in ((one.out, two.out), (one.ref, two.ref)):
        assert len(a) == len(b)
        assert np.array_equal(a.found, b.found)
        both = a.found & b.found
        assert float(np.median(np.abs(a.aperture[both] - b.aperture[both]))) < 0.01
        assert a.flicker is not None and b.flicker is not None
        assert abs(a.flicker - b.flicker) < 0.1 * a.flicker
    r1, r2 = one.result(), two.result()
    assert r1.frames_compared == r2.frames_compared
    assert r1.psnr_outside_lower_face is not None and r2.psnr_outside_lower_face is not None
    assert abs(r1.psnr_outside_lower_face - r2.psnr_outside_lower_face) < 0.2
    assert r1.ssim_outside_lower_face == pytest.approx(r2.ssim_outside_lower_face, abs=1e-3)
    assert one.acc.outside.keys() == two.acc.outside.keys()
    assert one.acc.lip_shift.keys() == two.acc.lip_shift.keys()
    assert r1.sharpness_ratio == pytest.approx(r2.sharpness_ratio, rel=rel)
    assert r1.articulation_ratio == pytest.approx(r2.articulation_ratio, rel=rel)


def test_two_processes_measure_what_one_does(synced_video: Path, portrait_video: Path) -> None:
    n = sum(1 for _ in iter_frames(synced_video))  # the speech's length: longer than its input
    also = partial(os.getpid)  # run beside: by the second process when there is one
    one = measure_with_reference(synced_video, portrait_video, frames=n, processes=1, also=also)
    two = measure_with_reference(synced_video, portrait_video, frames=n, processes=2, also=also)
    assert one.also == os.getpid() and two.also not in (None, os.getpid())
    assert len(one.out) == n and len(one.ref) == 50
    assert (one.processes, two.processes) == (1, 2)  # really measured in two
    _close(one, two, rel=0.1)
    assert not _second_processes()


def test_two_processes_on_a_real_dub(shared_media: Path, tmp_path: Path) -> None:
    clip = mf.shared_file(shared_media, "video_videoretalking_face2.mp4")
    speech = mf.shared_file(shared_media, "audio_SadTalker_deyu_german.wav")
    out = tmp_path / "dub.mp4"
    lipsync.run(clip, speech, out)
    one = measure_with_reference(out, clip, frames=125, processes=1)
    two = measure_with_reference(out, clip, frames=125, processes=2)
    assert one.out.face_rate == 1.0 and two.processes == 2
    _close(one, two)


def test_the_later_half_seeks_and_pairs_the_frames_as_one_pass(
    shared_media: Path, tmp_path: Path
) -> None:
    """The second process seeks by the packets' times to the split frame of both videos
    (no decoding of the frames before it): each video's frame times read from its packets
    are the decoded ones, and two processes measure what one does."""
    from lipsync.media.decode import frame_times

    clip = mf.shared_file(shared_media, "video_videoretalking_face2.mp4")
    speech = mf.shared_file(shared_media, "audio_SadTalker_deyu_german.wav")
    out = tmp_path / "dub.mp4"
    lipsync.run(clip, speech, out)
    for video in (out, clip):
        assert frame_times(video) == [f.time_s for f in iter_frames(video, pixel_format="luma")]
    at = split_at(125, processes=2)
    assert at is not None
    from lipsync.evaluate.halves import measure_in_halves

    parts, _ = measure_in_halves(out, clip, 25.0, 25.0, 10, lambda: None, at)
    first, later = parts
    assert later.pid != os.getpid()  # measured by the second process, not again here
    want = (frame_times(out), frame_times(clip))
    assert first.last_times == (want[0][at - 1], want[1][at - 1])  # type: ignore[index]
    assert later.first_times == (want[0][at], want[1][at])  # type: ignore[index]


def test_a_seek_that_pairs_other_frames_is_measured_again_here(
    shared_media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Times off by one frame (as from a decoder that gives other than one frame per
    packet): the second process's part is not used, its frames are measured here, and the
    numbers are one pass's."""
    import lipsync.evaluate.halves as halves

    clip = mf.shared_file(shared_media, "video_videoretalking_face2.mp4")
    speech = mf.shared_file(shared_media, "audio_SadTalker_deyu_german.wav")
    out = tmp_path / "dub.mp4"
    lipsync.run(clip, speech, out)
    real = halves.frame_times

    def one_frame_late(path: Path) -> list[float] | None:
        times = real(path)
        return None if times is None else times[1:] + [times[-1] + 0.04]

    monkeypatch.setattr(halves, "frame_times", one_frame_late)
    at = split_at(125, processes=2)
    assert at is not None
    parts, _ = halves.measure_in_halves(out, clip, 25.0, 25.0, 10, lambda: None, at)
    assert parts[1].pid == os.getpid()  # measured again here
    assert parts[1].first_times == (real(out)[at], real(clip)[at])  # type: ignore[index]


def test_a_cancel_stops_both_processes(synced_video: Path, portrait_video: Path) -> None:
    requested: list[float] = []
    timer = threading.Timer(0.3, lambda: requested.append(time.monotonic()))
    timer.start()
    with pytest.raises(Canceled):
        measure_with_reference(
            synced_video,
            portrait_video,
            frames=90,
            processes=2,
            should_cancel=lambda: bool(requested) or _slow(),
        )
    assert requested and time.monotonic() - requested[0] < 2.0
    assert not _second_processes()  # the second process is gone too


def _slow() -> bool:
    time.sleep(0.02)  # every poll waits a little, so the cancel lands mid-way
    return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc only")
def test_the_second_process_dies_with_the_first(synced_video: Path, portrait_video: Path) -> None:
    """A killed evaluation (kill -9 of a worker's measurement) leaves no process behind."""
    script = (
        "import sys; from pathlib import Path; "
        "from lipsync.evaluate.reference import measure_with_reference as m; "
        "m(Path(sys.argv[1]), Path(sys.argv[2]), frames=90, processes=2, "
        "should_cancel=lambda: __import__('time').sleep(0.2) or False)"
    )
    first = subprocess.Popen([sys.executable, "-c", script, str(synced_video), str(portrait_video)])
    try:
        deadline = time.monotonic() + 30
        while not _children(first.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = _children(first.pid)
        assert second, "the second process never started"
        first.kill()
        first.wait()
        deadline = time.monotonic() + 2.0
        while Path(f"/proc/{second[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        status = Path(f"/proc/{second[0]}/stat")
        gone = not status.exists() or status.read_text().split()[2] == "Z"
        assert gone, "the second process outlived the first"
    finally:
        if first.poll() is None:
            first.kill()


def test_evaluate_in_two_processes_recognises_the_same_phones(
    synced_video: Path, portrait_video: Path
) -> None:
    """The phones are recognised by the second process then (the recogniser holds the
    interpreter lock): the same phones, the same frames per class."""
    one = evaluate(synced_video, reference=portrait_video, processes=1, lse=False)
    two = evaluate(synced_video, reference=portrait_video, processes=2, lse=False)
    assert one.visemes is not None and two.visemes is not None
    assert one.visemes.phones == two.visemes.phones > 0
    assert one.visemes.open_vowel_frames == two.visemes.open_vowel_frames
    assert one.visemes.bilabial_frames == two.visemes.bilabial_frames
    assert two.reference_metrics is not None and two.reference_metrics.frames_compared > 0
