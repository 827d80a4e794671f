"""Bounded media probing: what is this file, and may we process it?

Only local files are read, only an allow-list of demuxers may open them (no HLS, concat,
playlists or anything that can reach another file or the network), and limits on size,
resolution, duration and stream count are checked from the headers before any heavy
decoding. One frame of each used stream is decoded to prove the file is real media.

Memory is bounded before any frame is decoded (issue 17: a 1,254-byte MP4 whose H.264
header claimed 16000x16000 made the probe reach 742 MB): the demuxer may create at most
``max_streams + 1`` streams, and every decoder, including those FFmpeg opens while reading
the headers (``avformat_find_stream_info``), refuses pictures of more than
``max_width * max_height`` pixels (FFmpeg's ``max_pixels``) straight from the sequence
header, so the sizes the headers claim are checked against the limits before a frame
buffer of that size exists. One frame is then decoded, single-threaded.

``probe_bounded`` runs the probe in a child process with a time limit and an address-space
limit (:data:`PROBE_MEMORY_LIMIT_BYTES`; the API uses it on untrusted uploads);
``python -m lipsync.media.probe PATH`` is that child.
"""

from __future__ import annotations

from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

from lipsync.errors import (
    AudioEmpty,
    CorruptMedia,
    TooLarge,
    UnsupportedMedia,
)

# Re-exported: the probe's results and its bounded child are part of this module's API.
from lipsync.media.info import AudioInfo, MediaInfo, VideoInfo  # noqa: E402
from lipsync.media.probe_child import (  # noqa: E402
    PROBE_MEMORY_LIMIT_BYTES,
    ProbeKind,
    probe_bounded,
    probe_command,
)
from lipsync.options import MediaLimits

__all__ = [
    "PROBE_MEMORY_LIMIT_BYTES",
    "AudioInfo",
    "MediaInfo",
    "ProbeKind",
    "VideoInfo",
    "media_reason",
    "open_options",
    "probe",
    "probe_bounded",
    "probe_command",
]


# Demuxers we accept. Anything else (hls, concat, sdp, rtsp, tee, data, ...) is refused.
ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mov",  # mp4 / mov / m4a / 3gp
    "matroska",  # mkv / webm
    "avi",
    "image2",
    "png_pipe",
    "jpeg_pipe",
    "webp_pipe",
    "wav",
    "mp3",
    "aac",
    "ogg",
    "flac",
)
IMAGE_DEMUXERS = frozenset({"image2", "png_pipe", "jpeg_pipe", "webp_pipe"})
ALLOWED_VIDEO_CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "png", "webp", "prores", "mpeg2video"}
)
ALLOWED_AUDIO_CODECS = frozenset(
    {
        "aac",
        "mp3",
        "mp3float",
        "opus",
        "vorbis",
        "flac",
        "alac",
        "pcm_s16le",
        "pcm_s24le",
        "pcm_s32le",
        "pcm_f32le",
        "pcm_f64le",
        "pcm_u8",
        "pcm_s16be",
        "pcm_mulaw",
        "pcm_alaw",
    }
)


def media_reason(exc: BaseException) -> str:
    """FFmpeg's reason for a failure without the file's path (which must not reach users:
    error messages go to API clients)."""
    reason = getattr(exc, "strerror", None)
    text = str(reason) if reason else type(exc).__name__
    return text.strip() or type(exc).__name__


def open_options(limits: MediaLimits | None = None) -> dict[str, str]:
    """Options for every ``av.open`` of untrusted input: local files, allow-listed demuxers.

    With ``limits``, also the memory bounds that apply while the headers are read: at most
    ``max_streams + 1`` streams (one more than accepted, so that too many is seen as such)
    and, for every decoder FFmpeg opens to read stream parameters, at most
    ``max_width * max_height`` pixels per picture (checked from the sequence header, before
    a frame is allocated).
    """
    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(ALLOWED_DEMUXERS)}
    if limits is not None:
        options["max_streams"] = str(limits.max_streams + 1)
        options["max_pixels"] = str(max_pixels(limits))
    return options


def max_pixels(limits: MediaLimits) -> int:
    """FFmpeg's ``max_pixels`` for decoders of untrusted input: the largest accepted picture."""
    return limits.max_width * limits.max_height


def _open_bounded(path: Path, limits: MediaLimits) -> Any:
    """``av.open`` with :func:`open_options` (``limits``), FFmpeg's own errors mapped to
    ours; the stream cap's refusal is told apart from other allocation failures by FFmpeg's
    log line (the demuxers report both as ENOMEM)."""
    import av
    import av.logging

    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            try:
                return av.open(str(path), options=open_options(limits))
            except av.error.MemoryError as exc:
                if any("max_streams" in str(line[2]) for line in logs):
                    raise UnsupportedMedia(
                        f"{path.name}: more than {limits.max_streams} streams; "
                        f"at most {limits.max_streams} are accepted"
                    ) from exc
                raise TooLarge(
                    f"{path.name}: reading the headers needs more memory than the probe allows"
                ) from exc
            except av.error.InvalidDataError as exc:
                raise UnsupportedMedia(
                    f"{path.name}: not a recognised audio, video or image file"
                ) from exc
            except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
                raise UnsupportedMedia(
                    f"{path.name}: cannot be opened as media ({media_reason(exc)})"
                ) from exc
    finally:
        av.logging.set_level(level)


def _rate(stream: Any) -> Fraction | None:
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, attr, None)
        if rate and 0 < float(rate) <= 1000:
            return Fraction(rate)
    return None


def _duration(container: Any, streams: list[Any]) -> float:
    if container.duration and container.duration > 0:
        return float(container.duration) / 1_000_000.0
    best = 0.0
    for s in streams:
        if s.duration and s.time_base:
            best = max(best, float(s.duration * s.time_base))
    return best


def _image_header_size(path: Path) -> tuple[int, int]:
    """Image size from the file header only (no pixel data decoded); (0, 0) if unreadable."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a base dependency
        return 0, 0
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"{path.name}: the image header claims too many pixels ({exc})") from exc
    except Exception:
        return 0, 0


def _check_limits(info: MediaInfo, limits: MediaLimits) -> None:
    if info.video is not None:
        w, h = info.video.width, info.video.height
        if w <= 0 or h <= 0:
            raise CorruptMedia(f"video header claims {w}x{h} pixels")
        if w < 16 or h < 16:
            raise UnsupportedMedia(f"video is {w}x{h}; at least 16x16 pixels are needed")
        if w > limits.max_width or h > limits.max_height:
            raise TooLarge(
                f"video is {w}x{h}; the limit is {limits.max_width}x{limits.max_height} pixels"
            )
    if info.duration_s > limits.max_duration_s:
        raise TooLarge(
            f"media lasts {info.duration_s:.0f} s; the limit is {limits.max_duration_s:.0f} s"
        )


def probe(path: Path, limits: MediaLimits | None = None, kind: ProbeKind = "any") -> MediaInfo:
    """Inspect ``path`` and check it against ``limits``; raise a LipsyncError if refused."""
    limits = limits or MediaLimits()
    path = Path(path)
    _check_file(path, limits)
    container = _open_bounded(path, limits)
    with container:
        fmt = container.format.name
        if not any(name in ALLOWED_DEMUXERS for name in fmt.split(",")):
            raise UnsupportedMedia(f"{path.name}: container format {fmt!r} is not accepted")
        streams = list(container.streams)
        if len(streams) > limits.max_streams:  # the demuxer stopped at max_streams + 1
            raise UnsupportedMedia(
                f"{path.name}: more than {limits.max_streams} streams; "
                f"at most {limits.max_streams} are accepted"
            )
        is_image = fmt in IMAGE_DEMUXERS
        vstreams = [s for s in container.streams.video if s.codec_context is not None]
        astreams = [s for s in container.streams.audio if s.codec_context is not None]
        video = _video_info(path, vstreams[0], is_image) if vstreams else None
        audio = _audio_info(path, astreams[0]) if astreams else None
        info = MediaInfo(
            path=str(path),
            format_name=fmt,
            duration_s=0.0 if is_image else _duration(container, streams),
            is_image=is_image,
            video=video,
            audio=audio,
        )
        _check_kind(path, info, kind)
        _check_limits(info, limits)
        # Decode one frame of what we will use, to prove the data is real.
        want = vstreams[0] if (kind != "audio" and video is not None) else astreams[0]
        rotation = _first_frame_rotation(path, container, want, limits)
    return _rotated(info, rotation)


def _check_file(path: Path, limits: MediaLimits) -> None:
    if not path.is_file():
        raise UnsupportedMedia(f"{path.name}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedMedia(f"{path.name}: the file is empty")
    if size > limits.max_file_bytes:
        raise TooLarge(f"{path.name}: {size} bytes; the limit is {limits.max_file_bytes}")


def _video_info(path: Path, vs: Any, is_image: bool) -> VideoInfo:
    cc = vs.codec_context
    # The decoder's name or the codec's (libdav1d decodes av1)
    canonical = getattr(cc.codec, "canonical_name", cc.name)
    if cc.name not in ALLOWED_VIDEO_CODECS and canonical not in ALLOWED_VIDEO_CODECS:
        raise UnsupportedMedia(f"{path.name}: video codec {cc.name!r} is not accepted")
    rate = _rate(vs) or Fraction(25)
    width, height = int(cc.width or 0), int(cc.height or 0)
    if is_image and (width <= 0 or height <= 0):
        # FFmpeg leaves the size at 0 when it refuses to allocate a huge image;
        # read what the header claims so the refusal says why.
        width, height = _image_header_size(path)
    return VideoInfo(
        codec=cc.name,
        width=width,
        height=height,
        fps=float(rate),
        fps_num=rate.numerator,
        fps_den=rate.denominator,
        frames=int(vs.frames or 0),
        rotation=0,
    )


def _audio_info(path: Path, stream: Any) -> AudioInfo:
    acc = stream.codec_context
    if acc.name not in ALLOWED_AUDIO_CODECS:
        raise UnsupportedMedia(f"{path.name}: audio codec {acc.name!r} is not accepted")
    audio = AudioInfo(
        codec=acc.name,
        sample_rate=int(acc.sample_rate or 0),
        channels=int(acc.channels or 0),
    )
    if audio.sample_rate <= 0 or audio.sample_rate > 384_000:
        raise CorruptMedia(f"{path.name}: audio sample rate {audio.sample_rate} Hz")
    return audio


def _check_kind(path: Path, info: MediaInfo, kind: ProbeKind) -> None:
    if kind == "video" and info.video is None:
        raise UnsupportedMedia(f"{path.name}: no video or image in the file")
    if kind == "audio" and info.audio is None:
        raise AudioEmpty(f"{path.name}: no audio stream in the file")
    if info.video is None and info.audio is None:
        raise UnsupportedMedia(f"{path.name}: no audio or video stream")


def _first_frame_rotation(path: Path, container: Any, want: Any, limits: MediaLimits) -> int:
    """Decode one frame of ``want`` (single-threaded, pixel-capped) to prove the data is
    real; the frame's display rotation in degrees."""
    import av

    want.codec_context.thread_count = 1  # one frame: threads would only add buffers
    want.codec_context.options = {"max_pixels": str(max_pixels(limits))}
    try:
        for frame in container.decode(want):
            return int(getattr(frame, "rotation", 0) or 0) if want.type == "video" else 0
    except MemoryError as exc:  # FFmpeg's ENOMEM, or Python's, under the child's limit
        raise TooLarge(
            f"{path.name}: decoding a frame needs more memory than the probe allows"
        ) from exc
    except (av.error.FFmpegError, ValueError) as exc:
        raise CorruptMedia(
            f"{path.name}: the data cannot be decoded ({media_reason(exc)})"
        ) from exc
    raise CorruptMedia(f"{path.name}: no decodable {want.type} frame")


def _rotated(info: MediaInfo, rotation: int) -> MediaInfo:
    """``info`` with the video's rotation applied (width and height swapped for 90/270)."""
    video = info.video
    if video is None or not rotation:
        return info
    if rotation % 180 != 0:
        turned = {"width": video.height, "height": video.width, "rotation": rotation}
        video = VideoInfo(**{**asdict(video), **turned})
    else:
        video = VideoInfo(**{**asdict(video), "rotation": rotation})
    return MediaInfo(**{**asdict(info), "video": video, "audio": info.audio})


if __name__ == "__main__":
    from lipsync.media.probe_child import main

    raise SystemExit(main())
