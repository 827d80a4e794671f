"""Test inputs the tests make themselves: a real face photo (scikit-image's astronaut),
speech from espeak-ng, tones, silence and small videos written with PyAV."""

from __future__ import annotations

import math
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def shared_file(shared: Path, name: str) -> Path:
    """``shared/name``, or skip the test cleanly when the shared media lacks it."""
    import pytest

    path = shared / name
    if not path.is_file():
        pytest.skip(f"{name} is not in ../shared/media")
    return path


def astronaut() -> npt.NDArray[np.uint8]:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def write_png(path: Path, rgb: npt.NDArray[np.uint8]) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_wav(path: Path, samples: npt.NDArray[np.float32], rate: int, channels: int = 1) -> Path:
    data = np.clip(samples, -1, 1)
    if channels > 1:
        data = np.repeat(data[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((data * 32767).astype("<i2").tobytes())
    return path


def espeak(path: Path, text: str, speed: int = 160) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is required by the tests: run scripts/bootstrap.sh")
    subprocess.run(
        [exe, "-v", "en-us", "-s", str(speed), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def speech_with_pause(path: Path) -> tuple[Path, float, float]:
    """Speech, one second of silence, speech. Returns the file and the pause (start, end)."""
    a = path.with_name(path.stem + "_a.wav")
    b = path.with_name(path.stem + "_b.wav")
    espeak(a, "Hello there, my friend.")
    espeak(b, "Papa bought a map.")
    from lipsync.media.audio import load_audio

    sa, rate = load_audio(a, sample_rate=16000, channels=1)
    sb, _ = load_audio(b, sample_rate=16000, channels=1)

    # espeak pads with a little silence; trim it so the pause is exactly where we say.
    def trim(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        idx = np.flatnonzero(np.abs(x) > 0.02)
        return x[idx[0] : idx[-1] + 1]

    xa, xb = trim(sa[0]), trim(sb[0])
    gap = np.zeros(16000, np.float32)
    write_wav(path, np.concatenate([xa, gap, xb]), 16000)
    start = xa.size / 16000
    return path, start, start + 1.0


def shift_speech(
    speech: npt.NDArray[np.float32], frames: int, fps: float, rate: int = 16000
) -> npt.NDArray[np.float32]:
    """``speech`` ``frames`` video frames late (> 0, silence first) or early (< 0, silence
    at the end), same length: what a player plays when the sound is out of sync."""
    n = int(round(abs(frames) * rate / fps))
    pad = np.zeros(n, speech.dtype)
    if frames > 0:
        return np.concatenate([pad, speech])[: speech.size]
    return np.concatenate([speech[n:], pad])


def tone(seconds: float, rate: int = 44100, freq: float = 220.0) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def write_video(
    path: Path,
    frames: list[npt.NDArray[np.uint8]],
    fps: int = 25,
    codec: str = "libx264",
    audio: npt.NDArray[np.float32] | None = None,
    audio_rate: int = 44100,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write RGB frames (and optional mono audio) with PyAV."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height = frames[0].shape[1], frames[0].shape[0]
        vs.pix_fmt = pix_fmt
        if codec == "libx264":
            vs.options = {"crf": "12", "preset": "ultrafast"}
        ast = None
        if audio is not None:
            ast = c.add_stream("aac", rate=audio_rate, layout="mono")
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if ast is not None and audio is not None:
            af = av.AudioFrame.from_ndarray(
                audio[None, :].astype(np.float32), format="fltp", layout="mono"
            )
            af.sample_rate = audio_rate
            af.pts = 0
            for p in ast.encode(af):
                c.mux(p)
            for p in ast.encode(None):
                c.mux(p)
    return path


def moving_portrait_frames(n: int, size: int = 320) -> list[npt.NDArray[np.uint8]]:
    """The astronaut photo drifting a few pixels, like a head moving slightly."""
    img = astronaut()
    out = []
    for i in range(n):
        dx = 3.0 * math.sin(i / 7.0)
        dy = 2.0 * math.cos(i / 9.0)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
        out.append(cv2.resize(moved, (size, size), interpolation=cv2.INTER_AREA))
    return out


def index_frames(n: int, w: int = 64, h: int = 48) -> list[npt.NDArray[np.uint8]]:
    """Frames whose brightness encodes their index (to check which frame is shown)."""
    return [np.full((h, w, 3), 20 + i * 3, np.uint8) for i in range(n)]


def decode_video(path: Path) -> list[npt.NDArray[np.uint8]]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def audio_duration(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        total = 0
        for f in c.decode(s):
            total += f.samples
        return total / s.codec_context.sample_rate


def psnr(
    a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_] | None = None
) -> float:
    da = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        da = da[mask]
    mse = float(np.mean(da**2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)
