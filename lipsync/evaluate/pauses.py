"""Is the mouth closed in the pauses? Share of pause frames (silence of 200 ms or more, by
voice activity) whose aperture reads closed.

The same voice activity (silero-vad, 32 ms steps) also says which frames are *speech*
(:func:`speech_frames`), for the articulation ratio of :mod:`.reference`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.audio.vad import speech_probability
from lipsync.evaluate.mouth import CLOSED_APERTURE

MIN_PAUSE_S = 0.2
SPEECH_THRESHOLD = 0.5


@dataclass(frozen=True)
class PauseResult:
    pause_frames: int  # frames inside a pause that show a face
    closed_share: float | None  # None when there is no pause frame with a face
    closed_threshold: float
    pauses: list[tuple[float, float]]  # (start_s, end_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VoiceActivity:
    """Speech or not per ``hop_s`` step of a 16 kHz recording."""

    speech: npt.NDArray[np.bool_]
    hop_s: float
    duration_s: float


def voice_activity(audio16k: npt.NDArray[np.float32]) -> VoiceActivity:
    probs, hop = speech_probability(audio16k)
    return VoiceActivity(probs >= SPEECH_THRESHOLD, hop, audio16k.size / 16000)


def find_pauses(
    audio16k: npt.NDArray[np.float32],
    min_pause_s: float = MIN_PAUSE_S,
    activity: VoiceActivity | None = None,
) -> list[tuple[float, float]]:
    """Silences of at least ``min_pause_s`` seconds, by silero voice activity (computed
    here unless ``activity`` is given)."""
    vad = activity if activity is not None else voice_activity(audio16k)
    speech, hop = vad.speech, vad.hop_s
    out: list[tuple[float, float]] = []
    i, n = 0, speech.size
    while i < n:
        if speech[i]:
            i += 1
            continue
        j = i
        while j < n and not speech[j]:
            j += 1
        if (j - i) * hop >= min_pause_s:
            out.append((i * hop, min(j * hop, vad.duration_s)))
        i = j
    return out


def pause_frames(
    pauses: list[tuple[float, float]], fps: float, n_frames: int
) -> npt.NDArray[np.bool_]:
    """True for frames whose centre time falls inside a pause."""
    t = (np.arange(n_frames) + 0.5) / fps
    mask = np.zeros(n_frames, bool)
    for a, b in pauses:
        mask |= (t >= a) & (t < b)
    return mask


def speech_frames(activity: VoiceActivity, fps: float, n_frames: int) -> npt.NDArray[np.bool_]:
    """True for frames whose centre time falls in a voice-activity step (frames past the
    recording's end are not speech)."""
    mask = np.zeros(n_frames, bool)
    if fps <= 0 or activity.speech.size == 0:
        return mask
    t = (np.arange(n_frames) + 0.5) / fps
    step = np.floor(t / activity.hop_s).astype(np.int64)
    inside = (t < activity.duration_s) & (step < activity.speech.size)
    mask[inside] = activity.speech[step[inside]]
    return mask


def closed_in_pauses(
    aperture: npt.NDArray[np.float32],
    audio16k: npt.NDArray[np.float32],
    fps: float,
    threshold: float = CLOSED_APERTURE,
    activity: VoiceActivity | None = None,
) -> PauseResult:
    pauses = find_pauses(audio16k, activity=activity)
    mask = pause_frames(pauses, fps, aperture.size) & ~np.isnan(aperture)
    count = int(mask.sum())
    share = float(np.mean(aperture[mask] < threshold)) if count else None
    return PauseResult(
        count,
        None if share is None else round(share, 4),
        threshold,
        [(round(a, 3), round(b, 3)) for a, b in pauses],
    )
