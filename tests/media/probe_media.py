"""Legitimate media at the edge of :class:`~lipsync.options.MediaLimits` (4096x4096), one
file per accepted video codec and image format: what the probe's memory bound must admit.

Each video is two frames of noise-free gradients (so encoders are quick even at 16 MP).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

_X265 = {"preset": "ultrafast", "x265-params": "log-level=error"}
# (name, container format, file suffix, encoder, pix_fmt, encoder options)
VIDEO_CODECS: tuple[tuple[str, str, str, str, str, dict[str, str]], ...] = (
    ("h264", "mp4", "mp4", "libx264", "yuv420p", {"preset": "ultrafast"}),
    ("h264 4:4:4 10-bit", "matroska", "mkv", "libx264", "yuv444p10le", {"preset": "ultrafast"}),
    ("hevc", "mp4", "mp4", "libx265", "yuv420p", _X265),
    ("hevc 4:4:4 12-bit", "matroska", "mkv", "libx265", "yuv444p12le", _X265),
    ("vp9", "matroska", "mkv", "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}),
    ("av1", "matroska", "mkv", "libsvtav1", "yuv420p", {"preset": "12"}),
    ("mpeg4", "mp4", "mp4", "mpeg4", "yuv420p", {}),
    ("mjpeg", "avi", "avi", "mjpeg", "yuvj420p", {}),
    ("prores", "mov", "mov", "prores_ks", "yuv422p10le", {"profile": "0"}),
)  # fmt: skip


def gradient(width: int, height: int, shift: int = 0) -> npt.NDArray[np.uint8]:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x + shift) % 256
    img[..., 1] = (y + shift) % 256
    img[..., 2] = ((x + y) / 2).astype(np.uint8)
    return img


def video(
    path: Path,
    encoder: str,
    container: str,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    size: tuple[int, int] = (4096, 4096),
    frames: int = 2,
    audio_s: float = 0.0,
) -> Path:
    """``frames`` frames of ``size`` with ``encoder``; AAC audio of ``audio_s`` if > 0."""
    width, height = size
    with av.open(str(path), "w", format=container) as out:
        v = out.add_stream(encoder, rate=25, options=dict(options or {}))
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        a = out.add_stream("aac", rate=48000) if audio_s > 0 else None
        if a is not None:
            a.layout = "stereo"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(gradient(width, height, 7 * i), format="rgb24")
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            n = int(audio_s * 48000)
            samples = (np.sin(np.arange(n) / 9.0) * 0.2).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([samples, samples])[None, :].reshape(1, -1),
                                            format="flt", layout="stereo")  # fmt: skip
            af.sample_rate, af.time_base, af.pts = 48000, Fraction(1, 48000), 0
            for packet in [*a.encode(af), *a.encode()]:
                out.mux(packet)
    return path


def image(path: Path, size: tuple[int, int] = (4096, 4096)) -> Path:
    """An RGB image (PNG or JPEG by suffix) of ``size``."""
    from PIL import Image

    Image.fromarray(gradient(*size)).save(path)
    return path


def edge_files(root: Path) -> list[tuple[str, Path]]:
    """(name, path) of a 4096x4096 file per accepted video codec, plus PNG and JPEG."""
    files: list[tuple[str, Path]] = []
    for name, container, suffix, encoder, pix_fmt, options in VIDEO_CODECS:
        if encoder not in av.codecs_available:
            continue
        path = root / f"edge-{name.replace(' ', '-').replace(':', '')}.{suffix}"
        files.append((f"{name} 4096x4096", video(path, encoder, container, pix_fmt, options)))
    files.append(("png 4096x4096", image(root / "edge.png")))
    files.append(("jpeg 4096x4096", image(root / "edge.jpg")))
    return files
