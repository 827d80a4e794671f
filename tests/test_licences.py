"""Licences of the bundled models, and commercial-only mode (CLI, library, service routes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lipsync.errors import InvalidOption
from lipsync.licences import (
    BUNDLED,
    BUNDLED_BY_KEY,
    COMMERCIAL_ONLY_ENV,
    IBUG_NOTE,
    LicenceRestricted,
    check_commercial_use,
    report,
)
from lipsync.models import model_by_filename
from lipsync.options import RunOptions

ROOT = Path(__file__).resolve().parents[1]
LIPSYNC = [sys.executable, "-m", "lipsync.cli"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LIPSYNC, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def test_every_bundled_model_file_is_installed_and_described() -> None:
    for c in BUNDLED:
        assert c.name and c.package and c.used_for and c.licence and c.source and c.training_data
        assert c.commercial in (True, False, None)
        path = c.path()
        if c.location.startswith("package:"):  # shipped in an installed wheel
            assert path is not None and path.is_file(), c.file
    # The 68-point model is the one the default path must not need: flagged, note quoted.
    sp68 = BUNDLED_BY_KEY["dlib-shape-predictor-68"]
    assert sp68.commercial is False and sp68.note == IBUG_NOTE
    assert "excludes commercial use" in sp68.note
    for key in ("dlib-hog-face-detector", "mediapipe-face-mesh", "silero-vad"):
        assert BUNDLED_BY_KEY[key].commercial is True


def test_models_json_lists_bundled_models_with_commercial_flags(tmp_path: Path) -> None:
    proc = _run("models", "--json", "--models-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["commercial_only"] is False
    bundled = {b["file"]: b for b in data["bundled"]}
    assert set(bundled) == {c.file for c in BUNDLED}
    sp68 = bundled["shape_predictor_68_face_landmarks.dat"]
    assert sp68["commercial"] is False and sp68["commercial_use"] == "NO"
    assert "Stefanos Zafeiriou" in sp68["note"] and sp68["present"] is True
    assert bundled["face_landmark.tflite"]["present"] is False  # tmp_path has no models
    files = {f["model"]["filename"]: f for f in data["files"]}
    assert files["codeformer.onnx"]["commercial_use"] == "NO"
    assert files["codeformer.onnx"]["state"] == "missing"


def test_models_table_has_a_bundled_section_with_the_note() -> None:
    proc = _run("models", env={COMMERCIAL_ONLY_ENV: "1"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("Bundled models")
    assert "shape_predictor_68_face_landmarks.dat" in out and "NOT for commercial use" in out
    assert "can't be used in a commerical product" in out  # the dlib-models note, verbatim
    assert "commercial-only mode: on" in out


@pytest.mark.parametrize(
    ("values", "field", "component"),
    [
        ({"landmarks": "dlib68"}, "landmarks", "shape_predictor_68_face_landmarks.dat"),
        ({"engine": "wav2lip"}, "engine", "wav2lip_gan.pth"),
        ({"engine": "wav2lip-onnx"}, "engine", "wav2lip_gan_96.onnx"),
        ({"enhancer": "onnx:/srv/models/codeformer.onnx"}, "enhancer", "codeformer.onnx"),
        ({"engine": "musetalk", "checkpoint": Path("x/wav2lip.pth")}, "checkpoint", "wav2lip.pth"),
    ],
)
def test_commercial_only_refuses_restricted_components(
    values: dict[str, object], field: str, component: str
) -> None:
    with pytest.raises(LicenceRestricted) as err:
        RunOptions(commercial_only=True, **values)  # type: ignore[arg-type]
    exc = err.value
    assert exc.code == "licence_restricted" and exc.field == field
    assert component in exc.component and component in exc.message
    assert isinstance(exc, InvalidOption)  # the service's push answers it with 422
    assert exc.to_dict()["component"] == exc.component
    RunOptions(**values)  # type: ignore[arg-type]  # allowed without the mode


def test_commercial_only_allows_the_default_path_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert RunOptions().commercial_only is False
    monkeypatch.setenv(COMMERCIAL_ONLY_ENV, "1")
    options = RunOptions()
    assert options.commercial_only is True and options.landmark_model == "mediapipe"
    RunOptions(enhancer="onnx:models/GFPGANv1.4.onnx")  # not settled: allowed, marked "check"
    with pytest.raises(LicenceRestricted):
        RunOptions(landmarks="dlib68")
    check_commercial_use({"engine": "retrieval", "enhancer": "classical"})


def test_notices_name_the_restricted_choice(tmp_path: Path) -> None:
    from lipsync.licences import notices

    # The default is the clean mesh wherever its file is set up, and says nothing.
    mesh = tmp_path / "with" / "mediapipe" / "face_landmark.tflite"
    mesh.parent.mkdir(parents=True)
    mesh.write_bytes(b"x")
    assert RunOptions(models_dir=mesh.parents[1]).landmark_model == "mediapipe"
    assert notices(RunOptions(models_dir=mesh.parents[1])) == []
    assert notices(RunOptions(landmarks="mediapipe")) == []
    # Where it is not set up, the default falls back to dlib68 and says so.
    bare = RunOptions(models_dir=tmp_path / "bare")
    assert bare.landmark_model == "dlib68"
    (line,) = notices(bare)
    assert line.startswith("landmarks dlib68: ") and "iBUG 300-W" in line
    assert RunOptions(landmarks="dlib68").landmark_model == "dlib68"
    # Commercial-only mode never falls back: the mesh, or an error when it is missing.
    assert RunOptions(models_dir=tmp_path / "bare", commercial_only=True).landmark_model == (
        "mediapipe"
    )


def test_every_non_commercial_registry_file_is_refused_by_name() -> None:
    flagged = [m for m in model_by_filename().values() if m.commercial is False]
    assert {m.filename for m in flagged} >= {"codeformer.onnx", "wav2lip.pth"}
    for m in flagged:
        with pytest.raises(LicenceRestricted):
            check_commercial_use({"checkpoint": f"/any/dir/{m.filename}"})


def test_cli_refuses_before_reading_any_input(tmp_path: Path) -> None:
    proc = _run(
        "run",
        "--video",
        str(tmp_path / "absent.mp4"),
        "--audio",
        str(tmp_path / "absent.wav"),
        "-o",
        str(tmp_path / "out.mp4"),
        "--commercial-only",
        "--landmarks",
        "dlib68",
    )
    assert proc.returncode == 2
    assert "error [licence_restricted]" in proc.stderr
    assert "shape_predictor_68_face_landmarks.dat" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_options_route_reports_the_mode_and_the_licences(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.deps import get_settings
    from app.routers import options as routes
    from service.settings import Settings

    app = FastAPI()
    app.include_router(routes.router)
    app.dependency_overrides[get_settings] = lambda: Settings()
    client = TestClient(app)

    def choices(name: str) -> set[str]:
        body = client.get("/api/v1/lipsync/options").json()
        (spec,) = [o for o in body["options"] if o["name"] == name]
        return {c["value"] for c in spec["choices"]}

    assert client.get("/api/v1/lipsync/options").json()["commercial_only"] is False
    assert {"dlib68", "mediapipe"} <= choices("landmarks")
    assert "wav2lip" in choices("engine")
    monkeypatch.setenv(COMMERCIAL_ONLY_ENV, "1")
    assert client.get("/api/v1/lipsync/options").json()["commercial_only"] is True
    assert choices("landmarks") == {"mediapipe"}
    assert "wav2lip" not in choices("engine") and "retrieval" in choices("engine")

    body = client.get("/api/v1/lipsync/options").json()["licences"]
    expected = report(commercial_only=True)
    assert [b["key"] for b in body["bundled"]] == [b["key"] for b in expected["bundled"]]
    assert [o["file"] for o in body["optional"]] == [o["file"] for o in expected["optional"]]
    bundled = {b["key"]: b for b in body["bundled"]}
    assert bundled["dlib-shape-predictor-68"]["commercial"] is False
    assert "Stefanos Zafeiriou" in bundled["dlib-shape-predictor-68"]["note"]
    assert bundled["mediapipe-face-mesh"]["licence"] == "Apache-2.0"


def test_push_options_are_refused_with_the_licence_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from lipsync.options import parse_public_fields
    from service.options import build_run_options
    from service.settings import Settings

    monkeypatch.setenv(COMMERCIAL_ONLY_ENV, "1")
    fields = parse_public_fields({"landmarks": "dlib68"})  # a valid choice as such
    with pytest.raises(LicenceRestricted) as err:
        build_run_options(fields, Settings())  # what the push handler calls: 422 on raise
    assert err.value.field == "landmarks"
    build_run_options(parse_public_fields({"engine": "viseme"}), Settings())


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_commercial_only_run_never_opens_a_restricted_file(
    tmp_path: Path, portrait_video: Path, speech_wav: Path
) -> None:
    """The default engine end to end in commercial-only mode, every file open watched."""
    log = tmp_path / "opens.txt"
    out = tmp_path / "out.mp4"
    cmd = [*LIPSYNC, "run", "--video", str(portrait_video), "--audio", str(speech_wav)]
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(log), *cmd, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, COMMERCIAL_ONLY_ENV: "1"},
    )
    assert proc.returncode == 0, proc.stderr
    opens = log.read_text()
    restricted = [c.file for c in BUNDLED if c.commercial is False]
    restricted += [m.filename for m in model_by_filename().values() if m.commercial is False]
    assert not [name for name in restricted if name in opens]
