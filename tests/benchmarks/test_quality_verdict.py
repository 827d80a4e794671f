"""The quality benchmark's verdict table (retrieval against viseme), on rows made by hand."""

from __future__ import annotations

from benchmarks.quality import verdict


def _row(**kw: float | None) -> dict[str, float | None]:
    base: dict[str, float | None] = dict.fromkeys(
        ("closed", "contrast", "psnr", "flicker", "ref_flicker", "score")
    )
    base.update(kw)
    return base


def _cells(lines: list[str], label: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {label}"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_verdict_compares_the_same_video_pairs_and_says_which_targets_hold() -> None:
    viseme = [
        ("video_a+en", _row(closed=0.8, contrast=0.06, psnr=45.0, flicker=6.0, ref_flicker=5.0)),
        ("video_b+de", _row(closed=0.6, contrast=None, psnr=44.0, flicker=7.0, ref_flicker=6.0)),
        ("image_c+en", _row(closed=1.0, contrast=0.20)),
    ]
    retrieval = [
        ("video_a+en", _row(closed=1.0, contrast=0.05, psnr=41.0, flicker=4.5, ref_flicker=5.0)),
        ("video_b+de", _row(closed=0.9, contrast=None, psnr=39.5, flicker=6.5, ref_flicker=6.0)),
        ("image_c+en", _row(closed=1.0, contrast=0.20)),
    ]
    lines = verdict(retrieval, viseme)
    closed = _cells(lines, "closed in pauses")
    assert closed[1:3] == ["70%", "95%"] and closed[-1] == "yes"  # stills left out
    contrast = _cells(lines, "viseme contrast")
    assert contrast[1:3] == ["0.060", "0.050"] and contrast[-1] == "no"
    psnr = _cells(lines, "PSNR")
    assert psnr[2] == "39.5 dB" and psnr[-1] == "no"  # the worst pair decides
    flicker = _cells(lines, "mouth flicker")
    assert flicker[0] == "mouth flicker (input's own 5.5)"
    assert flicker[2].startswith("5.5 (1 of 2 pairs") and flicker[-1] == "yes"


def test_no_verdict_without_common_video_pairs() -> None:
    assert verdict([("image_c+en", _row(closed=1.0))], [("image_c+en", _row(closed=1.0))]) == []
