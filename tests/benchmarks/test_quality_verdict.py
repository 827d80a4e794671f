"""The quality benchmark's judgement table (issue 13's rows per engine), on rows made by hand."""

from __future__ import annotations

from benchmarks.quality import judgement

KEYS = ("articulation", "offset", "score", "closed", "psnr", "sharpness")


def _row(**kw: float | None) -> dict[str, float | None]:
    base: dict[str, float | None] = dict.fromkeys(KEYS)
    base.update(kw)
    return base


def _good(**kw: float | None) -> dict[str, float | None]:
    """A video pair that meets every target."""
    row = _row(articulation=1.0, offset=0, score=0.7, closed=0.9, psnr=45.0, sharpness=0.95)
    row.update(kw)
    return row


def _cells(lines: list[str], label: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {label}"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_each_row_judged_per_engine_over_the_same_video_pairs() -> None:
    results = {
        "viseme": [
            ("video_a+en", _good(articulation=0.97, score=0.74, closed=0.6, sharpness=0.94)),
            ("video_b+de", _good(articulation=1.28, offset=-2, score=0.70, closed=None)),
            ("image_c+en", _good(articulation=None, psnr=None, sharpness=None)),
        ],
        "retrieval": [
            ("video_a+en", _good(articulation=0.42, score=0.50, closed=1.0, sharpness=0.24)),
            ("video_b+de", _good(articulation=0.9, offset=-16, score=0.55, closed=0.9, psnr=39.5)),
            ("image_c+en", _good(articulation=None, psnr=None, sharpness=None, score=0.99)),
            ("video_d+fr", _good(articulation=3.0)),  # viseme did not run it: left out
        ],
        "hybrid": [
            ("video_a+en", _good(articulation=0.9, score=0.75)),
            ("video_b+de", _good(articulation=1.1, offset=1, score=0.72, closed=0.82)),
        ],
    }
    lines = judgement(results, default_engine="retrieval")
    header = _cells(lines, "criterion")
    assert header == ["criterion", "target", "`viseme`", "`retrieval`", "`hybrid`"]

    art = _cells(lines, "articulation")
    assert art[1] == "0.85 .. 1.3"
    assert art[2:] == ["0.97 .. 1.28 (yes)", "0.42 .. 0.90 (no)", "0.90 .. 1.10 (yes)"]
    offset = _cells(lines, "calibrated A/V offset")
    assert offset[2:] == ["-2 (no)", "-16 (no)", "+1 (yes)"]  # the worst pair shown
    # Means over the two common video pairs (the still's 0.99 is not counted).
    score = _cells(lines, "mean sync score")
    assert score[1] == "at least `viseme`'s"
    assert score[2:] == ["0.720 (yes)", "0.525 (no)", "0.735 (yes)"]
    closed = _cells(lines, "closed in pauses")  # over pairs with pauses only
    assert closed[2:] == ["60% (no)", "95% (yes)", "86% (yes)"]
    psnr = _cells(lines, "PSNR")
    assert psnr[2:] == ["45.0 dB (yes)", "39.5 dB (no)", "45.0 dB (yes)"]
    sharp = _cells(lines, "mouth sharpness")
    assert sharp[2:] == ["0.94 (yes)", "0.24 (no)", "0.95 (yes)"]

    met = _cells(lines, "**rows met**")
    assert met[2:] == ["**4 of 6**", "**1 of 6**", "**6 of 6**"]
    summary = lines[-1]
    assert summary.startswith("Most rows met: `hybrid` (6), over 2 video pairs.")
    assert "configured default (`RunOptions().engine`) is `retrieval`" in summary
    assert summary.endswith("it is not the one with the most rows met.")


def test_missing_numbers_do_not_meet_a_row_and_ties_are_named() -> None:
    results = {
        "viseme": [("video_a+en", _good()), ("video_b+en", _good())],
        "other": [("video_a+en", _good()), ("video_b+en", _good(sharpness=None, closed=None))],
    }
    lines = judgement(results, default_engine="viseme")
    sharp = _cells(lines, "mouth sharpness")
    assert sharp[2:] == ["0.95 (yes)", "0.95 (1 of 2 pairs) (no)"]  # a pair without it fails
    closed = _cells(lines, "closed in pauses")
    assert closed[2:] == ["90% (yes)", "90% (yes)"]  # the mean over pairs that have pauses
    assert _cells(lines, "**rows met**")[2:] == ["**6 of 6**", "**5 of 6**"]
    assert lines[-1].startswith("Most rows met: `viseme` (6)")
    assert lines[-1].endswith("it is the one with the most rows met.")

    tied = judgement({"a": [("video_a+en", _good())], "b": [("video_a+en", _good())]}, "b")
    assert tied[-1].startswith("Most rows met: `a`, `b` (tied at 5)")
    # No `viseme` in the run: the sync score row is shown but not judged.
    assert _cells(tied, "mean sync score")[2:] == ["0.700 (-)", "0.700 (-)"]
    assert _cells(tied, "**rows met**")[2:] == ["**5 of 5**", "**5 of 5**"]


def test_no_judgement_without_common_video_pairs() -> None:
    stills = {"viseme": [("image_c+en", _good())], "retrieval": [("image_c+en", _good())]}
    assert judgement(stills, "retrieval") == []
    apart = {"viseme": [("video_a+en", _good())], "retrieval": [("video_b+en", _good())]}
    assert judgement(apart, "retrieval") == []
    assert judgement({}, "retrieval") == []
