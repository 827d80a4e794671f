"""``python -m benchmarks.evaluate_speed --smoke`` runs end to end and writes its section."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import evaluate_speed


def test_smoke_writes_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "B.md"
    doc.write_text("# Benchmarks\n\nkept\n")
    out = tmp_path / "rounds.json"
    assert (
        evaluate_speed.main(
            ["--smoke", "--out", str(tmp_path / "w"), "--doc", str(doc), "--json", str(out)]
        )
        == 0
    )
    text = doc.read_text()
    assert "kept" in text and evaluate_speed.BEGIN in text and "| 1 |" in text
    rounds = json.loads(out.read_text())
    assert len(rounds) == 1 and all(v > 0 for v in rounds[0].values())
    evaluate_speed.main(["--smoke", "--out", str(tmp_path / "w"), "--doc", str(doc)])
    assert doc.read_text().count(evaluate_speed.BEGIN) == 1  # replaced, not appended
