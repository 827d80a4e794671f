"""The occlusion benchmark's table on one clean shared clip (skipped without it)."""

from __future__ import annotations

import pytest

from benchmarks import edited
from benchmarks.occlusion import main
from tests.media_factory import SHARED_MEDIA


def test_the_table_names_the_clip_and_its_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    if not (SHARED_MEDIA / edited.KATIE).is_file():
        pytest.skip(f"{edited.KATIE} is not in ../shared/media")
    assert main(["--clips", edited.KATIE, "--objects", ""]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| clean clip | frames |")
    row = next(line for line in lines if line.startswith(f"| {edited.KATIE} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[1]) > 150  # frames with a face
    assert cells[3].endswith("%") and float(cells[3][:-1]) <= 2.0  # below the mouth
    assert cells[4] == "0"  # covered
