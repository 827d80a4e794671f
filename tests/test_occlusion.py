"""Occlusions stay in front: a real clip with an object moving over the mouth (flat dark,
half the mouth, all of it), rendered by the default engine: the object's pixels are the
input's on every frame; with the mask off they are not (the check can fail). Skipped
without the shared clips; everything stays in pytest's temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lipsync
from benchmarks import edited
from benchmarks.occlusion import (
    analyse,
    articulation_kept,
    clean_clip,
    edge_change,
    lower_face_masks,
    object_change,
)
from lipsync.media.decode import iter_frames
from lipsync.occlusion import ColourStats, OcclusionSampler
from tests.media_factory import SHARED_MEDIA

SPEECH = "audio_SadTalker_deyu_german.wav"


@pytest.fixture(scope="module")
def media() -> Path:
    for name in (edited.KATIE, SPEECH):
        if not (SHARED_MEDIA / name).is_file():
            pytest.skip(f"{name} is not in ../shared/media")
    return SHARED_MEDIA


@pytest.mark.parametrize("kind", ["dark", "half", "full", "skin", "textured"])
def test_the_object_stays_in_front(media: Path, tmp_path: Path, kind: str) -> None:
    video, mask = edited.occluded(tmp_path, kind)
    result = lipsync.run(video, media / SPEECH, tmp_path / "out.mp4", sync_mode="silence")
    change = object_change(video, mask, result.output)
    assert len(change) > 30
    assert max(change) <= 3.0, (kind, np.argmax(change), max(change))
    # Its top edge stays straight: no new lip or chin drawn into it (the textured object's
    # dark-red part at the lower lip's place read 15.3 with notches up to 0.25 mouth widths
    # filled; 8.0 with 0.55).
    edge = edge_change(video, mask, result.output)
    assert max(edge) <= 10.0, (kind, np.argmax(edge), max(edge))
    assert result.occluded_frames > 0
    if kind == "full":
        assert result.frames_kept_original["reasons"].get("occluded", 0) >= 5
    if kind == "half":
        # Half the mouth still shows: most of those frames get the new mouth around it.
        kept = result.frames_kept_original["reasons"].get("occluded", 0)
        assert kept < len(change) // 2
        # and it moves with the speech about as much as where nothing covers it (the
        # evaluator's aperture, output against input, object frames against the others)
        moved = articulation_kept(video, mask, result.output)
        assert moved is not None and moved >= 0.7, moved


def test_with_the_mask_off_the_mouth_is_painted_over_the_object(
    media: Path, tmp_path: Path
) -> None:
    video, mask = edited.occluded(tmp_path, "dark")
    result = lipsync.run(
        video, media / SPEECH, tmp_path / "out.mp4", sync_mode="silence", occlusion="off"
    )
    assert max(object_change(video, mask, result.output)) > 10.0
    assert result.occluded_frames == 0


def test_colour_stats_tell_skin_from_an_object() -> None:
    rng = np.random.default_rng(1)
    skin = np.stack(
        [rng.normal(150, 15, 2000), rng.normal(146, 3, 2000), rng.normal(112, 4, 2000)], axis=1
    ).astype(np.float32)
    stats = ColourStats.fit(skin)
    assert stats.foreign(skin).mean() < 0.02
    dark = np.array([[24, 128, 129]], np.float32)  # a black microphone
    blue = np.array([[120, 110, 160]], np.float32)  # a blue cup
    assert stats.foreign(dark).all() and stats.foreign(blue).all()


def test_an_object_held_over_the_mouth_for_a_while_is_not_learnt_as_the_face() -> None:
    """9 of a shot's 32 sampled frames have a black object where the landmarks put the lips
    and the chin (the face mesh keeps a confident mouth under it; the real clip's samples
    look like this): the model of this face still calls the object foreign. Learnt from
    every frame, the lips' spread took the object in (the full-cover clip was painted
    over)."""
    rng = np.random.default_rng(2)

    def part(y: float, cr: float, sy: float, scr: float, cb: float = 112.0) -> np.ndarray:
        n = 300
        return np.stack(
            [rng.normal(y, sy, n), rng.normal(cr, scr, n), rng.normal(cb, 3, n)], axis=1
        ).astype(np.float32)

    sampler = OcclusionSampler()
    for k in range(32):
        if 10 <= k < 19:  # the object: near-black, no colour
            sampler.skin.append(part(23, 128, 2, 1, cb=129))
            sampler.lips.append(part(23, 128, 2, 1, cb=129))
        else:  # skin; lips whose colour moves with the mouth's shape and the light
            sampler.skin.append(part(148, 146, 10, 3))
            sampler.lips.append(part(rng.uniform(80, 150), rng.uniform(150, 176), 15, 5))
    model = sampler.model()
    assert model is not None
    dark = np.array([[24, 128, 129]], np.float32)
    assert model.lips.foreign(dark).all() and model.skin.foreign(dark).all()
    assert model.lips.foreign(part(110, 163, 15, 5)).mean() < 0.05
    assert model.skin.foreign(part(148, 146, 10, 3)).mean() < 0.05


def test_nothing_in_front_of_the_face_masks_nothing(media: Path) -> None:
    """A talking head with nothing in front of it: the occlusion mask over the lower face
    is empty on nearly every frame. (The shadow under the chin and the hair beside the jaw
    read as objects on every frame once: the input's shadow was kept under the moved chin,
    a dark block on the neck.)"""
    from tests.face.test_analysis import analyse

    video = SHARED_MEDIA / edited.KATIE
    masked, frames = 0, 0
    for *_, occ in lower_face_masks(video, analyse(video)):
        frames += 1
        masked += int(float(occ.max()) > 0.5)
    assert frames > 150
    assert masked <= 0.03 * frames, (masked, frames)


CLEAN_CLIPS = (edited.KATIE, "video_videoretalking_face4.mp4", "video_LatentSync_demo1.mp4")


@pytest.mark.parametrize("name", CLEAN_CLIPS)
def test_a_clean_face_keeps_no_pixels_below_its_mouth_and_lends_every_mouth(name: str) -> None:
    """Talking heads with nothing in front of them, analysed as the pipeline does (its
    default landmark model): below the mouth corners, where the engine moves the lips and
    the chin, the mask keeps next to none of the input's pixels on any frame (kept, they
    show the input's lower lip under the new one, or its hair cut into a moved jaw line),
    and no frame is taken for one whose lips are hidden (it would lend no mouth). Before:
    on face4 a speck of shading inside the face joined the hair along the whole jaw line
    (LatentSync's: 5.9% of this region), the shadow under a fuller lower lip read as an
    object, and a dark upper lip as the lips hidden on 17 frames."""
    video = SHARED_MEDIA / name
    if not video.is_file():
        pytest.skip(f"{name} is not in ../shared/media")
    clean = clean_clip(video)
    assert clean.frames > 150
    assert clean.covered == 0
    assert clean.below <= 0.01, clean  # all three read 0.0% (python -m benchmarks.occlusion)


def test_an_object_at_the_lips_does_not_take_the_teeth_above_it(
    media: Path, tmp_path: Path
) -> None:
    """The textured object (cut from a photo: dark, red, pale highlights) over the lower lip
    and the chin, analysed as the pipeline does: the person's own teeth, visible above the
    object, stay the mouth's (the new mouth is drawn over them). Before, the mask took the
    lower teeth touching the object as part of it and kept them under a new, closed mouth:
    a white block below its lips (frames 53-55, 68-70; up to 48% of a frame's teeth kept)."""
    import cv2

    video, mask = edited.occluded(tmp_path, "textured")
    objects = {m.index: m.image[..., 0] > 128 for m in iter_frames(mask)}
    shares, teeth_frames = [], 0
    for f, lm, x1, y1, occ in lower_face_masks(video, analyse(video)):
        y2, x2 = y1 + occ.shape[0], x1 + occ.shape[1]
        obj = objects[f.index]
        if not obj.any():
            continue
        # The teeth: bright, colourless pixels in the mouth's opening, off the object.
        inner = np.zeros(obj.shape, np.uint8)
        cv2.fillPoly(inner, [np.round(lm[60:68]).astype(np.int32)], 1)
        hsv = cv2.cvtColor(f.image, cv2.COLOR_RGB2HSV)
        near_obj = cv2.dilate(obj.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        teeth = (inner > 0) & (hsv[..., 2] > 170) & (hsv[..., 1] < 60) & ~near_obj
        ys, xs = np.nonzero(teeth)
        inside = (ys >= y1) & (ys < y2) & (xs >= x1) & (xs < x2)
        ys, xs = ys[inside], xs[inside]
        if len(ys) < 20:
            continue
        teeth_frames += 1
        shares.append(float((occ[ys - y1, xs - x1] > 0.5).mean()))
    assert teeth_frames >= 10, teeth_frames
    assert max(shares) <= 0.05, (int(np.argmax(shares)), max(shares))


def test_the_place_model_tells_lip_red_on_the_chin(media: Path) -> None:
    """The place model (issue 28): a stripe of this person's own lip colour pasted on the
    chin fits the shot's colour model (skin or lips) but not what the chin looks like; the
    same frame without it has next to nothing out of place."""
    import cv2

    from lipsync.occlusion import _to_work_scale
    from tests.face.test_analysis import analyse

    video = SHARED_MEDIA / edited.KATIE
    analysis = analyse(video)
    model = analysis.occlusion[0]
    assert model.places is not None
    frame = next(iter_frames(video, start_index=100))
    small, lm = _to_work_scale(frame.image, analysis.landmarks[100])
    clean = cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    assert model.places.foreign(clean, lm).mean() < 0.01
    lips = clean[int(lm[57, 1]) - 1, int(lm[57, 0])]  # the lower lip's middle
    mouth_w = float(lm[54, 0] - lm[48, 0])
    x1, x2 = int(lm[57, 0] - 0.3 * mouth_w), int(lm[57, 0] + 0.3 * mouth_w)
    y1 = int(lm[57, 1] + 0.25 * mouth_w)
    y2 = int(y1 + 0.12 * mouth_w)
    striped = clean.copy()
    striped[y1:y2, x1:x2] = lips
    assert not model.lips.foreign(lips[None]).any()  # the colour model lets it pass
    found = model.places.foreign(striped, lm)[y1:y2, x1:x2]
    assert found.mean() > 0.8


def _bar_scene(
    rng: np.random.Generator, x: int, flat: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 60x80 face-like field (YCrCb, each place near its usual colour: ``dev`` about 1)
    with a flat bar of a skin-like colour at columns ``x``..``x`` + 30, rows 30..55, near
    enough to the face's colour that the place model lets it pass (``dev`` 3); the bar's
    mask."""
    h, w = 60, 80
    ycc = np.stack(
        [rng.normal(150, 8, (h, w)), rng.normal(146, 3, (h, w)), rng.normal(110, 3, (h, w))],
        axis=-1,
    ).astype(np.float32)
    dev = np.abs(rng.normal(0, 1, (h, w))).astype(np.float32)
    bar = np.zeros((h, w), bool)
    if flat:
        bar[30:55, x : x + 30] = True
        ycc[bar] = np.array([145, 142, 122], np.float32) + rng.normal(0, 0.7, (int(bar.sum()), 3))
        dev[bar] = 3.0
    return ycc, dev, bar


def test_notches_in_an_object_s_top_edge_are_filled_and_nothing_else() -> None:
    """An object found with notches in its top edge (its colours that the face has at those
    places: the textured object's dark red at the hidden lower lip's) is filled up to its
    edge where the notch is narrower than the width; a finger reaching higher and a gap
    between two objects (columns with nothing) are left as they are."""
    from lipsync.occlusion import _even_top

    occ = np.zeros((40, 60), np.uint8)
    occ[20:, 5:55] = 1  # the object, its top edge at row 20
    occ[20:26, 20:25] = 0  # a notch 5 columns wide and 6 rows deep
    occ[30:33, 10:14] = 0  # a hole inside it (the closing before this one's business)
    occ[8:20, 40:42] = 1  # a finger, 2 columns wide, up to row 8
    occ[:, 30:32] = 0  # a gap of 2 empty columns
    out = _even_top(occ, 9)
    assert out[20:26, 20:25].all()  # the notch filled to the edge around it
    assert out[30:33, 10:14].sum() == 0  # below the top edge nothing is touched
    assert (out[:20, 36:46] == occ[:20, 36:46]).all()  # the finger as it was
    assert out[:, 30:32].sum() == 0  # the gap stays empty
    assert (out[:, :20] == occ[:, :20]).all() and (out[:, 46:] == occ[:, 46:]).all()
    wide = occ.copy()
    wide[20:26, 10:25] = 0  # a notch 15 columns wide: an edge of its own, not a notch
    assert (_even_top(wide, 9)[:, 10:25] == wide[:, 10:25]).all()


def test_a_flat_object_found_in_part_is_found_whole() -> None:
    """A skin-coloured bar: the models find only its top rows (where it crosses the lips);
    the rest is found by the bar's own colour, from that part and, on the next frames, from
    the last frame's colour; once the bar is gone (or in another shot) nothing is."""
    from lipsync.occlusion import OcclusionMasker, Regions

    rng = np.random.default_rng(3)
    h, w = 60, 80
    every = np.ones((h, w), bool)
    inner = np.zeros((h, w), bool)
    inner[20:26, 30:50] = True  # the mouth's opening, away from the bar
    regions = Regions(every, every, inner, every, every, every)
    masker = OcclusionMasker({})
    ycc, dev, bar = _bar_scene(rng, 20)
    seed = bar.copy()
    seed[36:] = False  # its top rows: 180 px
    found = masker._object(seed, ycc, dev, regions, 10, 0, 40.0)
    assert found[bar].mean() > 0.97 and found[~bar].mean() < 0.01
    # Next frame: the bar moved on and the models find none of it.
    ycc, dev, bar = _bar_scene(rng, 23)
    found = masker._object(np.zeros((h, w), bool), ycc, dev, regions, 10, 0, 40.0)
    assert found[bar].mean() > 0.97 and found[~bar].mean() < 0.01
    # Another shot: the colour is not carried over.
    shot1 = OcclusionMasker({})
    shot1._colour = masker._colour
    found = shot1._object(np.zeros((h, w), bool), ycc, dev, regions, 10, 1, 40.0)
    assert not found.any()
    # The bar is gone: the face's own patches of about its colour are not taken for it.
    ycc, dev, _ = _bar_scene(rng, 0, flat=False)
    for y, x in ((5, 5), (40, 10), (45, 60)):
        ycc[y : y + 8, x : x + 8] = (146, 141, 121)
        dev[y : y + 8, x : x + 8] = 3.0
    found = masker._object(np.zeros((h, w), bool), ycc, dev, regions, 10, 0, 40.0)
    assert not found.any()


def test_a_mask_is_held_one_frame_after_the_object_goes(media: Path) -> None:
    """Nothing in front: no mask at all (the masker skips the empty mask's work); the frame
    after one with an object still holds half of its mask (moved with the face), the next
    one none."""
    from lipsync.face.geometry import lower_face_polygon
    from lipsync.occlusion import OcclusionMasker
    from tests.face.test_analysis import analyse

    video = SHARED_MEDIA / edited.KATIE
    analysis = analyse(video)
    masker = OcclusionMasker(analysis.occlusion)
    frames = [f.image for f in iter_frames(video, start_index=100) if f.index < 104]
    lm = analysis.landmarks[100]
    poly = lower_face_polygon(lm)
    x1, y1 = (int(v) for v in np.floor(poly.min(axis=0)))
    x2, y2 = (int(v) for v in np.ceil(poly.max(axis=0)))
    mouth_w = float(lm[54, 0] - lm[48, 0])
    bar = frames[1].copy()
    bx, by = int(lm[57, 0] - 0.5 * mouth_w), int(lm[57, 1] + 0.15 * mouth_w)
    bar[by : by + int(0.5 * mouth_w), bx : bx + int(mouth_w)] = (24, 22, 26)
    shown = [frames[0], bar, frames[2], frames[3]]
    peaks = []
    for k, img in enumerate(shown):
        occ = masker.occlusion(img, analysis.landmarks[100 + k], 0, x1, y1, y2 - y1, x2 - x1)
        assert occ is not None
        peaks.append(float(occ.max()))
    assert peaks[0] == 0.0 and peaks[1] > 0.9
    assert 0.3 < peaks[2] < 0.9 and peaks[3] == 0.0


def test_an_object_goes_on_past_the_jaw_in_lip_colours(media: Path) -> None:
    """A dark bar over the chin whose lower part, past the jaw line, has dark-red strands
    that pass as this person's lip colour (the textured clip's): they are masked with the
    bar (there are no lips there); the same strands past the jaw line with nothing over
    the face are not (there only what joins an object found inside it)."""
    from dataclasses import replace

    import cv2

    from lipsync.face.geometry import lower_face_polygon
    from lipsync.occlusion import ColourStats, OcclusionMasker
    from tests.face.test_analysis import analyse

    video = SHARED_MEDIA / edited.KATIE
    analysis = analyse(video)
    frame = next(iter_frames(video, start_index=100)).image
    lm = analysis.landmarks[100]
    poly = lower_face_polygon(lm)
    x1, y1 = (int(v) for v in np.floor(poly.min(axis=0)))
    x2, y2 = (int(v) for v in np.ceil(poly.max(axis=0)))
    mouth_w = float(lm[54, 0] - lm[48, 0])
    # Dark-red strands (YCrCb about 25-60, 137, 122 as in the textured clip), a tenth of a
    # mouth wide each: not flat (see _flat_object).
    h, w = frame.shape[:2]
    stripe = (np.arange(w) // max(2, int(0.1 * mouth_w))) % 2
    ycc = np.zeros((h, w, 3), np.uint8)
    ycc[...] = (137, 137, 122)
    ycc[..., 0] = np.where(stripe, 25, 60)[None, :]
    strands = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    cx, chin = int(lm[57, 0]), int(lm[8, 1])
    left, right = cx - int(0.35 * mouth_w), cx + int(0.35 * mouth_w)
    top, mid = int(lm[57, 1] + 0.25 * mouth_w), chin - int(0.35 * mouth_w)
    bottom = chin + int(0.2 * mouth_w)
    past = np.zeros(frame.shape[:2], bool)
    past[chin:bottom, left:right] = True  # the strands below the chin
    # The lips' colours as wide as the pipeline (MediaPipe's landmarks) learns them on this
    # clip: the strands pass as lips.
    wide = ColourStats(np.float32([167, 112]), np.float32([13.3, 4.4]), -19.0, 251.0)
    model = replace(analysis.occlusion[0], lips=wide)
    for with_bar in (True, False):
        img = frame.copy()
        if with_bar:
            img[top:mid, left:right] = (24, 22, 26)
            img[mid:bottom, left:right] = strands[mid:bottom, left:right]
        else:
            img[past] = strands[past]
        masker = OcclusionMasker({0: model})
        occ = masker.occlusion(img, lm, 0, x1, y1, y2 - y1, x2 - x1)
        assert occ is not None
        full = np.zeros(frame.shape[:2], np.float32)
        full[y1:y2, x1:x2] = occ
        if with_bar:
            assert full[past].mean() > 0.8
        else:
            assert full[past].mean() < 0.2
