"""The articulation and mouth sharpness ratios of ``lipsync evaluate --reference``.

On a real talking clip from ../shared/media (skipped when absent), cut to 4 s at half size
and written to a temporary directory: the clip against itself, a copy with the mouth blurred
and a copy whose lower face is frozen on one closed-mouth frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from lipsync.evaluate import evaluate, format_report
from lipsync.evaluate.mouth import FaceFrame, MouthTrack, measure_mouth
from lipsync.evaluate.pauses import find_pauses, speech_frames, voice_activity
from lipsync.evaluate.reference import LIP_BOX_X_D, LIP_BOX_Y_D, MIN_FRAMES, articulation
from lipsync.media.audio import load_audio, to_mono
from lipsync.media.decode import iter_frames
from tests import media_factory as mf

CLIP = "video_videoretalking_face2.mp4"  # 844x844, 25 fps, English, own speech
NO_AUDIO_CLIP = "video_dreamtalk_MEAD_M030_front_neutral.mp4"  # 256x256, no audio track
FRAMES = 100
SIZE = 422
AUDIO_RATE = 44100

Frames = list[npt.NDArray[np.uint8]]


@dataclass
class Clip:
    frames: Frames
    audio: npt.NDArray[np.float32]
    track: MouthTrack
    path: Path


@pytest.fixture(scope="module")
def clip(shared_media: Path, tmp_path_factory: pytest.TempPathFactory) -> Clip:
    src = mf.shared_file(shared_media, CLIP)
    frames: Frames = []
    for f in iter_frames(src):
        if len(frames) == FRAMES:
            break
        frames.append(
            np.asarray(cv2.resize(f.image, (SIZE, SIZE), interpolation=cv2.INTER_AREA), np.uint8)
        )
    samples, _ = load_audio(src, sample_rate=AUDIO_RATE, channels=1)
    audio = to_mono(samples)[: FRAMES * AUDIO_RATE // 25]
    path = mf.write_video(tmp_path_factory.mktemp("ratios") / "input.mp4", frames, audio=audio)
    return Clip(frames, audio, measure_mouth(path), path)


def _box_mask(frame: FaceFrame, h: int, w: int, grow: float) -> npt.NDArray[np.float32]:
    """The lip box grown by ``grow`` eye distances each side, feathered."""
    x = (LIP_BOX_X_D[0] - grow, LIP_BOX_X_D[1] + grow)
    y = (LIP_BOX_Y_D[0] - grow, LIP_BOX_Y_D[1] + grow)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(frame.polygon(x, y)).astype(np.int32)], 1.0)
    return np.asarray(cv2.GaussianBlur(mask, (0, 0), 3.0), np.float32)[..., None]


def _blend(
    frame: npt.NDArray[np.uint8], other: npt.NDArray[np.uint8], mask: npt.NDArray[np.float32]
) -> npt.NDArray[np.uint8]:
    out = mask * other.astype(np.float32) + (1 - mask) * frame.astype(np.float32)
    return np.asarray(np.clip(np.round(out), 0, 255), np.uint8)


def _variant(clip: Clip, name: str, frames: Frames, tmp_path: Path) -> Path:
    return mf.write_video(tmp_path / f"{name}.mp4", frames, audio=clip.audio)


def _ref(video: Path, reference: Path) -> dict[str, Any]:
    data = evaluate(video, reference=reference, visemes=False, lse=False).to_dict()
    json.dumps(data)  # plain JSON types only
    ref: dict[str, Any] = data["reference_metrics"]
    return ref


def test_input_against_itself_scores_one(clip: Clip) -> None:
    report = evaluate(clip.path, reference=clip.path, visemes=False, lse=False)
    data = report.to_dict()
    ref = data["reference_metrics"]
    assert ref["articulation_ratio"] == pytest.approx(1.0, abs=0.02)
    assert ref["sharpness_ratio"] == pytest.approx(1.0, abs=0.02)
    assert ref["output_speech_p90"] == pytest.approx(ref["input_speech_p90"], rel=0.02)
    assert 0.1 < ref["input_speech_p90"] < 0.25  # a talker's mouth, not a closed one
    # Speech frames by voice activity: most of a talking clip, not all of it.
    assert MIN_FRAMES <= ref["input_speech_frames"] < FRAMES
    assert ref["output_speech_frames"] == ref["input_speech_frames"]
    assert ref["input_speech_basis"] == "voice activity of its audio track"
    assert ref["sharpness_frames"] == FRAMES and ref["input_mouth_sharpness"] > 0
    assert ref["articulation_note"] is None and ref["sharpness_note"] is None
    text = format_report(data)
    assert "articulation ratio" in text and "mouth sharpness ratio" in text
    assert "articulation" in report.method and "sharpness" in report.method


def test_blurred_mouth_is_less_sharp_but_opens_as_far(clip: Clip, tmp_path: Path) -> None:
    blurred = []
    for i, img in enumerate(clip.frames):
        frame = clip.track.face_frame(i)
        assert frame is not None
        soft = np.asarray(cv2.GaussianBlur(img, (0, 0), 1.5), np.uint8)
        blurred.append(_blend(img, soft, _box_mask(frame, SIZE, SIZE, 0.1)))
    ref = _ref(_variant(clip, "blurred", blurred, tmp_path), clip.path)
    assert ref["sharpness_ratio"] is not None and ref["sharpness_ratio"] < 0.6, ref
    art = ref["articulation_ratio"]
    assert art is not None and 0.85 < art < 1.2, ref
    # Only the mouth changed: everything outside the lower face is the input.
    assert ref["psnr_outside_lower_face"] > 40


def test_lower_face_frozen_on_a_closed_mouth_articulates_little(clip: Clip, tmp_path: Path) -> None:
    # The closed mouth: inside the 4 frames in a row that read most closed (one frame alone
    # can read 0 where the lips are parted: the aperture misses a gap now and then).
    ap = clip.track.aperture
    assert clip.track.found.all()
    runs = np.array([ap[i : i + 4].max() for i in range(ap.size - 3)])
    closed = int(np.argmin(runs)) + 1
    src = clip.track.face_frame(closed)
    assert src is not None and runs.min() < 0.08
    frozen = []
    for i, img in enumerate(clip.frames):
        dst = clip.track.face_frame(i)
        assert dst is not None
        pts = [
            np.array([f.nose, f.nose + f.across * f.d, f.nose + f.down * f.d], np.float32)
            for f in (src, dst)
        ]
        m = cv2.getAffineTransform(pts[0], pts[1])
        moved = cv2.warpAffine(clip.frames[closed], m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
        frozen.append(_blend(img, np.asarray(moved, np.uint8), _box_mask(dst, SIZE, SIZE, 0.2)))
    ref = _ref(_variant(clip, "frozen", frozen, tmp_path), clip.path)
    art = ref["articulation_ratio"]
    assert art is not None and art < 0.6, ref
    assert ref["output_speech_p90"] < 0.1


def test_input_without_an_audio_track_uses_all_its_face_frames(shared_media: Path) -> None:
    video = mf.shared_file(shared_media, NO_AUDIO_CLIP)
    speech = mf.shared_file(shared_media, "audio_Real3DPortrait_Obama_5s.wav")
    report = evaluate(video, speech, reference=video, visemes=False, lse=False)
    ref = report.reference_metrics
    assert ref is not None
    assert ref.input_speech_basis == "all face frames (the input has no audio track)"
    faces = int(measure_mouth(video).found.sum())
    assert ref.input_speech_frames == faces
    # The output side counts only the frames the evaluated speech is voiced on.
    assert MIN_FRAMES <= ref.output_speech_frames < faces
    assert ref.articulation_ratio is not None and ref.sharpness_ratio == pytest.approx(1.0)


def test_speech_frames_follow_the_voice_activity(speech_pause: tuple[Path, float, float]) -> None:
    path, start, end = speech_pause
    samples, _ = load_audio(path, sample_rate=16000, channels=1)
    mono = to_mono(samples)
    vad = voice_activity(mono)
    fps = 25.0
    n = int(mono.size / 16000 * fps) + 10  # a few frames past the speech's end
    speech = speech_frames(vad, fps, n)
    t = (np.arange(n) + 0.5) / fps
    assert not speech[(t > start + 0.1) & (t < end - 0.1)].any()  # the pause
    assert speech[t < start].mean() > 0.5 and speech[t > end].mean() > 0.3
    assert not speech[-5:].any()  # past the recording
    # The same activity gives the same pauses as computing it afresh.
    assert find_pauses(mono, activity=vad) == find_pauses(mono)


def test_articulation_needs_enough_frames_and_an_open_input() -> None:
    ap = np.linspace(0.0, 0.2, 40, dtype=np.float32)
    speech = np.zeros(40, bool)
    speech[: MIN_FRAMES - 1] = True
    few = articulation(ap, speech, ap, None)
    assert few.ratio is None and few.output_frames == MIN_FRAMES - 1
    assert few.note is not None and "output" in few.note
    shut = articulation(ap, None, np.zeros(40, np.float32), None)
    assert shut.ratio is None and shut.note is not None and "closed" in shut.note
    ok = articulation(ap, None, ap / 2, None)
    assert ok.ratio == pytest.approx(2.0) and ok.input_frames == 40
    nan = ap.copy()
    nan[:35] = np.nan  # no face: not counted
    assert articulation(nan, None, ap, None).output_frames == 5


def test_a_smaller_output_is_compared_at_the_input_size_without_blocks(
    clip: Clip, tmp_path: Path
) -> None:
    # An output at half the input's size (as --max-size makes) has less detail than the
    # input, never more: enlarged for the comparison by pixel repetition, its blocks read as
    # texture (3-4x the input's sharpness); enlarged smoothly, it reads below 1.
    even = [np.ascontiguousarray(img[:420, :420]) for img in clip.frames]
    half = [
        np.asarray(cv2.resize(img, (210, 210), interpolation=cv2.INTER_AREA), np.uint8)
        for img in even
    ]
    reference = _variant(clip, "even", even, tmp_path)
    ref = _ref(_variant(clip, "half", half, tmp_path), reference)
    assert ref["size_matched"] is False
    assert ref["sharpness_ratio"] is not None and ref["sharpness_ratio"] < 1.0, ref
