"""Segments end to end on a shared talking-face clip: outside the segments the frames and
the original sound pass through, inside the mouth follows each segment's own speech."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

import lipsync
from lipsync.cli import main
from lipsync.errors import InvalidOption
from lipsync.options import RunOptions
from tests import media_factory as mf

KATIE = "video_SadTalker_WDA_KatieHill_000.mp4"  # 8 s, 512x512, 25 fps, with sound
GERMAN, JAPANESE = "audio_SadTalker_deyu_german.wav", "audio_SadTalker_japanese.wav"
SEGMENTS = [
    {"start": 1, "end": 3, "audio": 0},
    {"start": 5, "end": 7, "audio": 1, "audio_start": 0.5, "audio_end": 2.5},
]


def _audio(path: Path) -> np.ndarray:
    from lipsync.media.audio import load_audio

    return load_audio(path)[0].astype(np.float64)


@pytest.fixture(scope="module")
def two_segments(shared_media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seg") / "out.mp4"
    audios = [shared_media / GERMAN, shared_media / JAPANESE]
    options = RunOptions(segments=SEGMENTS)  # the default codec: lossless with segments
    result = lipsync.run(shared_media / KATIE, audios, out, options)
    assert result.frames == 200
    assert result.frames_kept_original["reasons"].get("outside_segments", 0) >= 100
    return out


def test_frames_outside_the_segments_pass_through(two_segments: Path, shared_media: Path) -> None:
    src = mf.decode_video(shared_media / KATIE)
    out = mf.decode_video(two_segments)
    assert len(out) == len(src) == 200
    outside = [i for i in range(200) if not (25 <= i < 75 or 125 <= i < 175)]
    assert min(mf.psnr(out[i], src[i]) for i in outside) >= 45
    inside = [i for i in range(30, 70)] + [i for i in range(130, 170)]
    changed = [mf.psnr(out[i], src[i]) < 45 for i in inside]
    assert np.mean(changed) > 0.8, "the mouth is redrawn inside the segments"


def test_the_original_sound_is_kept_outside_and_replaced_inside(
    two_segments: Path, shared_media: Path
) -> None:
    src, out = _audio(shared_media / KATIE), _audio(two_segments)
    rate = 16000
    n = min(src.shape[1], out.shape[1])
    src, out = src[:, :n], out[:, :n]

    def err_db(a: int, b: int) -> float:
        s, o = src[:, a * rate // 10 : b * rate // 10], out[:, a * rate // 10 : b * rate // 10]
        return 10 * np.log10(np.mean((s - o) ** 2) / np.mean(s**2))

    # Outside (0.1-0.9 s, 3.1-4.9 s, 7.1-7.9 s) the original's own sound, to 16 bits: the
    # default codec ("auto") is FLAC for a job with segments (AAC reads about -35 dB here).
    with av.open(str(two_segments)) as c:
        assert c.streams.audio[0].codec_context.name == "flac"
    assert max(err_db(1, 9), err_db(31, 49), err_db(71, 79)) < -60
    assert err_db(12, 28) > -3, "replaced by the German speech inside"


def test_the_cli_takes_segments_and_several_audio_files(
    shared_media: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segments = tmp_path / "segments.json"
    segments.write_text(json.dumps([{"start": 1, "end": 9, "audio": 0}]))
    args = ["run", "--video", str(shared_media / KATIE), "--audio", str(shared_media / GERMAN)]
    args += ["--audio", str(shared_media / JAPANESE), "--segments", str(segments)]
    args += ["--sync-mode", "silence", "-o", str(tmp_path / "out.mp4"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error [invalid_option]: segments[0].end: is past the end of the video" in err
    assert not (tmp_path / "out.mp4").exists()


def test_several_audio_files_need_segments(shared_media: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidOption) as info:
        lipsync.run(
            shared_media / KATIE,
            [shared_media / GERMAN, shared_media / JAPANESE],
            tmp_path / "out.mp4",
        )
    assert info.value.field == "segments"


def test_a_missing_audio_input_is_refused(shared_media: Path, tmp_path: Path) -> None:
    options = RunOptions(segments=[{"start": 1, "end": 2, "audio": 1}])
    with pytest.raises(InvalidOption) as info:
        lipsync.run(shared_media / KATIE, shared_media / GERMAN, tmp_path / "o.mp4", options)
    assert info.value.field == "segments[0].audio"
