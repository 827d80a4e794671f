from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest

from lipsync.errors import AudioEmpty, CorruptMedia, TooLarge, UnsupportedMedia
from lipsync.media.probe import probe, probe_bounded
from lipsync.options import MediaLimits
from tests import media_factory as mf


def _png_claiming(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def _wav_claiming(path: Path, seconds: float) -> Path:
    rate = 16000
    n = int(seconds * rate) * 2
    header = b"RIFF" + struct.pack("<I", min(n + 36, 0xFFFFFFFF)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", min(n, 0xFFFFFFFF))
    path.write_bytes(header + b"\x01\x00" * 16000)
    return path


def test_accepts_real_image_audio_and_video(
    portrait_png: Path, speech_wav: Path, portrait_video: Path
) -> None:
    img = probe(portrait_png, kind="video")
    assert img.is_image and img.video is not None
    assert (img.video.width, img.video.height) == (512, 512)
    wav = probe(speech_wav, kind="audio")
    assert wav.audio is not None and wav.audio.sample_rate == 22050 and wav.duration_s > 1
    vid = probe(portrait_video, kind="video")
    assert vid.video is not None and vid.video.codec == "h264"
    assert vid.video.fps == 25 and abs(vid.duration_s - 2.0) < 0.1
    assert vid.audio is not None and vid.audio.codec == "aac"


def test_text_file_named_mp4_is_unsupported(tmp_path: Path) -> None:
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    with pytest.raises(UnsupportedMedia):
        probe(p)


def test_empty_file_is_unsupported(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    p.touch()
    with pytest.raises(UnsupportedMedia, match="empty"):
        probe(p)


def test_hls_playlist_disguised_as_video_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "clip.mp4"
    p.write_text(
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:///etc/passwd\n"
        "#EXTINF:10.0,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(UnsupportedMedia):
        probe(p)


def test_concat_list_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "list.avi"
    p.write_text("ffconcat version 1.0\nfile '/etc/passwd'\n")
    with pytest.raises(UnsupportedMedia):
        probe(p)


def test_huge_resolution_header_is_too_large(tmp_path: Path) -> None:
    with pytest.raises(TooLarge, match="pixels"):
        probe(_png_claiming(tmp_path / "huge.png", 100000, 100000))


def test_zero_size_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises((CorruptMedia, UnsupportedMedia)):
        probe(_png_claiming(tmp_path / "zero.png", 0, 0))


def test_ten_hour_wav_header_is_not_believed(tmp_path: Path) -> None:
    # The header claims ten hours; only one second of samples exists, and that is
    # what the probe reports (so no ten-hour job is planned from a lie).
    info = probe(_wav_claiming(tmp_path / "long.wav", 10 * 3600), kind="audio")
    assert info.duration_s < 2.0


def test_duration_limit(portrait_video: Path) -> None:
    with pytest.raises(TooLarge, match="lasts 2 s"):
        probe(portrait_video, MediaLimits(max_duration_s=1.0))


def test_truncated_video_is_rejected(tmp_path: Path, portrait_video: Path) -> None:
    data = portrait_video.read_bytes()
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises((CorruptMedia, UnsupportedMedia)):
        probe(p, kind="video")


def test_audio_kind_needs_an_audio_stream(portrait_png: Path) -> None:
    with pytest.raises(AudioEmpty):
        probe(portrait_png, kind="audio")


def test_limits_are_applied(portrait_png: Path) -> None:
    with pytest.raises(TooLarge):
        probe(portrait_png, MediaLimits(max_width=256, max_height=256))


def test_probe_bounded_matches_and_reports_codes(tmp_path: Path, portrait_video: Path) -> None:
    info = probe_bounded(portrait_video, kind="video", timeout_s=30)
    assert info == probe(portrait_video, kind="video")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    t0 = time.monotonic()
    with pytest.raises(UnsupportedMedia):
        probe_bounded(bad, timeout_s=30)
    assert time.monotonic() - t0 < 30


def test_real_shared_media_probe(shared_media: Path) -> None:
    info = probe(shared_media / "video_LatentSync_demo1.mp4", kind="video")
    assert info.video is not None and info.video.codec == "hevc"
    assert (info.video.width, info.video.height) == (1080, 1920)
    wav = probe(shared_media / "audio_SadTalker_japanese.wav", kind="audio")
    assert wav.audio is not None and wav.audio.sample_rate == 48000


def test_wav_made_by_tests(tmp_path: Path) -> None:
    p = mf.write_wav(tmp_path / "t.wav", mf.tone(0.5, 8000), 8000, channels=2)
    info = probe(p, kind="audio")
    assert info.audio is not None and info.audio.channels == 2


def test_error_messages_do_not_reveal_server_paths(tmp_path: Path, portrait_video: Path) -> None:
    from lipsync.media.decode import iter_frames

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(portrait_video.read_bytes()[:5000])
    for action in (
        lambda: probe(cut, kind="video"),
        lambda: list(iter_frames(cut)),
        lambda: probe(tmp_path / "missing.wav"),
    ):
        with pytest.raises((CorruptMedia, UnsupportedMedia)) as info:
            action()
        assert str(tmp_path) not in info.value.message
