"""Streaming decode of video frames (or a still image) to RGB arrays, rotation applied."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.errors import CorruptMedia
from lipsync.media.probe import media_reason, open_options
from lipsync.types import RGBImage


@dataclass(frozen=True)
class DecodedFrame:
    index: int  # 0-based decode order
    time_s: float  # presentation time from the stream start
    image: npt.NDArray[np.uint8]  # in the requested pixel format


def _rotate(image: RGBImage, rotation: int) -> RGBImage:
    """Apply a display-matrix rotation (degrees counter-clockwise) to an RGB frame."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=k)) if k else image


def _open_video(path: Path, threads: int = 0) -> tuple[Any, Any]:
    import av

    try:
        container = av.open(str(path), options=open_options())
    except av.error.FFmpegError as exc:
        raise CorruptMedia(f"{path.name}: cannot be opened ({media_reason(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise CorruptMedia(f"{path.name}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.thread_count = threads
    return container, stream


def to_i420(rgb: RGBImage) -> npt.NDArray[np.uint8]:
    """RGB (H, W, 3) -> I420 (H*3/2, W); odd sizes are padded to even by edge repeat.

    OpenCV's I420 conversions (BT.601) are exact inverses of each other, so pixels the
    pipeline does not change survive the RGB round trip bit for bit.
    """
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420), np.uint8)


def i420_to_rgb(yuv: npt.NDArray[np.uint8]) -> RGBImage:
    return np.asarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420), np.uint8)


def i420_crop_rgb(yuv: npt.NDArray[np.uint8], x1: int, y1: int, x2: int, y2: int) -> RGBImage:
    """RGB of the box (x1, y1, x2, y2) of an I420 frame, the box at even coordinates: the
    same pixels :func:`i420_to_rgb` gives for that box of the whole frame (each pixel
    depends only on its own luma and its 2x2 block's chroma), at the cost of the box."""
    h = yuv.shape[0] * 2 // 3
    w = yuv.shape[1]
    flat = yuv.reshape(-1)
    cw, ch = w // 2, h // 2
    u = flat[h * w : h * w + cw * ch].reshape(ch, cw)
    v = flat[h * w + cw * ch : h * w + 2 * cw * ch].reshape(ch, cw)
    bw, bh = x2 - x1, y2 - y1
    buf = np.empty((bh * 3 // 2, bw), np.uint8)
    buf[:bh] = yuv[y1:y2, x1:x2]
    rest = buf[bh:].reshape(-1)
    q = (bw // 2) * (bh // 2)
    rest[:q] = u[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2].reshape(-1)
    rest[q:] = v[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2].reshape(-1)
    return np.asarray(cv2.cvtColor(buf, cv2.COLOR_YUV2RGB_I420), np.uint8)


def even_box(
    x1: int, y1: int, x2: int, y2: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """The box widened to even coordinates and clipped to the (even) frame size."""
    return (
        max(0, x1 - x1 % 2),
        max(0, y1 - y1 % 2),
        min(width, x2 + x2 % 2),
        min(height, y2 + y2 % 2),
    )


def paste_box(yuv: npt.NDArray[np.uint8], rgb: RGBImage, x1: int, y1: int) -> npt.NDArray[np.uint8]:
    """A copy of I420 ``yuv`` with the RGB image ``rgb`` put in at (x1, y1): even
    coordinates and sizes, inside the frame. Everything outside it stays bit-identical."""
    out = yuv.copy()
    bh, bw = rgb.shape[:2]
    if bw <= 0 or bh <= 0:
        return out
    h = yuv.shape[0] * 2 // 3
    w = yuv.shape[1]
    x2, y2 = x1 + bw, y1 + bh
    sub = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).ravel()
    flat = out.reshape(-1)
    out[y1:y2, x1:x2] = sub[: bw * bh].reshape(bh, bw)
    cw, ch = w // 2, h // 2
    u_plane = flat[h * w : h * w + cw * ch].reshape(ch, cw)
    v_plane = flat[h * w + cw * ch : h * w + 2 * cw * ch].reshape(ch, cw)
    q = (bw // 2) * (bh // 2)
    u_plane[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2] = sub[bw * bh : bw * bh + q].reshape(
        bh // 2, bw // 2
    )
    v_plane[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2] = sub[bw * bh + q :].reshape(bh // 2, bw // 2)
    return out


def paste_region(
    yuv: npt.NDArray[np.uint8], rgb: RGBImage, x1: int, y1: int, x2: int, y2: int
) -> npt.NDArray[np.uint8]:
    """A copy of I420 ``yuv`` with the box (x1, y1, x2, y2) taken from full-frame ``rgb``.

    The box is widened to even coordinates; everything outside it stays bit-identical.
    """
    h = yuv.shape[0] * 2 // 3
    w = yuv.shape[1]
    x1, y1, x2, y2 = even_box(x1, y1, x2, y2, w, h)
    if x2 <= x1 or y2 <= y1:
        return yuv.copy()
    return paste_box(yuv, rgb[y1:y2, x1:x2], x1, y1)


def fit_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """The frame size for a longer-side cap: ``(width, height)`` when it fits (or no cap),
    else scaled to fit with both sides even (x264's yuv420p needs even sizes)."""
    if max_size is None or max(width, height) <= max_size:
        return width, height
    s = max_size / max(width, height)
    return max(2, int(width * s / 2) * 2), max(2, int(height * s / 2) * 2)


def resize_frame(
    image: npt.NDArray[np.uint8], pixel_format: str, size: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    """A decoded frame scaled to ``size`` (width, height; even for "i420"), area-averaged.
    I420 planes are scaled each on its own (no colour conversion)."""
    w, h = size
    if pixel_format == "i420":
        fh = image.shape[0] * 2 // 3
        fw = image.shape[1]
        if (fw, fh) == (w, h):
            return image
        flat = image.reshape(-1)
        cw, ch = fw // 2, fh // 2
        out = np.empty((h * 3 // 2, w), np.uint8)
        oflat = out.reshape(-1)
        out[:h] = cv2.resize(image[:fh], (w, h), interpolation=cv2.INTER_AREA)
        q = (w // 2) * (h // 2)
        for k in range(2):
            plane = flat[fh * fw + k * cw * ch : fh * fw + (k + 1) * cw * ch].reshape(ch, cw)
            small = cv2.resize(plane, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            oflat[h * w + k * q : h * w + (k + 1) * q] = small.reshape(-1)
        return out
    if image.shape[1] == w and image.shape[0] == h:
        return image
    return np.asarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), np.uint8)


_PLANAR_420 = frozenset({"yuv420p", "yuv420p10le", "yuv420p12le", "nv12", "p010le"})


def _convert(frame: Any, pixel_format: str) -> npt.NDArray[np.uint8]:
    rot = int(getattr(frame, "rotation", 0) or 0)
    even = frame.width % 2 == 0 and frame.height % 2 == 0
    if pixel_format in ("i420", "luma"):
        # Limited-range 4:2:0 sources are taken plane for plane; anything else (RGB images,
        # full-range JPEG YUV, 4:2:2/4:4:4, rotated or odd-sized frames) goes through RGB
        # and OpenCV's conversion (measured 45 dB luma vs 29 dB for swscale's rgb->yuv here).
        if rot % 360 == 0 and even and frame.format.name in _PLANAR_420:
            yuv = frame.to_ndarray(format="yuv420p")
            return yuv[: frame.height] if pixel_format == "luma" else yuv
        yuv = to_i420(_rotate(frame.to_ndarray(format="rgb24"), rot))
        return yuv[: yuv.shape[0] * 2 // 3] if pixel_format == "luma" else yuv
    return _rotate(frame.to_ndarray(format=pixel_format), rot)


def frame_times(path: Path) -> list[float] | None:
    """The presentation times of the video's frames in order, as :func:`iter_frames`
    reports them, read from its packets without decoding any (a few milliseconds for a
    minute of video); None when a packet has no timestamp or the file can't be read.
    The k-th time is frame k's wherever the decoder gives one frame per packet, which
    a caller that seeks by it checks against a decoded frame (lipsync.evaluate.halves)."""
    import av

    try:
        container, stream = _open_video(path, 1)
    except CorruptMedia:
        return None
    try:
        with container:
            base = stream.start_time or 0
            tb = stream.time_base
            if not tb:
                return None
            pts = []
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's flush packet
                    continue
                if packet.pts is None:
                    return None
                pts.append(packet.pts)
    except av.error.FFmpegError:
        return None
    return [float((p - base) * tb) for p in sorted(pts)]


def iter_frames(
    path: Path,
    start_index: int = 0,
    start_time_s: float | None = None,
    pixel_format: str = "rgb24",
    size: tuple[int, int] | None = None,
    threads: int = 0,
) -> Iterator[DecodedFrame]:
    """Yield frames in decode order from ``start_index`` on, one at a time.

    ``pixel_format``: "rgb24" (H, W, 3); "i420" (H*3/2, W) planar YUV, sizes padded to even
    (the pipeline's working format: no colour conversion for pixels it does not touch);
    "luma" (H, W) the Y plane only (cheapest, for analysis). Rotation is always applied.

    ``start_time_s`` (the time of ``start_index`` from an earlier pass, as this function
    reports it) lets the decoder seek to the nearest keyframe instead of decoding from the
    start. ``threads``: FFmpeg's decoding threads (0: its own choice, one per core and
    one more; 1 for a caller that keeps every core busy itself).
    """
    import av

    container, stream = _open_video(path, threads)
    with container:
        index = 0
        base = stream.start_time or 0
        if start_index > 0 and start_time_s is not None and stream.time_base:
            # Seek to a keyframe at or before the wanted time, then count frames from the
            # seek point using their timestamps.
            container.seek(
                int(start_time_s / stream.time_base) + base,
                stream=stream,
                backward=True,
                any_frame=False,
            )
            index = -1  # unknown until we see timestamps
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else frame.dts
                t = (
                    float((pts - base) * stream.time_base)
                    if pts is not None and stream.time_base
                    else None
                )
                if index < 0:
                    # After a seek we only know times; resume counting at the requested frame.
                    if t is None or start_time_s is None:
                        raise CorruptMedia(f"{path.name}: frames without timestamps after seek")
                    if t + 1e-6 < start_time_s:
                        continue
                    index = start_index
                if index >= start_index:
                    image = _convert(frame, pixel_format)
                    if size is not None:
                        image = resize_frame(image, pixel_format, size)
                    yield DecodedFrame(index, t if t is not None else 0.0, image)
                index += 1
        except av.error.FFmpegError as exc:
            raise CorruptMedia(
                f"{path.name}: decoding failed at frame {index} ({media_reason(exc)})"
            ) from exc


def read_image(
    path: Path, pixel_format: str = "rgb24", size: tuple[int, int] | None = None
) -> npt.NDArray[np.uint8]:
    """Decode a still image (png/jpg/webp), scaled to ``size`` if given."""
    for frame in iter_frames(path, pixel_format=pixel_format, size=size):
        return frame.image
    raise CorruptMedia(f"{path.name}: no image data")
