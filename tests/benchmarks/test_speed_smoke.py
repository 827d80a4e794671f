"""The speed benchmark on tiny inputs, so the script cannot rot (numbers are not judged)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks import run_benchmark


def test_speed_benchmark_smoke(tmp_path: Path) -> None:
    run_benchmark("speed", "--smoke", "--out", str(tmp_path))
    doc = (tmp_path / "BENCHMARKS.md").read_text()
    assert "error" not in doc
    for engine in ("viseme", "wav2lip-onnx"):
        row = next(line for line in doc.splitlines() if line.startswith(f"| {engine} | 240p"))
        rtf = float(re.search(r"\*\*([0-9.]+)\*\*", row).group(1))  # type: ignore[union-attr]
        assert rtf > 0
    assert re.search(r"Growth from the short to the long input: [+-][0-9.]+%", doc)
    assert (tmp_path / "out_viseme-240p-1s-cpu.mp4").stat().st_size > 1000
