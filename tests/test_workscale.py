"""Large faces at a working scale: cut out, scaled down, rendered, scaled back and blended
into the full-resolution frame; faces at or below the working size take the native path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import lipsync
from lipsync.composite import blend_into, composite
from lipsync.face.geometry import crop_box, lower_face_polygon
from lipsync.face.landmarks import create_landmarker
from lipsync.face.tracker import FaceTracker
from lipsync.media.decode import (
    even_box,
    i420_crop_rgb,
    i420_to_rgb,
    iter_frames,
    paste_box,
    paste_region,
    to_i420,
)
from lipsync.options import RunOptions
from lipsync.types import FaceObs, Patch
from lipsync.workscale import WORK_FACE_ENV, cut, face_width, paste_back, work_region
from tests import media_factory as mf


def _landmarks(rgb: np.ndarray) -> np.ndarray:
    """Landmarks as the pipeline finds them (on the frame's I420 luma)."""
    lm = FaceTracker().update(to_i420(rgb)[: rgb.shape[0]])
    assert lm is not None
    return lm


def _lower_face(shape: tuple[int, int], lm: np.ndarray, grow: int = 9) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(lower_face_polygon(lm, extend=0.2)).astype(np.int32)], 1)
    return cv2.dilate(m, np.ones((grow, grow), np.uint8)) > 0


def _big_portrait() -> np.ndarray:
    """The astronaut's face cut out and enlarged: a 1280x1280 portrait, face ~460 px."""
    return np.ascontiguousarray(
        cv2.resize(mf.astronaut()[20:276, 110:366], (1280, 1280), interpolation=cv2.INTER_CUBIC)
    )


def test_region_blend_is_the_whole_frame_composite() -> None:
    """The native path blends and converts only the patch's box: the same bytes as the
    whole-frame composite + paste it replaced, for patches inside, across the edge, with
    and without their own mask, at full and part strength."""
    rng = np.random.default_rng(0)
    rgb = mf.astronaut()[:, :318]  # an odd-sized part, padded to even as the pipeline does
    yuv = to_i420(rgb)
    frame = i420_to_rgb(yuv)
    h, w = frame.shape[:2]
    lm = _landmarks(frame)
    face = FaceObs(crop_box(lm, (0, 10, 0, 0), w, h), lm)
    for x1, y1, pw, ph, own_mask, blend in [
        (151, 203, 81, 57, False, 1.0),
        (-7, 480, 60, 50, True, 1.0),
        (290, -3, 41, 40, True, 0.6),
        (160, 230, 63, 45, False, 0.3),
    ]:
        image = rng.integers(0, 256, (ph, pw, 3), dtype=np.uint8)
        mask = rng.random((ph, pw)).astype(np.float32) if own_mask else None
        patch = Patch(x1, y1, image, mask=mask)
        want = paste_region(yuv, composite(frame, patch, face, blend), x1, y1, x1 + pw, y1 + ph)
        ex1, ey1, ex2, ey2 = even_box(x1, y1, patch.x2, patch.y2, w, h)
        canvas = frame[ey1:ey2, ex1:ex2].copy()
        blend_into(canvas, (ex1, ey1), (w, h), patch, face, blend)
        got = paste_box(yuv, canvas, ex1, ey1)
        assert np.array_equal(got, want), (x1, y1)


def test_crop_conversion_matches_the_whole_frame() -> None:
    yuv = to_i420(mf.astronaut())
    assert np.array_equal(i420_crop_rgb(yuv, 100, 60, 300, 250), i420_to_rgb(yuv)[60:250, 100:300])


def test_region_scale_and_paste_back() -> None:
    """A face above the working size gets a region around it at the working scale, the
    landmarks where the face is in the scaled image; a patch that changes nothing comes back
    as the frame (up to the resampling) and nothing outside its mask's box changes."""
    rgb = _big_portrait()
    yuv = to_i420(rgb)
    frame = i420_to_rgb(yuv)
    h, w = frame.shape[:2]
    lm = _landmarks(frame)
    assert face_width(lm) > 400
    face = FaceObs(crop_box(lm, (0, 10, 0, 0), w, h), lm)
    assert work_region(lm, face.box, w, h, face_width(lm) + 1) is None  # native path
    region = work_region(lm, face.box, w, h, 200)
    assert region is not None and region.x1 % 2 == 0 and region.y2 % 2 == 0
    work = cut(yuv, region, face)
    assert work.image.shape[:2] == (region.height, region.width)
    assert face_width(work.face.landmarks) == pytest.approx(200, rel=0.01)
    # The landmarks found in the working image agree with the scaled ones (a pixel or two).
    found = _landmarks(work.image)
    assert np.median(np.linalg.norm(found - work.face.landmarks, axis=1)) < 2.0
    bx1, by1, bx2, by2 = work.face.box
    assert 0 <= bx1 < bx2 <= region.width and 0 <= by1 < by2 <= region.height

    # An unchanged lower face pasted back with a mask: the frame, softened only there.
    px1, py1, px2, py2 = 40, 110, 170, 190
    mask = np.zeros((py2 - py1, px2 - px1), np.float32)
    mask[10:-10, 10:-10] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), 4) * (mask > 0)
    patch = Patch(px1, py1, work.image[py1:py2, px1:px2].copy(), mask=mask)
    out = paste_back(yuv, work, patch)
    out_rgb = i420_to_rgb(out)
    changed = np.flatnonzero((out != yuv).any(axis=1))
    assert len(changed)
    inside = np.zeros((h, w), bool)
    fx1 = region.x1 + int((px1 - 1) / region.sx)
    fx2 = region.x1 + int((px2 + 1) / region.sx) + 2
    fy1 = region.y1 + int((py1 - 1) / region.sy)
    fy2 = region.y1 + int((py2 + 1) / region.sy) + 2
    inside[fy1:fy2, fx1:fx2] = True
    luma_changed = out[:h] != yuv[:h]
    assert not luma_changed[~inside].any(), "only the mask's box changes"
    assert mf.psnr(out_rgb, frame, inside) > 30
    # A patch that changes the image shows up where its mask is, at full resolution.
    dark = Patch(px1, py1, np.zeros_like(patch.image), mask=np.ones_like(mask))
    out = i420_to_rgb(paste_back(yuv, work, dark))
    cx = region.x1 + int(((px1 + px2) / 2 + 0.5) / region.sx)
    cy = region.y1 + int(((py1 + py2) / 2 + 0.5) / region.sy)
    assert out[cy, cx].max() < 40 and out[fy1 - 4, cx].min() == frame[fy1 - 4, cx].min()


def test_large_still_renders_at_the_working_scale(
    tmp_path: Path, speech_pause: tuple[Path, float, float]
) -> None:
    """A portrait whose face is above the working size: full-resolution output, unchanged
    outside the lower face, a mouth that moves with the speech and rests in the pause."""
    audio, p0, p1 = speech_pause
    src = _big_portrait()
    image = mf.write_png(tmp_path / "big.png", src)
    out = tmp_path / "o.mp4"
    r = lipsync.run(image, audio, out)
    assert r.engine_info["work_scale_frames"] == r.frames
    frames = mf.decode_video(out)
    assert frames[0].shape == src.shape and len(frames) == r.frames
    lm = _landmarks(src)
    keep = ~_lower_face(src.shape[:2], lm, grow=25)
    luma = lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2YUV)[..., 0]  # noqa: E731
    assert min(mf.psnr(luma(f), luma(src), keep) for f in frames[::10]) >= 40
    x1, y1 = lm[48:68].min(axis=0).astype(int) - 10
    x2, y2 = lm[48:68].max(axis=0).astype(int) + 10
    mouth = np.stack([f[y1:y2, x1:x2].astype(np.float32).mean(axis=2) for f in frames])
    t = (np.arange(len(frames)) + 0.5) / 25
    audio_s = mf.audio_duration(audio)
    speaking = (t < p0 - 0.1) | ((t > p1 + 0.1) & (t < audio_s - 0.1))
    pause = (t > p0 + 0.2) & (t < p1 - 0.2)
    change = np.abs(np.diff(mouth, axis=0)).mean(axis=(1, 2))
    assert change[speaking[1:]].mean() > 3 * max(change[pause[1:]].mean(), 0.05)


def test_normal_faces_take_the_native_path_and_forced_scale_matches_it(
    tmp_path: Path, portrait_png: Path, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The astronaut's 92 px face is below the working size (native path, no frame at the
    working scale); with the working size forced below it, the mouth comes out in the same
    place and shape, a little softer, and nothing outside the lower face changes (lossless
    output; the native path's RGB round trip of its patch box may move a pixel by one)."""
    native = lipsync.run(portrait_png, speech_wav, tmp_path / "n.mp4", crf=0)
    assert native.engine_info["work_scale_frames"] == 0
    monkeypatch.setenv(WORK_FACE_ENV, "60")
    work = lipsync.run(portrait_png, speech_wav, tmp_path / "w.mp4", crf=0)
    assert work.engine_info["work_scale_frames"] == work.frames == native.frames
    src = next(iter(iter_frames(portrait_png, pixel_format="i420"))).image
    h = src.shape[0] * 2 // 3
    # As the pipeline finds it: with its default landmark model.
    options = RunOptions()
    landmarker = create_landmarker(options.landmark_model, options.models_dir)
    lm = FaceTracker(landmarker=landmarker).update(src[:h])
    assert lm is not None
    # 15 px of margin: at the working scale the mesh's points (the default) put the warp's
    # edge a few pixels past the polygon of one unsmoothed fit
    keep = ~_lower_face((h, src.shape[1]), lm, grow=15)
    a = [f.image for f in iter_frames(tmp_path / "n.mp4", pixel_format="i420")]
    b = [f.image for f in iter_frames(tmp_path / "w.mp4", pixel_format="i420")]
    x1, y1 = lm[48:68].min(axis=0).astype(int) - 6
    x2, y2 = lm[48:68].max(axis=0).astype(int) + 6
    moved = 0
    for fa, fb in zip(a, b, strict=True):
        for f in (fa, fb):
            assert np.abs(f[:h][keep].astype(int) - src[:h][keep]).max() <= 1
        assert mf.psnr(fa[y1:y2, x1:x2], fb[y1:y2, x1:x2]) > 24
        moved += mf.psnr(fb[y1:y2, x1:x2], src[y1:y2, x1:x2]) < 35
    assert moved > len(a) // 4, "the working-scale mouth moves"


def test_retrieval_on_a_real_clip_at_a_forced_working_scale(
    tmp_path: Path, shared_media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrieval engine indexes the source at its own resolution and maps its mouths
    onto whatever frame it is given by the landmarks: at a working scale (here half the
    face) the same mouths land in the same place as on the native path."""
    video = shared_media / "video_videoretalking_face2.mp4"
    audio = shared_media / "audio_Real3DPortrait_Obama_5s.wav"
    native = lipsync.run(video, audio, tmp_path / "n.mp4")
    monkeypatch.setenv(WORK_FACE_ENV, "150")
    work = lipsync.run(video, audio, tmp_path / "w.mp4")
    assert native.engine_info["path"] == work.engine_info["path"] == "retrieval"
    assert work.engine_info["work_scale_frames"] == work.frames
    a, b = mf.decode_video(tmp_path / "n.mp4"), mf.decode_video(tmp_path / "w.mp4")
    lm = _landmarks(a[0])
    x1, y1 = lm[48:68].min(axis=0).astype(int) - 15
    x2, y2 = lm[48:68].max(axis=0).astype(int) + 15
    scores = [mf.psnr(fa[y1:y2, x1:x2], fb[y1:y2, x1:x2]) for fa, fb in zip(a, b, strict=True)]
    assert np.median(scores) > 28 and min(scores) > 22, (np.median(scores), min(scores))
