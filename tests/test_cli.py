"""The ``lipsync`` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import re
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


def _remote_args(tmp_path: Path, server: str, *extra: str) -> list[str]:
    video, audio = tmp_path / "face.png", tmp_path / "speech.wav"
    video.write_bytes(b"not looked at before the push")
    audio.write_bytes(b"not looked at before the push")
    files = ["--video", str(video), "--audio", str(audio), "-o", str(tmp_path / "out.mp4")]
    return ["remote", "run", "--server", server, *files, *extra]


def test_remote_run_offers_only_push_options(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # listening, never accepting: any connection would stay
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        sock.setblocking(False)
        server = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # not a push option: argparse refuses it
        proc = _run(*_remote_args(tmp_path, server, "--crf", "20"))
        assert proc.returncode == 2 and "unrecognized arguments: --crf" in proc.stderr
        # fine for a local run, refused for a push: the client checks before sending
        proc = _run(*_remote_args(tmp_path, server, "--enhancer", "onnx:../x.onnx"))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error [invalid_option]: enhancer"), proc.stderr
        proc = _run(*_remote_args(tmp_path, server, "--max-size", "10"))
        assert proc.returncode == 2 and "max_size must be between" in proc.stderr
        try:
            sock.accept()[0].close()
            connected = True
        except BlockingIOError:
            connected = False
        assert not connected, "nothing may be sent when an option is bad"
    assert not (tmp_path / "out.mp4").exists()


def test_remote_run_unreachable_server_exits_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        proc = _run(*_remote_args(tmp_path, f"http://127.0.0.1:{port}"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error [unreachable]: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_readme_and_help_agree_on_every_run_flag() -> None:
    """Every flag ``lipsync run --help`` lists is in the README's option table, and the
    help shows every form a value may take (``--enhancer onnx:PATH`` included)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("`lipsync run` options", 1)[1].split("\nSync modes:", 1)[0]
    proc = _run("run", "--help")
    assert proc.returncode == 0, proc.stderr
    flags = set(re.findall(r"^\s+(--[a-z][a-z0-9-]*)", proc.stdout, re.M)) - {"--help"}
    flags -= {"--video", "--audio", "--output"}  # the inputs, in the usage line above it
    assert flags, proc.stdout
    missing = sorted(f for f in flags if f"`{f}" not in table)
    assert not missing, f"in --help but not in the README table: {missing}"
    assert "--enhancer {classical,none,onnx:PATH}" in proc.stdout, proc.stdout
    remote = _run("remote", "run", "--help")
    assert "onnx:NAME.onnx" in remote.stdout and "--no-evaluate" in remote.stdout
