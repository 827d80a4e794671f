"""The retrieval engine on a real clip with head motion (KatieHill turns and tilts her head):
the pose gate keeps mouths from other head poses out, eases between a source mouth and the
frame's own, and no output frame shows doubled lips. Skipped when the shared clip is absent;
the frames stay in pytest's temporary directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lipsync
from lipsync.engines import EngineCache
from lipsync.engines.retrieval import DEFAULT_TUNING, RetrievalEngine
from lipsync.face.tracker import FaceTracker
from lipsync.media.decode import iter_frames
from tests.engines._lips import doubled, lip_bands, lip_threshold

KATIE = "video_SadTalker_WDA_KatieHill_000.mp4"  # 512x512, 25 fps, head turns and tilts
SPEECH = "audio_SadTalker_japanese.wav"
GATE_RANGE = DEFAULT_TUNING.gate_range  # the engine lipsync.run builds has the default tuning
GATE_EASE = DEFAULT_TUNING.gate_ease


@pytest.fixture(scope="module")
def katie_run(shared_media: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    video, speech = shared_media / KATIE, shared_media / SPEECH
    if not video.exists() or not speech.exists():
        pytest.skip(f"{KATIE} or {SPEECH} is not in the shared media")
    out = tmp_path_factory.mktemp("pose") / "katie.mp4"
    cache = EngineCache()
    result = lipsync.run(video, speech, out, engine="retrieval", engines=cache)
    (engine,) = cache._engines.values()
    assert isinstance(engine, RetrievalEngine)
    return video, out, result, dict(engine._shares), dict(engine._mismatch)


def test_pose_gate_keeps_other_poses_out_and_eases(katie_run) -> None:  # type: ignore[no-untyped-def]
    _, _, result, shares, mismatch = katie_run
    assert result.engine_info["path"] == "retrieval"
    gate = result.engine_info["pose_gate"]
    # Her head turns further than the chosen source mouths' poses on some frames: the
    # frame's own mouth takes over part of the way (all of it beyond the gate's far end),
    # and the switch is eased.
    assert gate["eased_frames"] >= 2
    assert min(shares.values()) < 0.5
    assert gate["source_mouth_frames"] > gate["eased_frames"]  # mostly her real mouths
    order = sorted(shares)
    for i in order:
        if mismatch[i] >= GATE_RANGE[1]:
            assert shares[i] == 0.0, (i, mismatch[i], shares[i])
        if mismatch[i] <= GATE_RANGE[0] and i - 1 not in shares:
            assert shares[i] == 1.0
    for a, b in zip(order, order[1:], strict=False):
        if b == a + 1:  # rises at most one easing step a frame
            assert shares[b] - shares[a] <= 1.0 / GATE_EASE + 1e-6, (a, shares[a], shares[b])


def test_no_doubled_lips_around_the_head_movements(katie_run) -> None:  # type: ignore[no-untyped-def]
    video, out, _, shares, mismatch = katie_run
    inputs = [f.image for f in iter_frames(video)]
    tracker = FaceTracker()
    got_in, got_out, moves = [], [], []
    prev = None
    for f in iter_frames(out):
        src = inputs[f.index % len(inputs)]
        lm = tracker.update(src)
        assert lm is not None
        t = lip_threshold(src, lm)
        got_in.append(lip_bands(src, lm, t))
        got_out.append(lip_bands(f.image, lm, t))
        if prev is not None:
            moves.append(float(np.abs(lm[27:36] - prev[27:36]).mean()))
        prev = lm
        if f.index == 100:  # the check itself: a doubled mouth reads as more than 2 bands
            assert got_in[-1] == 2
            assert lip_bands(doubled(src, lm), lm, t) >= 3
    ins, outs = np.array(got_in), np.array(got_out)
    # Two bands on almost every frame, as in the input: a third one only where a wide-open
    # mouth shows the tongue, and never more often than in her own video.
    assert np.all(outs >= 1) and np.all(outs <= 3), np.flatnonzero((outs < 1) | (outs > 3))
    assert np.sum(outs > 2) <= max(3, int(np.sum(ins > 2))), np.flatnonzero(outs > 2)
    # ... and around the largest head movements in particular (10 frames either side).
    biggest = np.argsort(moves)[-3:] + 1
    for k in biggest:
        near = slice(max(0, k - 10), k + 11)
        assert np.sum(outs[near] > 2) <= max(1, int(np.sum(ins[near] > 2))), (k, outs[near])
