"""Audio decoding to float32 arrays at a chosen rate and channel count, in-process (PyAV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from lipsync.errors import AudioEmpty, CorruptMedia
from lipsync.media.probe import media_reason, open_options

AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def load_audio(
    path: Path, sample_rate: int | None = None, channels: int | None = None
) -> tuple[npt.NDArray[np.float32], int]:
    """Decode the first audio stream of ``path`` to ``(samples (C, N) float32, rate)``.

    ``sample_rate`` / ``channels`` None keep the source's (more than two channels are mixed
    down to stereo).
    """
    import av

    try:
        container = av.open(str(path), options=open_options())
    except av.error.FFmpegError as exc:
        raise CorruptMedia(f"{path.name}: cannot be opened ({media_reason(exc)})") from exc
    with container:
        if not container.streams.audio:
            raise AudioEmpty(f"{path.name}: no audio stream")
        stream = container.streams.audio[0]
        src_rate = int(stream.codec_context.sample_rate or 0)
        src_channels = int(stream.codec_context.channels or 1)
        rate = sample_rate or src_rate or 16000
        nch = channels or min(src_channels, 2)
        resampler = av.AudioResampler(
            format="fltp", layout="mono" if nch == 1 else "stereo", rate=rate
        )
        chunks: list[npt.NDArray[np.float32]] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().astype(np.float32, copy=False))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().astype(np.float32, copy=False))
        except av.error.FFmpegError as exc:
            raise CorruptMedia(f"{path.name}: audio decoding failed ({media_reason(exc)})") from exc
    if not chunks:
        raise AudioEmpty(f"{path.name}: the audio stream holds no samples")
    samples = np.concatenate(chunks, axis=1)
    return np.ascontiguousarray(samples.reshape(nch, -1)), rate


def to_mono(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(samples.mean(axis=0, dtype=np.float32))


def check_not_silent(mono: npt.NDArray[np.float32], rate: int, name: str) -> None:
    """Refuse zero-length or digitally silent audio before any heavy work."""
    if mono.size < rate * 0.1:
        raise AudioEmpty(f"{name}: the audio lasts less than 0.1 s")
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak < 1e-3:
        raise AudioEmpty(
            f"{name}: the audio is silent (peak {20 * np.log10(peak + 1e-12):.0f} dBFS)"
        )


def mux_rate(rate: int) -> int:
    """A sample rate the AAC encoder takes: the source's if allowed, else 48 kHz."""
    return rate if rate in AAC_RATES else 48000
