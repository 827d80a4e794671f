"""Is the mouth closed in the pauses? Share of pause frames (silence of 200 ms or more, by
voice activity) whose aperture reads closed."""

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


def find_pauses(
    audio16k: npt.NDArray[np.float32], min_pause_s: float = MIN_PAUSE_S
) -> list[tuple[float, float]]:
    """Silences of at least ``min_pause_s`` seconds, by silero voice activity."""
    probs, hop = speech_probability(audio16k)
    speech = probs >= SPEECH_THRESHOLD
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
            out.append((i * hop, min(j * hop, audio16k.size / 16000)))
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


def closed_in_pauses(
    aperture: npt.NDArray[np.float32],
    audio16k: npt.NDArray[np.float32],
    fps: float,
    threshold: float = CLOSED_APERTURE,
) -> PauseResult:
    pauses = find_pauses(audio16k)
    mask = pause_frames(pauses, fps, aperture.size) & ~np.isnan(aperture)
    count = int(mask.sum())
    share = float(np.mean(aperture[mask] < threshold)) if count else None
    return PauseResult(
        count,
        None if share is None else round(share, 4),
        threshold,
        [(round(a, 3), round(b, 3)) for a, b in pauses],
    )
