"""The edited-footage section of the speed benchmark: the ratio against the default single
shot and against uncut shots of the same people."""

from __future__ import annotations

from benchmarks.edited import CUT_PEOPLE
from benchmarks.speed import Case, edited_section


def _r(wall: float) -> dict[str, object]:
    return {"timings": {"engine": 1.0}, "frames": 1500, "wall_s": wall, "realtime_factor": 1.0}


def test_the_cuts_are_judged_against_both_baselines() -> None:
    cut = Case("retrieval", 720, 60.0, cuts=6)
    rows = [(Case("retrieval", 720, 60.0), _r(40.0)), (cut, _r(50.0))]
    rows += [
        (Case("retrieval", 720, 60.0, person=p), _r(w))
        for p, w in zip(CUT_PEOPLE, (40.0, 46.0, 46.0), strict=True)
    ]
    text = "\n".join(edited_section(rows))
    assert "1.25x the default single shot's time (target <= 1.15x): **missed**" in text
    assert "(their mean, 44.0 s) it takes 1.14x: met" in text
    assert "one shot of video_videoretalking_face4" in text
    assert text.count("| 720p 60 s,") == 5
