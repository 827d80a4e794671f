"""The load benchmark for a few seconds on loopback: no errors, 429 past the queue depth.

The full run (200 polls/s for 60 s with 20 pushes of 20 MB) is ``python -m benchmarks.load``;
its figures are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.benchmarks import run_benchmark


def test_load_benchmark_smoke(tmp_path: Path) -> None:
    doc, figures = tmp_path / "RELIABILITY.md", tmp_path / "load.json"
    run_benchmark("load", "--smoke", "--doc", str(doc), "--json", str(figures), timeout=300)
    got = json.loads(figures.read_text())
    assert got["ok"] and got["poll_errors"] == 0 and got["push_errors"] == 0
    assert got["polls"] == 150 and got["pushes"] == 2
    assert got["over_depth_status"] == 429 and int(got["over_depth_retry_after"]) > 0
    assert 0 < got["latency_ms"]["p99"] < 250, got["latency_ms"]  # generous: a shared CPU
    text = doc.read_text()
    assert "<!-- load:begin -->" in text and "| Status latency p50 / p90 / p99 / max |" in text


def test_load_benchmark_pollers_smoke(tmp_path: Path) -> None:
    """``--pollers 30``: idle, then while a real worker renders one job (at nice 10 and at
    nice 0), 3 s each; every poll answered, the job still rendering at the window's end."""
    doc, figures = tmp_path / "RELIABILITY.md", tmp_path / "pollers.json"
    args = ["--pollers", "30", "--smoke", "--doc", str(doc), "--json", str(figures)]
    run_benchmark("load", *args)
    windows = {w["case"]: w for w in json.loads(figures.read_text())}
    assert list(windows) == ["idle", "render", "render-nice0"]
    for w in windows.values():
        assert w["errors"] == 0 and w["polls"] > 30 * 10, w  # 30 pollers, ~10/s each
        assert 0 < w["latency_ms"]["p99"] < 1000, w  # generous: a shared CPU
    for case in ("render", "render-nice0"):
        assert windows[case]["job_state_after"] == "running", windows[case]
        assert windows[case]["cpu_cores"]["worker pool"] > 0.1, windows[case]
    text = doc.read_text()
    assert "<!-- load-render:begin -->" in text and "| one job rendering, pool at nice 10" in text
