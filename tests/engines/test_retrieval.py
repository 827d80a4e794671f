"""The ``retrieval`` engine on real media: the shared clips (skipped cleanly when absent),
the astronaut photo and espeak speech. Frames derived from the shared clips stay in
pytest's temporary directories."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from lipsync.composite import composite
from lipsync.engines import ENGINES, create_engine
from lipsync.engines.base import EngineContext, SourceVideo
from lipsync.engines.retrieval import DEFAULT_TUNING, RetrievalEngine
from lipsync.engines.retrieval import render as retrieval_render
from lipsync.engines.retrieval.geometry import (
    MouthShape,
    apply,
    ellipse_box,
    measure,
    mouth_ellipse,
    rigid_template,
    similarity,
)
from lipsync.engines.retrieval.index import build_index, choose_candidates
from lipsync.engines.viseme import LowerFaceWarp, VisemeEngine
from lipsync.face.geometry import crop_box, lower_face_polygon
from lipsync.face.tracker import FaceTracker, smooth_landmarks
from lipsync.media.audio import load_audio, to_mono
from lipsync.media.decode import iter_frames, read_image
from lipsync.types import FaceObs, Patch
from tests import media_factory as mf

MEAD = "video_dreamtalk_MEAD_M030_front_neutral.mp4"  # 256x256, 94 frames, no audio
FACE2 = "video_videoretalking_face2.mp4"  # 844x844, 125 frames, with its own speech
OBAMA = "audio_Real3DPortrait_Obama_5s.wav"


def _source(path: Path, is_image: bool = False) -> SourceVideo:
    """What the pipeline's analysis pass hands an engine (landmarks tracked and smoothed,
    the video's own speech)."""
    tracker = FaceTracker()
    nan = np.full((68, 2), np.nan, np.float32)
    if is_image:
        lm = tracker.update(read_image(path, "luma"))
        return SourceVideo(
            path, 25.0, np.zeros(1), (lm if lm is not None else nan)[None], True, None
        )
    times, lms = [], []
    for f in iter_frames(path, pixel_format="luma"):
        lm = tracker.update(f.image)
        times.append(f.time_s)
        lms.append(lm if lm is not None else nan)
    own = None
    try:
        own = to_mono(load_audio(path, sample_rate=16000, channels=1)[0])
    except Exception:  # noqa: BLE001 - a video without sound
        own = None
    fps = float(len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 25.0
    return SourceVideo(
        path, round(fps, 3), np.asarray(times), smooth_landmarks(np.stack(lms)), False, own
    )


def _frames(path: Path) -> list[np.ndarray]:
    return [f.image for f in iter_frames(path)]


def _speech(path: Path, seconds: float) -> np.ndarray:
    audio = to_mono(load_audio(path, sample_rate=16000, channels=1)[0])
    return audio[: int(seconds * 16000)]


@pytest.fixture(scope="module")
def mead(shared_media: Path) -> tuple[SourceVideo, list[np.ndarray]]:
    path = shared_media / MEAD
    if not path.is_file():
        pytest.skip(f"{MEAD} is not in the shared media")
    return _source(path), _frames(path)


@pytest.fixture(scope="module")
def mead_engine(mead: tuple[SourceVideo, list[np.ndarray]], shared_media: Path) -> RetrievalEngine:
    source, frames = mead
    eng = RetrievalEngine()
    eng.prepare_source(source)
    speech = _speech(shared_media / OBAMA, 3.6)
    eng.prepare(speech, source.fps, int(3.6 * source.fps))
    return eng


def test_registered_weight_free_and_learns_from_the_source() -> None:
    spec = ENGINES["retrieval"]
    assert not spec.needs_weights
    eng = create_engine("retrieval", EngineContext())
    assert isinstance(eng, RetrievalEngine) and eng.wants_source
    assert eng.info()["path"] == "viseme", "nothing learned yet: the fallback"


def test_still_image_falls_back_to_the_viseme_warp(portrait_png: Path, speech_wav: Path) -> None:
    source = _source(portrait_png, is_image=True)
    eng = RetrievalEngine()
    eng.prepare_source(source)
    speech = _speech(speech_wav, 2.0)
    eng.prepare(speech, 25.0, 50)
    info = eng.info()
    assert info["path"] == "viseme" and "still image" in info["reason"]
    img = mf.astronaut()
    lm = source.landmarks[0]
    face = FaceObs(crop_box(lm, (0, 10, 0, 0), 512, 512), lm)
    patch = eng.generate([img], [face], [10])[0]
    viseme = VisemeEngine()
    viseme.prepare(speech, 25.0, 50)
    ref = viseme.generate([img], [face], [10])[0]
    assert np.array_equal(patch.image, ref.image), "exactly the viseme engine's output"


def test_video_without_mouth_movement_falls_back(portrait_video: Path, speech_wav: Path) -> None:
    eng = RetrievalEngine()
    eng.prepare_source(_source(portrait_video))
    eng.prepare(_speech(speech_wav, 2.0), 25.0, 50)
    info = eng.info()
    assert info["path"] == "viseme"
    assert "variety" in info["reason"] or "never closes" in info["reason"]


def test_index_is_bounded_and_covers_the_mouth_shapes(
    mead: tuple[SourceVideo, list[np.ndarray]],
) -> None:
    source, frames = mead
    size = (frames[0].shape[1], frames[0].shape[0])
    full = build_index(source, size)
    assert len(full.candidates) == len(full.crops) >= 0.9 * len(frames), "short clip: all"
    small = build_index(source, size, cap=30, budget_bytes=0)
    assert len(small.candidates) <= 30 + 6
    gap = full.shape.gap
    cand = small.candidates
    assert gap[cand].min() <= np.nanpercentile(gap, 3) + 1e-6, "the most closed mouths kept"
    assert gap[cand].max() >= np.nanpercentile(gap, 97) - 1e-6, "the most open mouths kept"
    # Runs of consecutive frames, so motion can be replayed.
    assert np.mean(np.diff(cand) == 1) > 0.6
    # Over the budget the crops are JPEG-coded; they decode to the same picture.
    assert small.stats["jpeg"] and isinstance(small.crops[0].data, bytes)
    k = int(np.flatnonzero(full.candidates == cand[0])[0])
    raw, coded = full.crops[k].image(), small.crops[0].image()
    assert raw.shape == coded.shape and mf.psnr(raw, coded) > 36
    assert small.stats["crop_mb"] < full.stats["crop_mb"] / 2
    # Pose- and scale-normalised: the gap does not depend on the face's size in pixels.
    lm = source.landmarks[int(cand[0])]
    big = measure(np.stack([lm, lm * 2.0 + 7.0]).astype(np.float32), full.template)
    assert abs(float(big.gap[0]) - float(big.gap[1])) < 1e-4


def test_candidate_runs_are_chosen_by_coverage() -> None:
    # 300 frames: a long closed stretch, then a short open one; a tight cap must keep both.
    n = 300
    gap = np.full(n, 0.02, np.float32)
    gap[250:270] = np.linspace(0.1, 0.35, 20)
    z = np.zeros(n, np.float32)
    shape = MouthShape(gap, z + 0.9, z + 0.3, z, z + 0.7)
    ok = np.ones(n, bool)
    cand = choose_candidates(shape, ok, cap=24)
    assert len(cand) <= 30
    assert (gap[cand] > 0.3).any() and (gap[cand] < 0.05).any()


def test_choice_follows_the_speech_without_flicker_or_freezing(
    mead_engine: RetrievalEngine,
    mead: tuple[SourceVideo, list[np.ndarray]],
) -> None:
    eng = mead_engine
    info = eng.info()
    assert info["path"] == "retrieval", info
    assert info["calibration"] == "default", "no sound in this clip: nothing to calibrate on"
    source, frames = mead
    n = len(eng.plan.states)  # type: ignore[union-attr]
    faces = [FaceObs((0, 0, 1, 1), source.landmarks[i % len(frames)]) for i in range(n)]
    chosen = []
    for b in range(0, n, 16):
        ids = list(range(b, min(n, b + 16)))
        got = eng._choose(ids, eng.poses(faces[b : b + 16]))
        chosen += [got[i] for i in ids]
    assert eng.index is not None and eng._target is not None
    frames_used = eng.index.candidates[np.asarray(chosen)]
    gap = eng.index.shape.gap[frames_used]
    target = eng._target[0]
    assert np.corrcoef(gap, target)[0, 1] > 0.7, "chosen mouths follow the wanted opening"
    step = np.diff(frames_used)
    cuts = np.sum((step < -1) | (step > 2))
    assert cuts <= 0.2 * n, "mostly the source played forward, few cuts"
    speech = eng.viseme.track.speech  # type: ignore[union-attr]
    longest = run = 0
    for i in range(1, n):
        run = run + 1 if step[i - 1] == 0 and speech[i] > 0.5 else 0
        longest = max(longest, run)
    assert longest <= 8, "no frozen mouth while speaking"
    # Closed in the pauses, open on the loud frames.
    pause = target <= np.percentile(target, 10)
    loud = target >= np.percentile(target, 90)
    assert gap[pause].mean() + 0.08 < gap[loud].mean()


def test_own_mouth_renders_back_to_the_source_frame(
    mead_engine: RetrievalEngine,
    mead: tuple[SourceVideo, list[np.ndarray]],
) -> None:
    source, frames = mead
    eng = mead_engine
    assert eng.index is not None
    f = int(eng.index.candidates[len(eng.index.candidates) // 2])
    lm = source.landmarks[f]
    face = FaceObs(crop_box(lm, (0, 10, 0, 0), 256, 256), lm)
    out = composite(frames[f], eng.render(frames[f], lm, eng.index.position(f)), face)
    assert mf.psnr(out, frames[f]) > 38, "a frame's own mouth comes back (almost) unchanged"


def test_registration_undoes_landmark_jitter(
    mead_engine: RetrievalEngine,
    mead: tuple[SourceVideo, list[np.ndarray]],
) -> None:
    """Landmarks off by a few pixels (as trackers jitter): the crop is registered onto the
    frame's own nose and cheeks, so the mouth lands where it belongs, not where the
    landmarks say."""
    source, frames = mead
    eng = mead_engine
    assert eng.index is not None
    f = int(eng.index.candidates[len(eng.index.candidates) // 3])
    jitter = source.landmarks[f] + np.array([2.5, -2.0], np.float32)
    face = FaceObs(crop_box(jitter, (0, 10, 0, 0), 256, 256), jitter)
    pos = eng.index.position(f)
    registered = composite(frames[f], eng.render(frames[f], jitter, pos), face)
    # The same engine with a registration that is never trusted (correlation never reaches 2).
    unregistering = RetrievalEngine(tuning=replace(DEFAULT_TUNING, register_min_cc=2.0))
    unregistering.prepare_source(source)
    assert unregistering.index is not None and unregistering.index.position(f) == pos
    unregistered = composite(frames[f], unregistering.render(frames[f], jitter, pos), face)
    x1, y1, x2, y2 = (int(v) for v in ellipse_box(source.landmarks[f], grow=1.0))
    box = (slice(y1, y2), slice(x1, x2))
    got = mf.psnr(registered[box], frames[f][box])
    assert got > mf.psnr(unregistered[box], frames[f][box]) + 3.0
    assert got > 30.0


def _most_closed_and_open(eng: RetrievalEngine) -> tuple[int, int]:
    """Candidate positions of the person's most closed and most open mouths."""
    assert eng.index is not None
    gaps = eng.index.shape.gap[eng.index.candidates]
    return int(np.argmin(gaps)), int(np.argmax(gaps))


def test_another_mouth_is_placed_without_seams(
    mead_engine: RetrievalEngine,
    mead: tuple[SourceVideo, list[np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, frames = mead
    eng = mead_engine
    assert eng.index is not None
    closed_pos, open_pos = _most_closed_and_open(eng)
    closed_f = int(eng.index.candidates[closed_pos])
    lm = source.landmarks[closed_f]
    img = frames[closed_f]
    # A lighting change on the target: the pasted mouth must follow it.
    dim = np.clip(img.astype(np.float32) * 0.8, 0, 255).astype(np.uint8)
    face = FaceObs(crop_box(lm, (0, 10, 0, 0), 256, 256), lm)
    patch = eng.render(dim, lm, open_pos)
    out = composite(dim, patch, face)
    # Outside the patch's mask nothing changes.
    mask = np.zeros(img.shape[:2], np.float32)
    assert patch.mask is not None
    mask[patch.y1 : patch.y2, patch.x1 : patch.x2] = patch.mask
    assert np.array_equal(out[mask == 0], dim[mask == 0])
    # The mouth opened: the inside of the lips is darker than the closed mouth's.
    centre = np.round(lm[60:68].mean(axis=0)).astype(int)
    w = int(0.15 * np.linalg.norm(lm[54] - lm[48]))
    box = (slice(centre[1] - w // 2, centre[1] + w), slice(centre[0] - w, centre[0] + w))
    assert out[box].mean() < dim[box].mean() - 10
    # No seam: where the mouth blends into the face (the mask ellipse's outer part) the
    # colour is the dimmed target's (without the matching, the source's brighter skin would
    # show as a ring), and no edge appears there.
    tgt = lm.copy()
    crop = eng.index.crops[open_pos]
    tgt[48:68] = apply(similarity(crop.landmarks[27:36], lm[27:36]), crop.landmarks[48:68])
    centre_e, across, down, a, up, dn = mouth_ellipse(tgt)
    ys, xs = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float32)
    u = ((xs - centre_e[0]) * across[0] + (ys - centre_e[1]) * across[1]) / a
    v = (xs - centre_e[0]) * down[0] + (ys - centre_e[1]) * down[1]
    v = np.where(v < 0, v / up, v / dn)
    r = np.sqrt(u * u + v * v)
    rim = (r > 0.75) & (r < 1.0)

    def rim_shift(result: np.ndarray) -> float:
        have = result.astype(np.float32)[rim].mean(axis=0)
        diff = have - dim.astype(np.float32)[rim].mean(axis=0)
        return float(np.abs(diff).max())

    def edges(image: np.ndarray) -> float:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        mag = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        return float(mag[rim].mean())

    monkeypatch.setattr(retrieval_render, "colour_field", lambda *args: None)
    unmatched = composite(dim, eng.render(dim, lm, open_pos), face)
    monkeypatch.undo()
    shifts = (rim_shift(out), rim_shift(unmatched))
    assert shifts[0] < 5.0 and shifts[0] < 0.4 * shifts[1], shifts
    assert edges(out) < 1.3 * edges(dim) + 2.0, "no edge drawn where the mouth blends in"
    # Lower face stays inside the face: the chin did not jump (no double chin).
    poly = lower_face_polygon(lm, extend=0.14)
    inside = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(poly).astype(np.int32)], 1)
    assert np.array_equal(out[inside == 0], dim[inside == 0]) or (mask[inside == 0] < 1).all()


def test_closing_an_open_mouth_does_not_drag_the_chin(
    mead_engine: RetrievalEngine,
    mead: tuple[SourceVideo, list[np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The person's most closed mouth put on their most open frame: the lower face is warped
    so the lips and jaw close, and nowhere does the warp read from farther away than the
    landmarks moved. (With the closed inner lips among its points, the smooth field bent
    far past them and pulled the shadow under the chin up onto it.)"""
    source, frames = mead
    eng = mead_engine
    assert eng.index is not None
    closed_pos, open_pos = _most_closed_and_open(eng)
    open_f = int(eng.index.candidates[open_pos])
    lm = source.landmarks[open_f]
    seen: list[tuple[np.ndarray, LowerFaceWarp | Patch]] = []
    real_warp = eng.viseme.warp_lower_face

    def spy(
        frame: np.ndarray, lm_t: np.ndarray, tgt: np.ndarray, **kw: bool
    ) -> LowerFaceWarp | Patch:
        warp = real_warp(frame, lm_t, tgt, **kw)
        seen.append((tgt, warp))
        return warp

    monkeypatch.setattr(eng.viseme, "warp_lower_face", spy)
    eng.render(frames[open_f], lm, closed_pos)
    ((tgt, warp),) = seen
    assert isinstance(warp, LowerFaceWarp)
    moved = float(np.linalg.norm(tgt - lm, axis=1).max())
    assert moved > 3.0, "the mouth was closed"
    ys, xs = np.mgrid[warp.y1 : warp.y2, warp.x1 : warp.x2].astype(np.float32)
    read = np.hypot(warp.map_x - xs, warp.map_y - ys)
    assert float(read.max()) < 1.6 * moved, (float(read.max()), moved)


@pytest.fixture(scope="module")
def face2(shared_media: Path) -> Path:
    path = shared_media / FACE2
    if not path.is_file():
        pytest.skip(f"{FACE2} is not in the shared media")
    return path


def test_end_to_end_on_a_talking_video(
    tmp_path: Path, face2: Path, speech_pause: tuple[Path, float, float]
) -> None:
    """Pipeline run: the person's own mouths, closed in the pause, and the rest of the
    picture unchanged (>= 40 dB outside the lower face)."""
    from lipsync.options import RunOptions
    from lipsync.pipeline import Pipeline

    audio, p0, p1 = speech_pause
    out = tmp_path / "out.mp4"
    result = Pipeline(RunOptions(engine="retrieval", enhancer="none")).run(face2, audio, out)
    info = result.engine_info
    assert info["path"] == "retrieval", info
    assert info["calibration"] in ("quantile", "regression")
    assert "quantile" in info["calibration_cv_r2"]
    assert info["index"]["candidates"] >= 100
    src = _frames(face2)
    got = mf.decode_video(out)
    n_src = len(src)
    tracker = FaceTracker()
    lm0 = tracker.update(src[0])
    assert lm0 is not None
    keep = np.zeros(src[0].shape[:2], np.uint8)
    cv2.fillPoly(keep, [np.round(lower_face_polygon(lm0, extend=0.25)).astype(np.int32)], 1)
    keep = cv2.dilate(keep, np.ones((41, 41), np.uint8)) == 0
    assert min(mf.psnr(got[i], src[i % n_src], keep) for i in range(0, len(got), 9)) >= 40
    # In the pause the mouth is shut: the inner-lip gap (interocular units) stays small.
    mid = [i for i in range(int(p0 * 25) + 6, int(p1 * 25) - 3)]
    lms = []
    t2 = FaceTracker()
    for i in mid:
        lm = t2.update(got[i])
        assert lm is not None
        lms.append(lm)
    stack = np.stack(lms).astype(np.float32)
    gaps = measure(stack, rigid_template(stack, np.ones(len(stack), bool))).gap
    assert float(np.median(gaps)) < 0.08, gaps


def test_the_colour_fit_ignores_an_object_over_part_of_the_skin_ring() -> None:
    """The gain that matches a pasted mouth to the frame is fitted on a ring of skin around
    the mouth; a dark object over a third of the ring (a microphone, kept in front by the
    occlusion mask) must not darken the mouth and the skin around it (the half-covered
    clip's sheets showed a grey tint on the visible side before)."""
    from lipsync.engines.retrieval.blend import apply_colour, colour_field

    h = w = 96
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx - 48) / 30, (yy - 48) / 30
    r = np.sqrt(u * u + v * v)
    alpha = np.clip(1.5 - r, 0.0, 1.0).astype(np.float32)  # feathers from r 0.5 to 1.5
    lips = np.array(
        [[48 + 12 * np.cos(a), 48 + 5 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 12)],
        np.float32,
    )
    tgt = np.zeros((68, 2), np.float32)
    tgt[48:60] = lips
    rng = np.random.default_rng(3)
    src = np.clip(rng.normal((170, 120, 100), 4, (h, w, 3)), 0, 255).astype(np.float32)
    base = src * np.float32(1.1)  # the frame is 10% brighter: the fit's gain
    covered = base.copy()
    covered[:, 64:] = (24, 22, 26)  # an object over the ring's right third
    gains = []
    for frame in (base, covered):
        coef = colour_field(src, frame, alpha, (u, v), tgt, (0, 0))
        assert coef is not None
        matched = apply_colour(src, (u, v), coef, (0.5, 2.0))
        seen = (r > 0.6) & (r < 1.4) & (xx < 60)  # the visible skin around the mouth
        gains.append(float(np.median(matched[seen] / src[seen])))
    assert gains[0] == pytest.approx(1.1, abs=0.02)
    assert gains[1] == pytest.approx(1.1, abs=0.03), gains


def test_the_colour_fit_is_the_skin_s_under_an_object_over_most_of_the_ring() -> None:
    """An object over most of the ring (a microphone beside half the mouth, the ring's
    median now the object's gain) still leaves the fit to the skin around it; an object over
    all of it gives no fit. Before, the median decided: the half-covered clip's pasted mouth
    and the skin beside it went grey (frames 63-74), and after the full cover the dark fit
    was carried into the frames where the object had gone (75-77)."""
    from lipsync.engines.retrieval.blend import apply_colour, colour_field

    h = w = 96
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx - 48) / 30, (yy - 48) / 30
    r = np.sqrt(u * u + v * v)
    alpha = np.clip(1.5 - r, 0.0, 1.0).astype(np.float32)
    tgt = np.zeros((68, 2), np.float32)
    tgt[48:60] = [[48 + 12 * np.cos(a), 48 + 5 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 12)]
    rng = np.random.default_rng(4)
    src = np.clip(rng.normal((170, 120, 100), 4, (h, w, 3)), 0, 255).astype(np.float32)
    base = src * np.float32(1.1)
    most = base.copy()
    most[:, 40:] = (24, 22, 26)  # the ring's right 60%
    coef = colour_field(src, most, alpha, (u, v), tgt, (0, 0))
    assert coef is not None
    matched = apply_colour(src, (u, v), coef, (0.5, 2.0))
    seen = (r > 0.6) & (r < 1.4) & (xx < 36)
    assert float(np.median(matched[seen] / src[seen])) == pytest.approx(1.1, abs=0.03)
    everything = np.full_like(base, 25.0)
    assert colour_field(src, everything, alpha, (u, v), tgt, (0, 0)) is None


def test_each_person_speaks_their_own_lines_with_their_whole_range() -> None:
    """With several people, a person's speech is ranked among the frames that show them:
    a quiet speaker's lines open that person's mouth as wide as a loud speaker's do theirs,
    instead of staying in the lower part of the range."""
    from lipsync.audio.visemes import MouthTrack
    from lipsync.engines.retrieval.calibrate import ShapeModel, speech_features

    rng = np.random.default_rng(0)
    n = 200
    loud = 0.4 + 0.6 * rng.random(n // 2)
    quiet = 0.1 + 0.3 * rng.random(n // 2)  # the second speaker's lines: softer speech
    track = MouthTrack(
        open=np.concatenate([loud, quiet]).astype(np.float32),
        spread=np.zeros(n, np.float32),
        speech=np.ones(n, np.float32),
    )
    gaps = np.linspace(0.05, 0.4, DEFAULT_TUNING.n_quantiles)
    model = ShapeModel("default", 0.05, 0.4, np.array([0.5, 0.0, 0.0]), gaps)
    second = np.arange(n) >= n // 2
    pooled, _ = model.predict(track, speech_features(track))
    own, _ = model.predict(track, speech_features(track), second)
    p90 = float(np.percentile(gaps, 90))
    assert np.percentile(pooled[second], 90) < 0.7 * p90  # squeezed by the loud lines
    assert np.percentile(own[second], 90) >= p90  # the person's own range
    # Too few frames of speech to rank among: the pooled ranking stays.
    few = np.zeros(n, bool)
    few[-3:] = True
    assert np.array_equal(model.predict(track, speech_features(track), few)[0], pooled)
