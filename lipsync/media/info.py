"""What a probe learned about a media file (plain values; JSON round trip for the probe
child's answer)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
