"""The quality benchmark on one shared pair, so the script cannot rot."""

from __future__ import annotations

from pathlib import Path

import cv2

from tests.benchmarks import run_benchmark


def test_quality_benchmark_smoke(tmp_path: Path, shared_media: Path) -> None:
    run_benchmark("quality", "--smoke", "--engines", "viseme", "--out", str(tmp_path))
    doc = (tmp_path / "QUALITY.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| video_"))
    header = next(line for line in doc.splitlines() if line.startswith("| clip |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(names, (c.strip() for c in row.strip("|").split("|")), strict=True))
    assert cells["face found"] == "100%", "the face is found in every frame"
    assert float(cells["PSNR out dB"]) >= 40, "PSNR outside the lower face"
    assert cells["A/V offset"] in {"-1", "+0", "+1"}, "the calibrated offset is reported"
    sheets = list((tmp_path / "sheets").glob("*.png"))
    assert sheets, "a contact sheet is written"
    sheet = cv2.imread(str(sheets[0]))
    assert sheet is not None and sheet.shape[0] == 288, "input and output crops, stacked"
