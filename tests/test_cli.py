"""The ``lipsync`` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import media_factory as mf

LIPSYNC = [sys.executable, "-m", "lipsync.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIPSYNC, *args], capture_output=True, text=True, timeout=300)


def test_run_writes_the_video_and_prints_a_summary(
    tmp_path: Path, portrait_png: Path, speech_wav: Path
) -> None:
    out = tmp_path / "talk.mp4"
    proc = _run(
        "run",
        "--video",
        str(portrait_png),
        "--audio",
        str(speech_wav),
        "--output",
        str(out),
        "--sync-mode",
        "bounce",
    )
    assert proc.returncode == 0, proc.stderr
    assert "frames with a face" in proc.stdout and "real-time factor" in proc.stdout
    assert len(mf.decode_video(out)) > 25


def test_json_result(tmp_path: Path, portrait_png: Path, speech_wav: Path) -> None:
    out = tmp_path / "talk.mp4"
    proc = _run(
        "run",
        "--video",
        str(portrait_png),
        "--audio",
        str(speech_wav),
        "-o",
        str(out),
        "--json",
        "--enhancer",
        "none",
        "--fps",
        "30",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["fps"] == 30 and data["no_face_frames"] == 0 and data["engine"] == "retrieval"
    assert data["frames"] == len(mf.decode_video(out))


def test_input_errors_exit_2_with_a_code_and_no_traceback(tmp_path: Path, speech_wav: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    out = tmp_path / "o.mp4"
    proc = _run("run", "--video", str(fake), "--audio", str(speech_wav), "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error [unsupported_media]:")
    assert "Traceback" not in proc.stderr and not out.exists()
    missing = _run(
        "run", "--video", str(tmp_path / "nope.png"), "--audio", str(speech_wav), "-o", str(out)
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_missing_model_names_the_file(tmp_path: Path, portrait_png: Path, speech_wav: Path) -> None:
    proc = _run(
        "run",
        "--video",
        str(portrait_png),
        "--audio",
        str(speech_wav),
        "-o",
        str(tmp_path / "o.mp4"),
        "--engine",
        "wav2lip",
        "--models-dir",
        str(tmp_path),
    )
    assert proc.returncode == 2
    assert "model_missing" in proc.stderr and "wav2lip" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_probe_and_models_commands(portrait_png: Path, tmp_path: Path) -> None:
    proc = _run("probe", str(portrait_png))
    assert proc.returncode == 0 and json.loads(proc.stdout)["video"]["width"] == 512
    models = _run("models", "--models-dir", str(tmp_path))
    assert models.returncode == 0 and "wav2lip_gan.pth" in models.stdout
