"""Segments: several speech tracks in one job, each on its own time range and its own face.

A segment says: from ``start`` to ``end`` seconds of the output, the mouth follows audio
input number ``audio`` (0-based, in the order the job's audio inputs are given), from
``audio_start`` to ``audio_end`` seconds of it, on ``face`` (``None``: the job's own face
options; ``"auto"``; an index, the n-th face from the left; a point ``[x, y]``). Outside
every segment the frames and the original sound pass through untouched.

:func:`check_segments` is the form check (JSON value -> :class:`Segment` tuple, each error
an :class:`~lipsync.errors.InvalidOption` with a field path such as
``segments[2].audio_end``); :func:`check_against_media` is the check against the inputs'
lengths, run before any work. The rest builds what the pipeline needs: the engine's speech
track (:func:`speech_track`), the output's sound (:func:`mix_track`) and the per-frame
shares of the generated mouth (:func:`segment_shares`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.errors import InvalidOption

#: The most segments a job may carry (the service has its own, lower or equal, setting).
MAX_SEGMENTS = 256
#: Frames over which the picture cross-fades from the original frames into the generated
#: ones: none. A new mouth faded over the frame's own shows both (doubled lips on the seam's
#: contact sheet at 3), so the picture switches at the edge; the seam is eased in the mouth's
#: motion instead: the engine hears the video's own sound up to the edge, cross-faded into
#: the segment's speech (:data:`ENGINE_FADE_S`), so the generated mouth takes over from the
#: original one's shape.
EASE_FRAMES = 0
#: Seconds over which a segment's speech and the original sound are cross-faded.
CROSSFADE_S = 0.010
#: The cross-fade in the engine's speech from the own sound outside the segments into the
#: segment's speech: one frame at 25 fps. Over three frames (0.12 s) the first frames of a
#: segment still moved with the video's own speech, and a 3 s segment's offset read +2..-3
#: frames (``benchmarks.segments``; 0 with one frame, the seams' contact sheets alike).
ENGINE_FADE_S = 0.04

#: What happens to the original sound under a segment (the ``segment_audio`` option).
SEGMENT_AUDIO_MODES: dict[str, str] = {
    "replace": "the original sound is replaced by the segment's speech",
    "duck": "the original sound is kept, lowered by duck_db decibels, under the speech",
    "mix": "the original sound is kept as it is and the speech mixed in",
}

_KEYS = ("start", "end", "audio", "audio_start", "audio_end", "face")

Face = str | int | tuple[int, int] | None


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    audio: int = 0
    audio_start: float = 0.0
    audio_end: float | None = None
    face: Face = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start, "end": self.end, "audio": self.audio}
        if self.audio_start:
            out["audio_start"] = self.audio_start
        if self.audio_end is not None:
            out["audio_end"] = self.audio_end
        if self.face is not None:
            out["face"] = list(self.face) if isinstance(self.face, tuple) else self.face
        return out

    @property
    def face_key(self) -> Face:
        return self.face

    def speech_span(self, audio_s: float) -> tuple[float, float]:
        """The range of its audio input it plays: ``audio_end`` defaults to as much as
        fits the segment (and the file)."""
        end = self.audio_end
        if end is None:
            end = min(audio_s, self.audio_start + (self.end - self.start))
        return self.audio_start, min(end, self.audio_start + (self.end - self.start))


def _fail(path: str, message: str) -> InvalidOption:
    return InvalidOption(f"{path}: {message}", field=path)


def _number(item: dict[str, Any], key: str, path: str, required: bool) -> float | None:
    value = item.get(key)
    if value is None:
        if required:
            raise _fail(f"{path}.{key}", "must be given (seconds)")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(f"{path}.{key}", "must be a number of seconds")
    if value < 0:
        raise _fail(f"{path}.{key}", "must be >= 0")
    return float(value)


def _face(value: Any, path: str) -> Face:
    if value is None or value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 64:
            raise _fail(path, "a face index must be between 0 and 64")
        return value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise _fail(path, 'must be "auto", a face index (0 = leftmost) or a point [x, y]')


def _segment(item: Any, i: int) -> Segment:
    path = f"segments[{i}]"
    if isinstance(item, Segment):
        return item
    if not isinstance(item, dict):
        raise _fail(path, "must be an object with start, end and audio")
    unknown = sorted(set(item) - set(_KEYS))
    if unknown:
        raise _fail(f"{path}.{unknown[0]}", f"unknown key (known: {', '.join(_KEYS)})")
    start = _number(item, "start", path, True)
    end = _number(item, "end", path, True)
    assert start is not None and end is not None
    if end <= start:
        raise _fail(f"{path}.end", f"must be after start ({start:g} s)")
    audio = item.get("audio", 0)
    if isinstance(audio, bool) or not isinstance(audio, int) or audio < 0:
        raise _fail(f"{path}.audio", "must be the 0-based index of one of the job's audio inputs")
    audio_start = _number(item, "audio_start", path, False) or 0.0
    audio_end = _number(item, "audio_end", path, False)
    if audio_end is not None and audio_end <= audio_start:
        raise _fail(f"{path}.audio_end", f"must be after audio_start ({audio_start:g} s)")
    return Segment(
        start, end, audio, audio_start, audio_end, _face(item.get("face"), f"{path}.face")
    )


def _same_face(a: Face, b: Face) -> bool:
    """Whether two segments may animate the same face: only two named, different faces may
    overlap in time."""
    return a is None or b is None or a == b


def check_segments(value: Any, max_segments: int = MAX_SEGMENTS) -> tuple[Segment, ...]:
    """A JSON list of segment objects (or segments) -> the segments, checked for form:
    known keys, numbers, ``end`` after ``start``, sorted by ``start``, no overlap unless
    both name different faces, at most ``max_segments``."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _fail("segments", "must be a JSON list of segment objects")
    if len(value) > max_segments:
        raise _fail("segments", f"at most {max_segments} segments, got {len(value)}")
    segments = tuple(_segment(item, i) for i, item in enumerate(value))
    for i, seg in enumerate(segments):
        if i and seg.start < segments[i - 1].start:
            raise _fail(f"segments[{i}].start", "segments must be sorted by start")
        for j in range(i):
            other = segments[j]
            if seg.start < other.end and _same_face(seg.face, other.face):
                raise _fail(
                    f"segments[{i}].start",
                    f"overlaps segments[{j}] ({other.start:g}-{other.end:g} s); segments may "
                    "overlap only when they name different faces",
                )
    return segments


def check_against_media(
    segments: Sequence[Segment],
    video_s: float,
    audio_s: Sequence[float],
    sync_mode: str,
    is_image: bool = False,
) -> None:
    """The segments against the inputs: each names an audio input the job has, its audio
    range lies within that file, and (in the ``silence``/``cut_off`` modes, and for a
    video) it ends within the video."""
    for i, seg in enumerate(segments):
        path = f"segments[{i}]"
        if seg.audio >= len(audio_s):
            have = f"{len(audio_s)} audio input" + ("" if len(audio_s) == 1 else "s")
            raise _fail(f"{path}.audio", f"no audio input {seg.audio} (the job has {have})")
        length = audio_s[seg.audio]
        if seg.audio_start >= length:
            raise _fail(
                f"{path}.audio_start", f"is past the end of audio {seg.audio} ({length:.2f} s)"
            )
        if seg.audio_end is not None and seg.audio_end > length + 1e-3:
            raise _fail(
                f"{path}.audio_end", f"is past the end of audio {seg.audio} ({length:.2f} s)"
            )
        if not is_image and sync_mode in ("silence", "cut_off") and seg.end > video_s + 1e-3:
            raise _fail(
                f"{path}.end",
                f"is past the end of the video ({video_s:.2f} s) in sync mode {sync_mode}",
            )


def output_seconds(segments: Sequence[Segment], video_s: float, is_image: bool) -> float:
    """How long the output is: the video's length, or the last segment's end when later
    (a still, or a video the sync mode loops)."""
    last = max((s.end for s in segments), default=0.0)
    return last if is_image else max(video_s, last)


def _place(
    out: npt.NDArray[np.float32],
    speech: npt.NDArray[np.float32],
    seg: Segment,
    rate: int,
    fade_s: float = CROSSFADE_S,
) -> tuple[int, int]:
    """Add ``seg``'s range of ``speech`` (C, N) into ``out`` (C, M) at its start, faded in
    and out over ``fade_s``; the output range it covers."""
    a0, a1 = seg.speech_span(speech.shape[-1] / rate)
    piece = speech[..., int(round(a0 * rate)) : int(round(a1 * rate))]
    o0 = int(round(seg.start * rate))
    o1 = min(out.shape[-1], int(round(seg.end * rate)), o0 + piece.shape[-1])
    if o1 <= o0:
        return o0, o0
    piece = piece[..., : o1 - o0].astype(np.float32) * fade_envelope(o1 - o0, rate, fade_s)
    out[..., o0:o1] += piece
    return o0, o1


def fade_envelope(n: int, rate: int, fade_s: float = CROSSFADE_S) -> npt.NDArray[np.float32]:
    """1 over ``n`` samples, ramped from and to 0 over ``fade_s`` at each end."""
    k = max(1, min(n // 2, int(round(fade_s * rate))))
    env = np.ones(n, np.float32)
    ramp = (np.arange(k, dtype=np.float32) + 0.5) / k
    env[:k] = ramp
    env[n - k :] = np.minimum(env[n - k :], ramp[::-1])
    return env


def speech_track(
    segments: Sequence[Segment],
    speech16k: Sequence[npt.NDArray[np.float32]],
    seconds: float,
    own16k: npt.NDArray[np.float32] | None = None,
    fade_s: float = ENGINE_FADE_S,
) -> npt.NDArray[np.float32]:
    """The engine's speech, mono 16 kHz, ``seconds`` long: each segment's audio range
    placed at its start; outside the segments the video's own sound (``own16k``; None:
    silence), cross-faded over ``fade_s``. Only the frames at a segment's edges show what
    the engine draws from the own sound: there the generated mouth is close to the
    original one, so the eased blend of the two shows one mouth, not two."""
    n = int(round(seconds * 16000))
    out = np.zeros((1, n), np.float32)
    keep = np.ones(n, np.float32)  # the own sound's share
    for seg in segments:
        _place(out, speech16k[seg.audio].reshape(1, -1), seg, 16000, fade_s)
        o0, o1 = int(round(seg.start * 16000)), min(n, int(round(seg.end * 16000)))
        if o1 > o0:
            keep[o0:o1] = np.minimum(keep[o0:o1], 1.0 - fade_envelope(o1 - o0, 16000, fade_s))
    if own16k is not None:
        m = min(n, own16k.size)
        out[0, :m] += own16k[:m] * keep[:m]
    return out[0]


def mix_track(
    segments: Sequence[Segment],
    original: npt.NDArray[np.float32] | None,
    speech: Sequence[npt.NDArray[np.float32]],
    rate: int,
    seconds: float,
    mode: str = "replace",
    duck_db: float = 12.0,
) -> npt.NDArray[np.float32]:
    """The output's sound (C, N) at ``rate``: ``original`` (None: silence) with each
    segment's speech laid in its range; under a segment the original is replaced, ducked by
    ``duck_db`` or kept (``mode``), cross-faded at the edges. Samples outside every segment
    are the original's, unchanged."""
    n = int(round(seconds * rate))
    channels = original.shape[0] if original is not None else speech[0].shape[0]
    base = np.zeros((channels, n), np.float32)
    if original is not None:
        m = min(n, original.shape[-1])
        base[:, :m] = original[:, :m]
    gain = np.ones(n, np.float32)  # the original's gain per sample
    lay = np.zeros((channels, n), np.float32)
    floor = {"replace": 0.0, "duck": 10 ** (-duck_db / 20), "mix": 1.0}[mode]
    for seg in segments:
        track = speech[seg.audio]
        if track.shape[0] != channels:
            track = np.repeat(track.mean(axis=0, keepdims=True), channels, axis=0)
        _place(lay, track, seg, rate)
        if floor < 1.0:
            o0, o1 = int(round(seg.start * rate)), min(n, int(round(seg.end * rate)))
            if o1 > o0:
                under = 1.0 - (1.0 - floor) * fade_envelope(o1 - o0, rate)
                gain[o0:o1] = np.minimum(gain[o0:o1], under)
    touched = (gain < 1.0) | np.any(lay != 0, axis=0)
    out = base.copy()
    out[:, touched] = np.clip(base[:, touched] * gain[touched] + lay[:, touched], -1.0, 1.0)
    return out


def segment_shares(
    segments: Sequence[Segment], n_out: int, fps: float, ease: int = EASE_FRAMES
) -> npt.NDArray[np.float32]:
    """Per output frame, the generated mouth's share: 0 outside every segment (the frame is
    kept as it is), 1 inside, eased over ``ease`` frames at each edge inside the segment
    (default: none, see :data:`EASE_FRAMES`)."""
    shares = np.zeros(n_out, np.float32)
    for seg in segments:
        f0 = max(0, int(math.ceil(seg.start * fps - 1e-6)))
        f1 = min(n_out, int(math.ceil(seg.end * fps - 1e-6)))  # first frame after
        if f1 <= f0:
            continue
        idx = np.arange(f0, f1)
        dist = np.minimum(idx - f0 + 1, f1 - idx).astype(np.float32)
        ramp = np.minimum(1.0, dist / float(ease + 1))
        shares[f0:f1] = np.maximum(shares[f0:f1], ramp)
    return shares


def face_groups(segments: Sequence[Segment]) -> list[tuple[Face, tuple[Segment, ...]]]:
    """The segments grouped by the face they animate, in order of first appearance."""
    groups: dict[Any, list[Segment]] = {}
    for seg in segments:
        groups.setdefault(seg.face, []).append(seg)
    return [(face, tuple(segs)) for face, segs in groups.items()]
