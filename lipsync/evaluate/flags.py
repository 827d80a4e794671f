"""Per-frame values summed up as "how many frames cross a threshold, and which are worst":
the shape shared by the misplaced- and foreign-mouth measures of ``lipsync evaluate
--reference`` (:mod:`.lipcolour`, :mod:`.outside`, :mod:`.occlusion`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORST = 5  # worst frames listed


@dataclass(frozen=True)
class FrameFlags:
    """``flagged`` of ``frames`` measured frames have a value above ``threshold``;
    ``worst``: the highest values as (frame index, value), highest first."""

    frames: int
    flagged: int
    share: float | None
    max: float | None
    threshold: float
    worst: list[tuple[int, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "flagged": self.flagged,
            "share": self.share,
            "max": self.max,
            "threshold": self.threshold,
            "worst": [{"frame": i, "value": v} for i, v in self.worst],
        }


def summarise(values: dict[int, float], threshold: float, nd: int = 2) -> FrameFlags:
    """The :class:`FrameFlags` of per-frame ``values`` (frame index -> value)."""
    n = len(values)
    flagged = sum(v > threshold for v in values.values())
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:WORST]
    return FrameFlags(
        frames=n,
        flagged=flagged,
        share=round(flagged / n, 4) if n else None,
        max=round(max(values.values()), nd) if n else None,
        threshold=threshold,
        worst=[(i, round(v, nd)) for i, v in ranked],
    )
