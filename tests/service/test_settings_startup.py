"""Settings are checked when the API and the worker start: a bad value stops them at once
with one clear line per variable, not a traceback, and not a failure in every job later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STARTS = {
    "api": "from app.main import create_app; create_app()",
    "worker": "import worker.celery_app",
    "healthcheck": "from worker.healthcheck import main; main()",
}


def _start(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNC_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("who", sorted(STARTS))
@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"LIPSYNC_DEFAULT_ENGINE": "wav2lib"}, "LIPSYNC_DEFAULT_ENGINE: engine must be one of"),
        ({"LIPSYNC_DEFAULT_ENHANCER": "sharp"}, "LIPSYNC_DEFAULT_ENHANCER: enhancer must be"),
        ({"LIPSYNC_DEVICE": "tpu"}, "LIPSYNC_DEVICE: device must be one of auto, cpu, cuda"),
        ({"LIPSYNC_MAX_OUTPUT_SIZE": "20000"}, "max_size must be between 64 and 8192"),
        (
            {"LIPSYNC_SOFT_TIME_LIMIT_S": "5000", "LIPSYNC_HARD_TIME_LIMIT_S": "4000"},
            "LIPSYNC_HARD_TIME_LIMIT_S must be greater than the soft limit",
        ),
    ],
)
def test_bad_settings_stop_start_up_with_a_clear_line(
    who: str, env: dict[str, str], words: str
) -> None:
    proc = _start(STARTS[who], **env)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("lipsync: bad settings\n"), proc.stderr
    assert words in proc.stderr, proc.stderr


def test_good_settings_start() -> None:
    proc = _start(STARTS["api"] + "; import worker.celery_app", LIPSYNC_DEFAULT_ENGINE="viseme")
    assert proc.returncode == 0, proc.stderr
