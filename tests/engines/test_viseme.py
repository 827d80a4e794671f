from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import lipsync
from lipsync.composite import composite
from lipsync.engines import ENGINES, create_engine
from lipsync.engines.base import EngineContext
from lipsync.engines.viseme import VisemeEngine
from lipsync.face.geometry import crop_box, face_axes
from lipsync.face.tracker import FaceTracker
from lipsync.types import FaceObs
from tests import media_factory as mf

KATIE = "video_SadTalker_WDA_KatieHill_000.mp4"
GERMAN = "audio_SadTalker_deyu_german.wav"  # with pauses at both ends


def _face() -> tuple[np.ndarray, np.ndarray]:
    img = mf.astronaut()
    lm = FaceTracker().update(img)
    assert lm is not None
    return img, lm


def _gap(lm: np.ndarray) -> float:
    _, down, _ = face_axes(lm)
    return float(np.mean([np.dot(lm[b] - lm[a], down) for a, b in ((61, 67), (62, 66), (63, 65))]))


def test_registry_builds_the_weight_free_engine_without_models(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert not ENGINES["viseme"].needs_weights
    engine = create_engine("viseme", EngineContext(models_dir=tmp_path))
    assert isinstance(engine, VisemeEngine)


def test_target_shape_opens_and_closes_the_mouth() -> None:
    _, lm = _face()
    eng = VisemeEngine()
    opened, gap_t, _ = eng.target_landmarks(lm, 1.0, 0.0)
    closed, gap_c, _ = eng.target_landmarks(lm, 0.0, 0.0)
    assert _gap(opened) > _gap(lm) + 5
    # The warp stops short of shutting (no fold); the shown mouth is closed.
    assert 0 < _gap(closed) <= 0.081 * np.linalg.norm(lm[54] - lm[48]) + 0.5
    assert abs(_gap(eng.shown_inner(closed, gap_c))) < 0.5
    assert opened[8, 1] > lm[8, 1] + 2, "the jaw drops as the mouth opens"
    assert np.allclose(opened[36:48], lm[36:48]), "eyes never move"
    rounded, _, _ = eng.target_landmarks(lm, 0.3, -1.0)
    spread, _, _ = eng.target_landmarks(lm, 0.3, 1.0)
    assert np.linalg.norm(spread[54] - spread[48]) > np.linalg.norm(rounded[54] - rounded[48]) + 2


def test_render_changes_only_the_lower_face_and_draws_an_open_mouth() -> None:
    img, lm = _face()
    eng = VisemeEngine()
    face = FaceObs(crop_box(lm, (0, 10, 0, 0), 512, 512), lm)
    out_open = composite(img, eng.render(img, lm, 1.0, 0.0), face)
    out_closed = composite(img, eng.render(img, lm, 0.0, 0.0), face)
    # Outside the patch region: bit-identical.
    patch = eng.render(img, lm, 1.0, 0.0)
    outside = np.ones(img.shape[:2], bool)
    outside[patch.y1 : patch.y2, patch.x1 : patch.x2] = False
    assert np.array_equal(out_open[outside], img[outside])
    # Eyes region untouched even inside the patch box.
    ey1, ey2 = int(lm[36:48, 1].min()) - 5, int(lm[36:48, 1].max()) + 5
    assert np.array_equal(out_open[ey1:ey2], img[ey1:ey2])
    # The open mouth is darker in its centre than the closed one (a cavity appears).
    cx, cy = lm[48:68].mean(axis=0).astype(int)
    probe_open = out_open[cy - 2 : cy + 6, cx - 6 : cx + 6].mean()
    probe_closed = out_closed[cy - 2 : cy + 6, cx - 6 : cx + 6].mean()
    assert probe_open < probe_closed - 10


def test_generate_follows_the_prepared_track(speech_wav) -> None:  # type: ignore[no-untyped-def]
    from lipsync.media.audio import load_audio

    img, lm = _face()
    audio = load_audio(speech_wav, sample_rate=16000, channels=1)[0][0]
    eng = VisemeEngine()
    n = int(audio.size / 16000 * 25)
    eng.prepare(audio, 25.0, n)
    face = FaceObs(crop_box(lm, (0, 10, 0, 0), 512, 512), lm)
    idx_open = int(np.argmax(eng.track.open))  # type: ignore[union-attr]
    idx_closed = int(np.argmin(eng.track.open))  # type: ignore[union-attr]
    p_open, p_closed = eng.generate([img, img], [face, face], [idx_open, idx_closed])
    a = composite(img, p_open, face)
    b = composite(img, p_closed, face)
    x1, y1 = lm[48:68].min(axis=0).astype(int) - 3
    x2, y2 = lm[48:68].max(axis=0).astype(int) + 3
    assert mf.psnr(a[y1:y2, x1:x2], b[y1:y2, x1:x2]) < 25, "different moments, different mouths"
    assert eng.info()["speech_frames"] > 10


def test_a_wide_open_still_closes_in_pauses_with_its_own_lips(
    shared_media: Path, tmp_path: Path
) -> None:
    """A photo with the mouth wide open (a frame of KatieHill laughing, teeth showing): the
    mouth shuts in the speech's pauses by bringing her real lips together, and no frame
    shows torn or doubled lips (lip-colour bands down the mouth, as in the input)."""
    from lipsync.evaluate import evaluate
    from lipsync.face.tracker import FaceTracker
    from lipsync.media.decode import iter_frames
    from tests.engines._lips import lip_bands, lip_threshold

    clip, speech = shared_media / KATIE, shared_media / GERMAN
    if not clip.exists() or not speech.exists():
        pytest.skip("the shared KatieHill clip or German speech is absent")
    frame = next(f.image for f in iter_frames(clip) if f.index == 30)
    still = tmp_path / "open.png"
    cv2.imwrite(str(still), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    lm = FaceTracker().update(frame)
    assert lm is not None
    _, down, _ = face_axes(lm)
    width = float(np.linalg.norm(lm[54] - lm[48]))
    assert float(np.dot(lm[66] - lm[62], down)) > 0.25 * width  # wide open in the photo
    out = tmp_path / "talking.mp4"
    result = lipsync.run(still, speech, out)
    assert result.engine_info["path"] == "viseme"  # a still: the retrieval engine's fall-back
    report = evaluate(out, speech, visemes=False)
    assert report.pauses.pause_frames >= 20
    assert report.pauses.closed_share is not None and report.pauses.closed_share >= 0.85
    assert report.sync.calibrated is not None and abs(report.sync.calibrated.offset_frames) <= 1
    t = lip_threshold(frame, lm)
    bands = [lip_bands(f.image, lm, t) for f in iter_frames(out)]
    assert min(bands) >= 1 and max(bands) <= 3, bands
