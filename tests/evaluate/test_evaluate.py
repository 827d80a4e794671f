"""evaluate() and ``lipsync evaluate`` on videos the project's viseme engine made from a
real photo / video and real (espeak) speech."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lipsync.cli import main
from lipsync.errors import AudioEmpty, UnsupportedMedia
from lipsync.evaluate import evaluate, format_report
from lipsync.evaluate.pauses import find_pauses
from lipsync.evaluate.visemes import Phone, recognise_phones, viseme_contrast
from lipsync.media.audio import load_audio, to_mono
from tests import media_factory as mf


def test_report_on_a_synced_still(
    synced_still: Path, speech_pause: tuple[Path, float, float], tmp_path: Path
) -> None:
    report = evaluate(synced_still, speech_pause[0], models_dir=tmp_path)
    data = report.to_dict()
    json.dumps(data)  # plain JSON types only
    assert data["face_found_rate"] > 0.95
    # The viseme engine drives the mouth from this very speech: in sync, strongly.
    sync = data["sync"]
    assert sync["best_r"] > 0.6
    assert abs(sync["best_lag"]) <= 1
    assert set(sync["r_by_lag"]) == {str(k) for k in range(-5, 6)}
    # The calibrated offset estimate: no offset, and the speech predicts the mouth well.
    assert sync["offset_frames"] is not None and abs(sync["offset_frames"]) <= 1
    assert sync["offset_ms"] == pytest.approx(sync["offset_frames"] * 40.0)
    assert sync["score"] > 0.6
    assert set(sync["calibrated"]["score_by_lag"]) == {str(k) for k in range(-25, 26)}
    # ... and it shuts the mouth in the 1 s pause.
    assert data["pauses"]["pause_frames"] >= 15
    assert data["pauses"]["closed_share"] > 0.8
    assert data["visemes"] is not None
    assert data["reference_metrics"] is None
    assert data["lse"] is None and "syncnet_v2.model" in data["lse_note"]
    text = format_report(data)
    assert "face found rate" in text and "LSE-D / LSE-C" in text


def test_mismatched_speech_scores_lower(
    synced_still: Path, speech_wav: Path, speech_pause: tuple[Path, float, float], tmp_path: Path
) -> None:
    own = evaluate(synced_still, speech_pause[0], models_dir=tmp_path, visemes=False)
    other = evaluate(synced_still, speech_wav, models_dir=tmp_path, visemes=False)
    assert own.sync.best_r is not None and other.sync.best_r is not None
    assert own.sync.best_r > other.sync.best_r + 0.3


def _shifted(path: Path, frames: int, out: Path) -> Path:
    """The speech ``frames`` video frames (25 fps) late (> 0) or early (< 0), same length."""
    samples, _ = load_audio(path, sample_rate=16000, channels=1)
    return mf.write_wav(out, mf.shift_speech(to_mono(samples), frames, 25.0), 16000)


def test_shifted_speech_gives_its_offset_and_a_lower_score(
    synced_still: Path, speech_pause: tuple[Path, float, float], tmp_path: Path
) -> None:
    """Own speech vs the same speech shifted: the offset is found, and own ranks first."""
    own = evaluate(synced_still, speech_pause[0], models_dir=tmp_path, visemes=False, lse=False)
    assert own.sync.calibrated is not None
    for frames in (-8, -4, 4, 8, 20, 40):
        shifted = _shifted(speech_pause[0], frames, tmp_path / f"shift{frames}.wav")
        rep = evaluate(synced_still, shifted, models_dir=tmp_path, visemes=False, lse=False)
        cal = rep.sync.calibrated
        assert cal is not None
        # Speech late by k frames: the picture is k frames early, offset -k.
        if abs(frames) <= 25:
            assert abs(cal.offset_frames + frames - own.sync.calibrated.offset_frames) <= 1, (
                frames,
                cal.offset_frames,
            )
        assert cal.score < own.sync.calibrated.score - 0.1, (frames, cal.score)


def test_audio_defaults_to_the_videos_own_track(
    synced_still: Path, speech_pause: tuple[Path, float, float], portrait_png: Path, tmp_path: Path
) -> None:
    own_track = evaluate(synced_still, models_dir=tmp_path, visemes=False, lse=False)
    given = evaluate(synced_still, speech_pause[0], models_dir=tmp_path, visemes=False, lse=False)
    assert own_track.audio == str(synced_still)
    assert own_track.sync.calibrated is not None and given.sync.calibrated is not None
    assert own_track.sync.calibrated.offset_frames == given.sync.calibrated.offset_frames
    assert abs(own_track.sync.calibrated.score - given.sync.calibrated.score) < 0.05
    silent_video = mf.write_video(tmp_path / "mute.mp4", mf.moving_portrait_frames(10))
    with pytest.raises(UnsupportedMedia, match="no audio track"):
        evaluate(silent_video, models_dir=tmp_path)


def test_reference_metrics(
    synced_video: Path,
    portrait_video: Path,
    speech_pause: tuple[Path, float, float],
    tmp_path: Path,
) -> None:
    report = evaluate(
        synced_video, speech_pause[0], reference=portrait_video, models_dir=tmp_path, visemes=False
    )
    ref = report.reference_metrics
    assert ref is not None
    assert ref.frames_compared == 50  # the input's length; the output loops it
    # Outside the lower face only the re-encode differs.
    assert ref.psnr_outside_lower_face is not None and ref.psnr_outside_lower_face > 33
    assert ref.ssim_outside_lower_face is not None and ref.ssim_outside_lower_face > 0.95
    assert ref.mouth_flicker is not None and ref.reference_mouth_flicker is not None
    # The input's mouth does not move; the synced one does.
    assert ref.mouth_flicker > ref.reference_mouth_flicker


def test_reference_against_itself_is_identical(portrait_video: Path, tmp_path: Path) -> None:
    from lipsync.evaluate.mouth import measure_mouth
    from lipsync.evaluate.reference import compare_with_reference

    track = measure_mouth(portrait_video)
    res = compare_with_reference(portrait_video, portrait_video, track, track)
    assert res.psnr_outside_lower_face == 100.0
    assert res.ssim_outside_lower_face == pytest.approx(1.0)
    assert res.mouth_flicker == res.reference_mouth_flicker


def test_pauses_found_where_the_silence_is(speech_pause: tuple[Path, float, float]) -> None:
    path, start, end = speech_pause
    samples, _ = load_audio(path, sample_rate=16000, channels=1)
    pauses = find_pauses(to_mono(samples))
    assert any(a <= start + 0.15 and b >= end - 0.15 for a, b in pauses), pauses


def test_phones_and_viseme_contrast(speech_wav: Path) -> None:
    samples, _ = load_audio(speech_wav, sample_rate=16000, channels=1)
    phones = recognise_phones(to_mono(samples))
    assert len(phones) > 5
    assert all(p.end_s > p.start_s for p in phones)
    # A mouth that is wide on the open vowels and shut on p/b/m scores a positive contrast.
    fps = 25.0
    n = int(phones[-1].end_s * fps) + 1
    ap = np.full(n, 0.05, np.float32)
    fake = [Phone("AA", 0.0, 0.4), Phone("M", 0.4, 0.6), Phone("AE", 0.6, 1.0)]
    t = (np.arange(n) + 0.5) / fps
    ap[(t < 0.4) | ((t >= 0.6) & (t < 1.0))] = 0.15
    ap[(t >= 0.4) & (t < 0.6)] = 0.0
    res = viseme_contrast(ap, fake, fps)
    assert res.contrast == pytest.approx(0.15)
    assert viseme_contrast(ap, [Phone("AA", 0.0, 0.4)], fps).contrast is None


def test_cli_json_and_table(
    synced_still: Path,
    speech_pause: tuple[Path, float, float],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "evaluate",
        "--video",
        str(synced_still),
        "--audio",
        str(speech_pause[0]),
        "--models-dir",
        str(tmp_path),
    ]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lse"] is None and data["face_found_rate"] > 0.95
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "aperture/envelope best lag / r" in out and "pause frames / closed" in out
    assert "A/V offset" in out and "sync score / confidence" in out


def test_cli_input_errors(
    synced_still: Path, portrait_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = mf.write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    cases = [
        (["--video", str(tmp_path / "nope.mp4"), "--audio", str(silent)], "unsupported_media"),
        (["--video", str(portrait_png), "--audio", str(silent)], "unsupported_media"),
        (["--video", str(synced_still), "--audio", str(silent)], "audio_empty"),
    ]
    for extra, code in cases:
        assert main(["evaluate", *extra]) == 2
        assert f"error [{code}]:" in capsys.readouterr().err


def test_errors_are_typed(portrait_png: Path, synced_still: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMedia):
        evaluate(portrait_png, synced_still)
    silent = mf.write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioEmpty):
        evaluate(synced_still, silent)
