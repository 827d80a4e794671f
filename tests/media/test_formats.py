"""Every promised container and codec, made here with PyAV, goes through probe + decode, and
a short video per video format through the whole pipeline."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import lipsync
from lipsync.media.audio import load_audio
from lipsync.media.probe import probe
from tests import media_factory as mf

VIDEO_FORMATS = [
    ("mp4", "libx264", "yuv420p", "h264"),
    ("mov", "libx265", "yuv420p", "hevc"),
    ("mkv", "libvpx-vp9", "yuv420p", "vp9"),
    ("webm", "libvpx-vp9", "yuv420p", "vp9"),
    ("avi", "mpeg4", "yuv420p", "mpeg4"),
]
AUDIO_FORMATS = [
    ("wav", "pcm_s16le", 44100, 2),
    ("mp3", "libmp3lame", 44100, 2),
    ("m4a", "aac", 48000, 1),
    ("aac", "aac", 22050, 1),
    ("ogg", "libopus", 48000, 2),
    ("flac", "flac", 96000, 2),
]


def _write_video(path: Path, codec: str, pix_fmt: str, frames: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if codec == "libx265":
            vs.options = {"x265-params": "log-level=none"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
    return path


def _write_audio(path: Path, codec: str, rate: int, channels: int, seconds: float) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    layout = "mono" if channels == 1 else "stereo"
    fmt = {
        "pcm_s16le": "s16",
        "libmp3lame": "fltp",
        "aac": "fltp",
        "libopus": "flt",
        "flac": "s16",
    }[codec]
    with av.open(str(path), "w", format="adts" if path.suffix == ".aac" else None) as c:
        st = c.add_stream(codec, rate=rate, layout=layout)
        data = np.repeat(tone[None, :], channels, axis=0)
        frame_size = 960 if codec == "libopus" else 1024
        for start in range(0, data.shape[1], frame_size):
            chunk = data[:, start : start + frame_size]
            if fmt == "s16":
                arr = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
            elif fmt == "flt":
                arr = np.ascontiguousarray(chunk.T.reshape(1, -1))
            else:
                arr = np.ascontiguousarray(chunk)
            af = av.AudioFrame.from_ndarray(arr, format=fmt, layout=layout)
            af.sample_rate, af.pts = rate, start
            for p in st.encode(af):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    return path


@pytest.mark.parametrize("ext,codec,rate,channels", AUDIO_FORMATS)
def test_audio_formats_decode_at_any_rate_and_channel_count(
    tmp_path: Path, ext: str, codec: str, rate: int, channels: int
) -> None:
    path = _write_audio(tmp_path / f"speech.{ext}", codec, rate, channels, 1.0)
    info = probe(path, kind="audio")
    assert info.audio is not None and info.audio.channels == channels
    samples, got_rate = load_audio(path, sample_rate=16000, channels=1)
    assert got_rate == 16000 and samples.shape[0] == 1
    assert abs(samples.shape[1] / 16000 - 1.0) < 0.1
    assert float(np.abs(samples).max()) > 0.1


@pytest.mark.parametrize("ext,codec,pix_fmt,name", VIDEO_FORMATS)
def test_video_formats_run_through_the_pipeline(
    tmp_path: Path, speech_wav: Path, ext: str, codec: str, pix_fmt: str, name: str
) -> None:
    frames = mf.moving_portrait_frames(25, 256)
    video = _write_video(tmp_path / f"face.{ext}", codec, pix_fmt, frames)
    info = probe(video, kind="video")
    assert info.video is not None and info.video.codec == name
    out = tmp_path / "out.mp4"
    r = lipsync.run(video, speech_wav, out, enhancer="none")
    decoded = mf.decode_video(out)
    assert len(decoded) == r.frames and r.no_face_frames == 0
    assert decoded[0].shape == (256, 256, 3)
    assert abs(len(decoded) / 25 - mf.audio_duration(speech_wav)) <= 1 / 25 + 1e-6
