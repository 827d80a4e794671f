"""The quality benchmark on one shared pair, so the script cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]


def test_quality_benchmark_smoke(tmp_path: Path, shared_media: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.quality",
            "--smoke",
            "--engines",
            "viseme",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = (tmp_path / "QUALITY.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| video_"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "100%", "the face is found in every frame"
    assert float(cells[7]) >= 40, "PSNR outside the lower face"
    sheets = list((tmp_path / "sheets").glob("*.png"))
    assert sheets, "a contact sheet is written"
    sheet = cv2.imread(str(sheets[0]))
    assert sheet is not None and sheet.shape[0] == 288, "input and output crops, stacked"
