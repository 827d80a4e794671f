"""Streaming decode of video frames (or a still image) to RGB arrays, rotation applied."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lipsync.errors import CorruptMedia
from lipsync.media.probe import open_options
from lipsync.types import RGBImage


@dataclass(frozen=True)
class DecodedFrame:
    index: int  # 0-based decode order
    time_s: float  # presentation time from the stream start
    image: RGBImage


def _rotate(image: RGBImage, rotation: int) -> RGBImage:
    """Apply a display-matrix rotation (degrees counter-clockwise) to an RGB frame."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=k)) if k else image


def _open_video(path: Path) -> tuple[Any, Any]:
    import av

    try:
        container = av.open(str(path), options=open_options())
    except av.error.FFmpegError as exc:
        raise CorruptMedia(f"{path.name}: cannot be opened ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise CorruptMedia(f"{path.name}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def iter_frames(path: Path, start_index: int = 0, start_time_s: float | None = None,
                pixel_format: str = "rgb24") -> Iterator[DecodedFrame]:
    """Yield frames in decode order from ``start_index`` on, one at a time.

    ``pixel_format`` "gray" gives (H, W) luma planes - much cheaper for analysis passes.

    ``start_time_s`` (the time of ``start_index`` from an earlier pass) lets the decoder
    seek to the nearest keyframe instead of decoding from the start.
    """
    import av

    container, stream = _open_video(path)
    with container:
        index = 0
        t0: float | None = None
        base = stream.start_time or 0
        if start_index > 0 and start_time_s is not None and stream.time_base:
            # Seek to a keyframe at or before the wanted time, then count frames from the
            # seek point using their timestamps (index = frames before the time).
            container.seek(int(start_time_s / stream.time_base) + base, stream=stream,
                           backward=True, any_frame=False)
            index = -1  # unknown until we see timestamps
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else frame.dts
                t = float((pts - base) * stream.time_base) if pts is not None and stream.time_base else None
                if t0 is None and index == 0:
                    t0 = t
                if index < 0:
                    # After a seek we only know times; resume counting at the requested frame.
                    if t is None or start_time_s is None:
                        raise CorruptMedia(f"{path.name}: frames without timestamps after seek")
                    if t + 1e-6 < start_time_s:
                        continue
                    index = start_index
                if index >= start_index:
                    image = frame.to_ndarray(format=pixel_format)
                    rot = int(getattr(frame, "rotation", 0) or 0)
                    yield DecodedFrame(index, t if t is not None else 0.0, _rotate(image, rot))
                index += 1
        except av.error.FFmpegError as exc:
            raise CorruptMedia(f"{path.name}: decoding failed at frame {index} ({exc})") from exc


def read_image(path: Path) -> RGBImage:
    """Decode a still image (png/jpg/webp) to RGB."""
    for frame in iter_frames(path):
        return frame.image
    raise CorruptMedia(f"{path.name}: no image data")
