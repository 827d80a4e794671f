"""The load benchmark for a few seconds on loopback: no errors, 429 past the queue depth.

The full run (200 polls/s for 60 s with 20 pushes of 20 MB) is ``python -m benchmarks.load``;
its figures are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_load_benchmark_smoke(tmp_path: Path) -> None:
    doc, figures = tmp_path / "RELIABILITY.md", tmp_path / "load.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.load",
            "--smoke",
            "--doc",
            str(doc),
            "--json",
            str(figures),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    got = json.loads(figures.read_text())
    assert got["ok"] and got["poll_errors"] == 0 and got["push_errors"] == 0
    assert got["polls"] == 150 and got["pushes"] == 2
    assert got["over_depth_status"] == 429 and int(got["over_depth_retry_after"]) > 0
    assert 0 < got["latency_ms"]["p99"] < 250, got["latency_ms"]  # generous: a shared CPU
    text = doc.read_text()
    assert "<!-- load:begin -->" in text and "| Status latency p50 / p90 / p99 / max |" in text
