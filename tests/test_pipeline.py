"""End to end through ``lipsync.run`` on media the tests make and on the shared clips."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import lipsync
from lipsync.errors import AudioEmpty, Canceled, InvalidOption, NoFace, UnsupportedMedia
from lipsync.face.geometry import lower_face_polygon
from lipsync.face.tracker import FaceTracker
from tests import media_factory as mf


def _outside_lower_face(frame: np.ndarray) -> np.ndarray:
    lm = FaceTracker().update(frame)
    assert lm is not None
    m = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(lower_face_polygon(lm, extend=0.2)).astype(np.int32)], 1)
    return cv2.dilate(m, np.ones((9, 9), np.uint8)) == 0


def _mouth_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    lm = FaceTracker().update(frame)
    assert lm is not None
    x1, y1 = lm[48:68].min(axis=0).astype(int) - 4
    x2, y2 = lm[48:68].max(axis=0).astype(int) + 4
    return x1, y1, x2, y2


def test_portrait_and_speech_make_a_talking_video(
    tmp_path: Path, portrait_png: Path, speech_pause: tuple[Path, float, float]
) -> None:
    audio, p0, p1 = speech_pause
    out = tmp_path / "out.mp4"
    stages: list[tuple[str, float]] = []
    result = lipsync.run(portrait_png, audio, out, progress=lambda s, f: stages.append((s, f)))
    assert out.is_file() and result.output == out
    audio_s = mf.audio_duration(audio)
    frames = mf.decode_video(out)
    assert len(frames) == result.frames
    assert abs(len(frames) / 25 - audio_s) <= 1 / 25 + 1e-6, "as long as the audio, +-1 frame"
    assert frames[0].shape == (512, 512, 3)
    assert abs(mf.audio_duration(out) - audio_s) < 0.05, "the speech is carried"
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
    # Untouched outside the lower face: luma within 40 dB. (RGB is bounded by 4:2:0 chroma
    # subsampling of this detailed RGB photo, ~37 dB even for a plain re-encode.)
    src = mf.astronaut()
    keep = _outside_lower_face(src)
    luma = lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2YUV)[..., 0]  # noqa: E731
    assert min(mf.psnr(luma(f), luma(src), keep) for f in frames[::10]) >= 40
    assert min(mf.psnr(f, src, keep) for f in frames[::10]) >= 35
    # The mouth moves with speech and rests in the pause.
    x1, y1, x2, y2 = _mouth_box(src)
    mouth = np.stack([f[y1:y2, x1:x2].astype(np.float32).mean(axis=2) for f in frames])
    t = (np.arange(len(frames)) + 0.5) / 25
    speaking = (t < p0 - 0.1) | ((t > p1 + 0.1) & (t < audio_s - 0.1))
    pause = (t > p0 + 0.2) & (t < p1 - 0.2)
    change = np.abs(np.diff(mouth, axis=0)).mean(axis=(1, 2))
    assert change[speaking[1:]].mean() > 3 * max(change[pause[1:]].mean(), 0.05)
    # Progress: monotonic, ends at 1.
    fr = [f for _, f in stages]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    assert {"probe", "analyse", "render"} <= {s for s, _ in stages}
    assert set(result.timings) >= {"decode", "detect", "engine", "composite", "encode"}


@pytest.mark.parametrize(
    "mode,expected_frames",
    [("loop", 75), ("bounce", 75), ("cut_off", 50), ("silence", 50), ("remap", 75)],
)
def test_sync_modes_set_the_length(
    tmp_path: Path, portrait_video: Path, mode: str, expected_frames: int
) -> None:
    audio = mf.write_wav(
        tmp_path / "a.wav", mf.tone(3.0, 16000, 180) * (np.arange(48000) % 8000 < 5000), 16000
    )
    out = tmp_path / f"{mode}.mp4"
    r = lipsync.run(portrait_video, audio, out, sync_mode=mode, enhancer="none")
    frames = mf.decode_video(out)
    assert len(frames) == r.frames == expected_frames
    assert abs(mf.audio_duration(out) - expected_frames / 25) < 0.05


def test_no_face_anywhere_is_an_error_and_writes_nothing(tmp_path: Path, speech_wav: Path) -> None:
    grad = np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], (256, 1, 3))
    img = mf.write_png(tmp_path / "wall.png", grad)
    out = tmp_path / "o.mp4"
    with pytest.raises(NoFace):
        lipsync.run(img, speech_wav, out)
    assert list(tmp_path.glob("*.mp4")) == [] and not list(tmp_path.glob(".*part*"))


def test_frames_without_a_face_pass_through_and_are_listed(
    tmp_path: Path, speech_wav: Path
) -> None:
    faces = mf.moving_portrait_frames(20, 256)
    blank = [np.full((256, 256, 3), 90, np.uint8)] * 10
    video = mf.write_video(tmp_path / "mixed.mp4", faces + blank)
    out = tmp_path / "o.mp4"
    r = lipsync.run(video, speech_wav, out, sync_mode="cut_off", enhancer="none")
    assert r.no_face_frames == 10 and r.no_face_frame_indices == list(range(20, 30))
    frames = mf.decode_video(out)
    assert mf.psnr(frames[25], blank[0]) > 40


def test_silent_audio_is_refused(tmp_path: Path, portrait_png: Path) -> None:
    silent = mf.write_wav(tmp_path / "s.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioEmpty):
        lipsync.run(portrait_png, silent, tmp_path / "o.mp4")


def test_not_media_is_refused(tmp_path: Path, speech_wav: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("hello")
    with pytest.raises(UnsupportedMedia):
        lipsync.run(fake, speech_wav, tmp_path / "o.mp4")


def test_bad_options_are_refused(tmp_path: Path, portrait_png: Path, speech_wav: Path) -> None:
    with pytest.raises(InvalidOption):
        lipsync.run(portrait_png, speech_wav, tmp_path / "o.mp4", engine="nope")
    with pytest.raises(InvalidOption):
        lipsync.run(portrait_png, speech_wav, tmp_path / "o.mp4", sync_mode="sideways")
    with pytest.raises(InvalidOption):
        lipsync.run(portrait_png, speech_wav, tmp_path / "o.avi")


def test_cancel_stops_between_batches_and_leaves_no_file(
    tmp_path: Path, portrait_png: Path, speech_wav: Path
) -> None:
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 4

    with pytest.raises(Canceled):
        lipsync.run(
            portrait_png, speech_wav, tmp_path / "o.mp4", should_cancel=cancel, batch_size=4
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "video,audio",
    [
        ("video_videoretalking_face2.mp4", "audio_Real3DPortrait_Obama_5s.wav"),
        ("video_SadTalker_WDA_KatieHill_000.mp4", "audio_dreamtalk_korean1.wav"),
    ],
)
def test_real_clip_with_other_speech(
    tmp_path: Path, shared_media: Path, video: str, audio: str
) -> None:
    src_path = shared_media / video
    out = tmp_path / "o.mp4"
    r = lipsync.run(src_path, shared_media / audio, out)
    src = mf.decode_video(src_path)
    frames = mf.decode_video(out)
    audio_s = mf.audio_duration(shared_media / audio)
    assert abs(len(frames) - round(audio_s * r.fps)) <= 1
    assert frames[0].shape == src[0].shape
    assert r.no_face_frames == 0
    for i in (3, len(src) // 2):
        keep = _outside_lower_face(src[i])
        assert mf.psnr(frames[i], src[i], keep) >= 40


def test_wav2lip_with_a_fixed_box_matches_the_reference_inference(
    tmp_path: Path, portrait_png: Path, speech_wav: Path
) -> None:
    """``--box`` as in Wav2Lip: no detection, that crop in every frame, pasted whole; the
    frames equal what the original inference computes for the same weights and decoded
    input. Compared on the luma plane of a lossless output (the random network's output is
    noise-like, which 4:2:0 chroma cannot hold)."""
    from lipsync.audio.mel import mel_chunks, melspectrogram
    from lipsync.engines.wav2lip.export import save_published
    from lipsync.media.audio import load_audio
    from lipsync.media.decode import i420_to_rgb, iter_frames, read_image, to_i420
    from tests.engines._wav2lip_helpers import random_generator, reference_patch

    model = random_generator(seed=3)
    models = tmp_path / "models"
    models.mkdir()
    save_published(model, models / "wav2lip.pth")
    box = (60, 280, 150, 340)  # y1, y2, x1, x2
    out = tmp_path / "o.mp4"
    r = lipsync.run(
        portrait_png,
        speech_wav,
        out,
        engine="wav2lip",
        enhancer="none",
        box=box,
        models_dir=models,
        crf=0,
        occlusion="off",  # the engine's patch as the reference pastes it, nothing kept in front
    )
    lumas = [f.image for f in iter_frames(out, pixel_format="luma")]
    wav = load_audio(speech_wav, sample_rate=16000, channels=1)[0][0]
    chunks = mel_chunks(melspectrogram(wav), 25.0, r.frames)
    planes = read_image(portrait_png, "i420")  # the decoded input, as the pipeline has it
    seen = i420_to_rgb(planes)
    y1, y2, x1, x2 = box
    for k in (0, r.frames // 2, r.frames - 1):
        expected = seen.copy()
        expected[y1:y2, x1:x2] = reference_patch(model, seen, (x1, y1, x2, y2), chunks[k])
        want = to_i420(expected)[: seen.shape[0]]
        diff = np.abs(lumas[k].astype(int) - want.astype(int))
        assert diff[y1:y2, x1:x2].max() <= 2, k
        outside = np.ones(diff.shape, bool)
        outside[y1:y2, x1:x2] = False
        untouched = lumas[k][outside] == planes[: seen.shape[0]][outside]
        assert untouched.all(), "outside the box nothing changes"


def test_a_face_index_past_the_faces_seen_says_so(
    tmp_path: Path, portrait_png: Path, speech_wav: Path
) -> None:
    """--face-index 1 on a one-face photo names the index and how many faces there are,
    not "no face found in any frame"."""
    with pytest.raises(NoFace) as err:
        lipsync.run(portrait_png, speech_wav, tmp_path / "o.mp4", face_index=1)
    assert "face index 1" in err.value.message and "only 1 face is seen" in err.value.message
