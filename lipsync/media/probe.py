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

import argparse
import json
import resource
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from lipsync.errors import (
    AudioEmpty,
    CorruptMedia,
    LipsyncError,
    TooLarge,
    UnsupportedMedia,
)
from lipsync.options import MediaLimits

ProbeKind = Literal["video", "audio", "any"]

# Address space (RLIMIT_AS) of the probe child, Python and FFmpeg's libraries included.
# Sized from measurement (docs/RELIABILITY.md, "Probe memory bound";
# ``python -m benchmarks.probe_bombs``): the child starts at about 125 MiB of address space
# and a legitimate 4096x4096 file, the largest MediaLimits admits, peaks at 342 MiB
# (4:4:4 12-bit HEVC; 274 MiB resident); the limit leaves ~300 MiB above that. Hostile
# headers are refused from the headers well below it (~130 MiB resident); whatever still
# runs into it fails with ``too_large`` (or ``corrupt_media`` where FFmpeg reports it so).
PROBE_MEMORY_LIMIT_BYTES = 640 * 1024**2

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


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int  # as displayed (rotation applied)
    height: int
    fps: float
    fps_num: int
    fps_den: int
    frames: int  # from the header; 0 when unknown
    rotation: int  # degrees, as stored in the display matrix


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str
    duration_s: float
    is_image: bool
    video: VideoInfo | None
    audio: AudioInfo | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaInfo:
        video = VideoInfo(**data["video"]) if data.get("video") else None
        audio = AudioInfo(**data["audio"]) if data.get("audio") else None
        return cls(
            path=data["path"],
            format_name=data["format_name"],
            duration_s=float(data["duration_s"]),
            is_image=bool(data["is_image"]),
            video=video,
            audio=audio,
        )


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
    import av

    limits = limits or MediaLimits()
    path = Path(path)
    if not path.is_file():
        raise UnsupportedMedia(f"{path.name}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedMedia(f"{path.name}: the file is empty")
    if size > limits.max_file_bytes:
        raise TooLarge(f"{path.name}: {size} bytes; the limit is {limits.max_file_bytes}")
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
        video = audio = None
        if vstreams:
            vs = vstreams[0]
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
            video = VideoInfo(
                codec=cc.name,
                width=width,
                height=height,
                fps=float(rate),
                fps_num=rate.numerator,
                fps_den=rate.denominator,
                frames=int(vs.frames or 0),
                rotation=0,
            )
        if astreams:
            acc = astreams[0].codec_context
            if acc.name not in ALLOWED_AUDIO_CODECS:
                raise UnsupportedMedia(f"{path.name}: audio codec {acc.name!r} is not accepted")
            audio = AudioInfo(
                codec=acc.name,
                sample_rate=int(acc.sample_rate or 0),
                channels=int(acc.channels or 0),
            )
            if audio.sample_rate <= 0 or audio.sample_rate > 384_000:
                raise CorruptMedia(f"{path.name}: audio sample rate {audio.sample_rate} Hz")
        info = MediaInfo(
            path=str(path),
            format_name=fmt,
            duration_s=0.0 if is_image else _duration(container, streams),
            is_image=is_image,
            video=video,
            audio=audio,
        )
        if kind == "video" and video is None:
            raise UnsupportedMedia(f"{path.name}: no video or image in the file")
        if kind == "audio" and audio is None:
            raise AudioEmpty(f"{path.name}: no audio stream in the file")
        if video is None and audio is None:
            raise UnsupportedMedia(f"{path.name}: no audio or video stream")
        _check_limits(info, limits)
        # Decode one frame of what we will use, to prove the data is real.
        want = vstreams[0] if (kind != "audio" and video is not None) else astreams[0]
        want.codec_context.thread_count = 1  # one frame: threads would only add buffers
        want.codec_context.options = {"max_pixels": str(max_pixels(limits))}
        rotation = 0
        try:
            got = False
            for frame in container.decode(want):
                if want.type == "video":
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                got = True
                break
        except MemoryError as exc:  # FFmpeg's ENOMEM, or Python's, under the child's limit
            raise TooLarge(
                f"{path.name}: decoding a frame needs more memory than the probe allows"
            ) from exc
        except (av.error.FFmpegError, ValueError) as exc:
            raise CorruptMedia(
                f"{path.name}: the data cannot be decoded ({media_reason(exc)})"
            ) from exc
        if not got:
            raise CorruptMedia(f"{path.name}: no decodable {want.type} frame")
    if video is not None and rotation % 180 != 0:
        video = VideoInfo(
            **{**asdict(video), "width": video.height, "height": video.width, "rotation": rotation}
        )
        info = MediaInfo(**{**asdict(info), "video": video, "audio": audio})
    elif video is not None and rotation:
        video = VideoInfo(**{**asdict(video), "rotation": rotation})
        info = MediaInfo(**{**asdict(info), "video": video, "audio": audio})
    return info


def probe_command(
    path: Path,
    limits: MediaLimits | None = None,
    kind: ProbeKind = "any",
    memory_limit_bytes: int | None = PROBE_MEMORY_LIMIT_BYTES,
) -> list[str]:
    """The command line of the probe child (``python -m lipsync.media.probe ...``)."""
    cmd = [
        sys.executable,
        "-m",
        "lipsync.media.probe",
        str(path),
        "--kind",
        kind,
        "--limits",
        json.dumps(asdict(limits or MediaLimits())),
    ]
    if memory_limit_bytes is not None:
        cmd += ["--memory-limit", str(memory_limit_bytes)]
    return cmd


def probe_bounded(
    path: Path,
    limits: MediaLimits | None = None,
    kind: ProbeKind = "any",
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = PROBE_MEMORY_LIMIT_BYTES,
) -> MediaInfo:
    """:func:`probe` in a child process, killed after ``timeout_s`` (default: the limit's),
    whose address space is capped at ``memory_limit_bytes`` (None: no cap).

    A child that ran out of memory answers ``too_large``; one that died without an answer
    (a crash, or killed by the memory limit) ``corrupt_media`` or ``too_large``; one that
    ran out of time ``unsupported_media``: never an unexplained failure.
    """
    limits = limits or MediaLimits()
    timeout = timeout_s if timeout_s is not None else limits.probe_timeout_s
    cmd = probe_command(path, limits, kind, memory_limit_bytes)
    name = Path(path).name
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, text=True)
    except subprocess.TimeoutExpired as exc:
        raise UnsupportedMedia(f"{name}: probing took longer than {timeout:g} s") from exc
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        if _ran_out_of_memory(proc.stderr):
            raise TooLarge(f"{name}: probing needs more memory than the probe allows") from exc
        raise CorruptMedia(f"{name}: the media probe failed{_how_it_ended(proc)}") from exc
    if proc.returncode == 0 and "info" in data:
        return MediaInfo.from_dict(data["info"])
    err = data.get("error", {})
    raise _error_from_code(err.get("code", "corrupt_media"), err.get("message", "probe failed"))


def _ran_out_of_memory(stderr: str) -> bool:
    """Whether a child that gave no answer said it ran out of memory (Python's
    ``MemoryError``, C's ENOMEM text, C++'s ``bad_alloc``)."""
    return any(mark in stderr for mark in ("MemoryError", "Cannot allocate memory", "bad_alloc"))


def _how_it_ended(proc: subprocess.CompletedProcess[str]) -> str:
    if proc.returncode < 0:
        try:
            return f" (it ended with {signal.Signals(-proc.returncode).name})"
        except ValueError:
            return f" (it ended with signal {-proc.returncode})"
    return f" (exit status {proc.returncode})" if proc.returncode else ""


def _error_from_code(code: str, message: str) -> LipsyncError:
    for cls in (UnsupportedMedia, CorruptMedia, TooLarge, AudioEmpty):
        if cls.code == code:
            return cls(message)
    return CorruptMedia(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lipsync.media.probe")
    parser.add_argument("path", type=Path)
    parser.add_argument("--kind", choices=("video", "audio", "any"), default="any")
    parser.add_argument("--limits", default="{}", help="MediaLimits fields as JSON")
    parser.add_argument(
        "--memory-limit", type=int, default=None, help="address-space limit (RLIMIT_AS), bytes"
    )
    args = parser.parse_args(argv)
    if args.memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
    try:
        limits = MediaLimits(**json.loads(args.limits))
        info = probe(args.path, limits, args.kind)
    except LipsyncError as exc:
        print(json.dumps({"error": exc.to_dict()}))
        return 2
    except MemoryError:  # the address-space limit, met outside the places that expect it
        message = f"{args.path.name}: probing needs more memory than the probe allows"
        print(json.dumps({"error": {"code": "too_large", "message": message}}))
        return 2
    except Exception as exc:  # a crash inside the demuxer must still answer in JSON
        print(
            json.dumps(
                {
                    "error": {
                        "code": "corrupt_media",
                        "message": f"probe failed: {media_reason(exc)}",
                    }
                }
            )
        )
        return 2
    print(json.dumps({"info": info.to_dict()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
