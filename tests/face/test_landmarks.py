"""The landmark models: MediaPipe's face mesh as 68 iBUG points (the commercially clean
path) against dlib's 68-point predictor, on the astronaut photo and the shared clips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lipsync.errors import InvalidOption, ModelMissing
from lipsync.face.geometry import detector_like_box, eye_centres, face_axes
from lipsync.face.hog import HogDetector
from lipsync.face.landmarks import (
    LANDMARKERS,
    MESH_FILE,
    MESH_TO_IBUG,
    Dlib68Landmarker,
    MeshLandmarker,
    create_landmarker,
    mesh_to_ibug,
)
from lipsync.options import default_models_dir
from tests import media_factory as mf

ROOT = Path(__file__).resolve().parents[2]
MODELS = (
    ROOT / default_models_dir() if not default_models_dir().is_absolute() else default_models_dir()
)

needs_mesh = pytest.mark.skipif(
    not (MODELS / MESH_FILE).is_file(),
    reason=f"{MODELS / MESH_FILE} is not set up (scripts/bootstrap.sh puts it there)",
)


def _mouth_nme(a: np.ndarray, b: np.ndarray) -> float:
    le, re = eye_centres(b)
    return float(np.linalg.norm(a[48:68] - b[48:68], axis=1).mean() / np.linalg.norm(re - le))


def test_mapping_covers_the_68_points() -> None:
    assert set(MESH_TO_IBUG) == set(range(17, 68))
    assert all(0 <= i < 468 for idx in MESH_TO_IBUG.values() for i in idx)
    # A mesh laid out as a line: the jaw is resampled in order, the chin is mesh point 152.
    mesh = np.zeros((468, 2))
    mesh[:, 0] = np.arange(468)
    lm = mesh_to_ibug(mesh)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert lm[8, 0] == 152 and lm[62, 0] == 13 and lm[66, 0] == 14 and lm[27, 0] == 87


def test_factory(tmp_path: Path) -> None:
    assert set(LANDMARKERS) == {"mediapipe", "dlib68"}
    assert isinstance(create_landmarker("dlib68", tmp_path), Dlib68Landmarker)
    with pytest.raises(InvalidOption):
        create_landmarker("nope", tmp_path)
    with pytest.raises(ModelMissing, match="bootstrap"):
        create_landmarker("mediapipe", tmp_path)


def test_hog_detector_gives_dlibs_boxes() -> None:
    from lipsync.face.dlib_backend import DlibFaces

    gray = np.asarray(mf.astronaut().mean(axis=2), np.uint8)
    assert HogDetector().detect(gray) == DlibFaces().detect(gray)
    assert HogDetector.max_upsample == 1


@needs_mesh
def test_mesh_landmarks_on_the_astronaut_agree_with_dlib68() -> None:
    rgb = mf.astronaut()
    gray = np.asarray(rgb.mean(axis=2), np.uint8)
    # dlib's HOG finds the face (top) and a false face on the suit's patch (larger).
    boxes = sorted(HogDetector().detect(gray), key=lambda b: b[1])
    box, patch = boxes[0], boxes[-1]
    mesh = create_landmarker("mediapipe", MODELS)
    assert isinstance(mesh, MeshLandmarker)
    mesh.landmarks(gray, patch)
    assert mesh.score < 0.5  # the mesh's face-presence score says it is no face
    lm = mesh.landmarks(gray, box)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert mesh.score > 0.9 and mesh.passes == 4  # a new box: placed, then refined
    # Eyes above the mouth, chin lowest; the face's axes as dlib's.
    assert lm[36:48, 1].mean() < lm[48:68, 1].mean() < lm[8, 1]
    ref = Dlib68Landmarker().landmarks(gray, box)
    assert _mouth_nme(lm, ref) < 0.08
    _, down, iod = face_axes(lm)
    _, ref_down, ref_iod = face_axes(ref)
    assert float(np.dot(down, ref_down)) > 0.99 and abs(iod / ref_iod - 1) < 0.1
    # Followed with its own box (as the tracker does between detections): one pass.
    again = mesh.landmarks(gray, detector_like_box(lm))
    assert mesh.passes == 5 and float(np.abs(again - lm).max()) < 2.0
    # RGB works too.
    assert _mouth_nme(mesh.landmarks(rgb, box), ref) < 0.08


@needs_mesh
@pytest.mark.parametrize(
    "clip", ["video_videoretalking_face4.mp4", "video_SadTalker_WDA_KatieHill_000.mp4"]
)
def test_mouth_agrees_with_dlib68_on_real_clips(shared_media: Path, clip: str) -> None:
    from lipsync.face.agreement import compare

    path = shared_media / clip
    if not path.is_file():
        pytest.skip(f"{clip} is not in ../shared/media")
    a = compare(path, MODELS, max_frames=100)
    assert a.frames >= 95
    # docs/QUALITY.md, "Landmark models": 3-4 % of the eye distance on the mouth, the
    # inner-lip gap following dlib68's with r >= 0.9 on these clips.
    assert a.mouth_nme < 5.0 and a.all_nme < 6.0
    assert a.gap_r > 0.85 and 0.7 < a.gap_slope < 1.3
    assert a.closed_agreement > 0.7


def _strace_opens(code: str, tmp_path: Path) -> str:
    log = tmp_path / "opens.txt"
    subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=open,openat",
            "-o",
            str(log),
            sys.executable,
            "-c",
            code,
        ],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    return log.read_text()


@needs_mesh
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_clean_path_never_opens_the_68_point_model(tmp_path: Path) -> None:
    """HOG boxes + mesh landmarks, followed over a real video: the files the process opens."""
    video = mf.write_video(tmp_path / "face.mp4", mf.moving_portrait_frames(10))
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from lipsync.face.hog import HogDetector
        from lipsync.face.landmarks import create_landmarker
        from lipsync.face.geometry import detector_like_box
        from lipsync.media.decode import iter_frames
        det, lms = HogDetector(), create_landmarker("mediapipe", Path({str(MODELS)!r}))
        box = None
        for f in iter_frames(Path({str(video)!r}), pixel_format="luma"):
            box = box or det.detect(f.image)[0]
            box = detector_like_box(lms.landmarks(f.image, box))
        print("ok")
        """
    )
    opens = _strace_opens(code, tmp_path)
    assert "face_landmark.tflite" in opens
    assert "shape_predictor_68_face_landmarks.dat" not in opens
