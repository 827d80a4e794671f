"""``python -m benchmarks.landmarks``: one pair made with each landmark model, measured and
judged; its section replaces the one between its markers (skipped without the shared clips)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import landmarks
from benchmarks.common import SHARED_MEDIA


def test_one_pair_with_each_model_and_the_section_replaced(tmp_path: Path) -> None:
    if not SHARED_MEDIA.is_dir():
        pytest.skip("../shared/media is not present")
    section, summary = landmarks.run(tmp_path / "w", smoke=True)
    assert summary["pairs"] == 1
    assert all(len(summary["wall_s"][m]) == 1 for m in landmarks.MODELS)
    for model in landmarks.MODELS:
        assert f"`--landmarks {model}`:" in section
        assert any((tmp_path / "w").glob(f"{model}__*.mp4"))
    assert "| **rows met** | all |" in section
    doc = tmp_path / "Q.md"
    doc.write_text(f"# Quality\n\nbefore\n{landmarks.BEGIN}\nold\n{landmarks.END}\nafter\n")
    landmarks.write_doc(doc, section)
    text = doc.read_text()
    assert "old" not in text and "before" in text and "after" in text
    assert text.count(landmarks.BEGIN) == 1 and text.count(landmarks.END) == 1
