"""The edited-footage section of the speed benchmark: the ratio against the default single
shot and against uncut shots of the same people."""

from __future__ import annotations

from benchmarks.edited import CUT_PEOPLE
from benchmarks.speed import Case, edited_section


def _r(wall: float) -> dict[str, object]:
    return {"timings": {"engine": 1.0}, "frames": 1500, "wall_s": wall, "realtime_factor": 1.0}


def test_the_cuts_are_judged_against_both_baselines() -> None:
    cut = Case("retrieval", 720, 60.0, cuts=6)
    rows = [(Case("retrieval", 720, 60.0), _r(40.0)), (cut, _r(48.0))]
    rows += [
        (Case("retrieval", 720, 60.0, person=p), _r(w))
        for p, w in zip(CUT_PEOPLE, (40.0, 46.0, 46.0), strict=True)
    ]
    text = "\n".join(edited_section(rows))
    assert "1.20x the default single shot's time (target <= 1.15x): **missed**" in text
    # face2 has 3 of the 7 shots, KatieHill and face4 2 each: (3 * 40 + 4 * 46) / 7 = 43.4 s
    assert "(43.4 s: their times weighted" in text and "it takes 1.11x: met" in text
    assert "one shot of video_videoretalking_face4" in text
    assert text.count("| 720p 60 s,") == 5
