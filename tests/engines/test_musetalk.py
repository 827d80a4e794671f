"""The MuseTalk 1.5 engine: published layout, strict loading, the reference's computation.

No weights can be downloaded: the tests build randomly initialised networks from configs in
the published format (the UNet and VAE with the published schema but reduced widths, so a
run takes seconds on two cores; whisper-tiny at its real size), save them exactly as the
published files are laid out under ``models/`` and load them through the engine's loaders.
The reference's computation is restated here from reading TMElyralab/MuseTalk
(``musetalk/utils/audio_processor.py``, ``musetalk/models/vae.py``, ``scripts/inference.py``)
on top of the libraries' own ``from_pretrained`` loaders, and the engine is checked
against it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from lipsync.engines import ENGINES, create_engine
from lipsync.engines.base import EngineContext
from lipsync.engines.musetalk import MuseTalkEngine
from lipsync.engines.musetalk import audio as mt_audio
from lipsync.engines.musetalk import face as mt_face
from lipsync.engines.musetalk.engine import MuseTalkRunner
from lipsync.engines.musetalk.loaders import FILES, load_models
from lipsync.engines.musetalk.published import PUBLISHED_UNET
from lipsync.errors import ModelMismatch, ModelMissing
from lipsync.models import model_by_filename
from lipsync.types import FaceObs
from tests import media_factory as mf
from tests.engines._musetalk_helpers import (
    FPS,
    SMALL_UNET,
    face_landmarks,
    psnr,
    reference_chunks,
    reference_faces,
    reference_windows,
    speech,
)

MODELS = ("musetalk",)  # models_dir: tests/engines/conftest.py


@pytest.fixture(scope="module")
def runner(models_dir: Path) -> MuseTalkRunner:
    return MuseTalkRunner(load_models(models_dir), latents="mean")


# --- tests -------------------------------------------------------------------------------


def test_registry_and_models_list_name_every_file() -> None:
    assert ENGINES["musetalk"].needs_weights
    for name in FILES:
        entry = model_by_filename()[name]
        assert "musetalk" in entry.used_by and entry.licence and entry.source
        assert entry.sha256 is not None and len(entry.sha256) == 64
    parser = model_by_filename()["face-parse-bisent/79999_iter.pth"]
    assert parser.sha256 and "musetalk" in parser.used_by and "CelebAMask-HQ" in parser.licence
    assert "OpenRAIL-M" in model_by_filename()["musetalkV15/unet.pth"].licence
    readme = (Path(__file__).resolve().parents[2] / "models" / "README.md").read_text()
    for name in (*FILES, parser.filename):
        assert f"`{name}`" in readme and f"`{model_by_filename()[name].sha256}`" in readme


def test_full_published_unet_config_has_the_sd15_layout() -> None:
    """The published musetalk.json builds (on the meta device: no memory, instant) an
    860 M-parameter UNet whose key layout the loader accepts."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(PUBLISHED_UNET)
    state = unet.state_dict()
    assert state["conv_in.weight"].shape == (320, 8, 3, 3)
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    assert state[key].shape == (320, 384)
    assert state["conv_out.weight"].shape == (4, 320, 3, 3)
    assert sum(v.numel() for v in state.values()) == 849_947_844


def test_window_function_equals_the_reference_reading() -> None:
    """Trimming, zero padding and windows against ``get_whisper_chunk`` as written, for
    lengths around segment and frame boundaries and several frame rates."""
    rng = np.random.default_rng(0)
    states = rng.standard_normal((3000, 5, 8)).astype(np.float32)
    for n_samples, fps in [(16000 * 2, 25), (16000 * 31 + 123, 25), (12345, 30), (40000, 24)]:
        ref = reference_windows(torch.from_numpy(states)[None], n_samples, fps).numpy()
        ours = mt_audio.frame_windows(states, n_samples, float(fps), len(ref))
        assert ours.shape == ref.shape == (math.floor(n_samples / 16000 * fps), 50, 8)
        np.testing.assert_array_equal(ours, ref)


def test_window_layout_and_padding_by_hand() -> None:
    """Frame 0 at 25 fps: 4 zero states, then states 0..5; time-major, layers inside."""
    states = np.arange(100 * 5 * 1, dtype=np.float32).reshape(100, 5, 1) + 1
    out = mt_audio.frame_windows(states, 16000 * 2, 25.0, 50)
    assert out.shape == (50, 50, 1)
    first = out[0, :, 0].reshape(10, 5)
    assert np.all(first[:4] == 0)
    np.testing.assert_array_equal(first[4:], states[:6, :, 0])
    # frame i starts at state 2 * i - 4; the last frames run into the zero tail.
    np.testing.assert_array_equal(out[10, :, 0].reshape(10, 5), states[16:26, :, 0])
    last = out[49, :, 0].reshape(10, 5)
    np.testing.assert_array_equal(last[:6], states[94:100, :, 0])
    assert np.all(last[6:] == 0)
    # More frames than the speech gives: the zero padding continues.
    longer = mt_audio.frame_windows(states, 16000 * 2, 25.0, 60)
    np.testing.assert_array_equal(longer[:50], out)
    assert np.all(longer[56:] == 0)


def test_whisper_chunks_equal_the_reference(models_dir: Path, runner: MuseTalkRunner) -> None:
    audio = speech(31.3)  # two 30 s segments
    ref = reference_chunks(models_dir / "whisper", audio, 25)
    ours = runner.whisper_chunks(audio, FPS, len(ref))
    assert ref.shape == (782, 50, 384) and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_generated_faces_equal_the_reference(models_dir: Path, runner: MuseTalkRunner) -> None:
    face = mf.astronaut()[20:300, 120:380]
    crops = np.stack(
        [
            cv2.resize(np.roll(face, 3 * k, axis=1), (256, 256), interpolation=cv2.INTER_LANCZOS4)
            for k in range(3)
        ]
    )
    chunks = runner.whisper_chunks(speech(1.0), FPS, 25)[[0, 12, 24]]
    ours = runner.generate_faces(crops, chunks)  # RGB, one batch of 3
    ref = reference_faces(models_dir, crops[..., ::-1].copy(), chunks)[..., ::-1]
    assert ours.shape == ref.shape == (3, 256, 256, 3)
    assert min(psnr(a, b) for a, b in zip(ours, ref, strict=True)) >= 40
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 2
    # The audio is really used: another window gives another face.
    other = runner.generate_faces(crops[:1], chunks[2:3])
    assert not np.array_equal(other[0], ours[0])


def test_sampled_latents_draw_as_the_reference(models_dir: Path, runner: MuseTalkRunner) -> None:
    """The default (``latents="sample"``): the reference's inference draws the posterior
    crop by crop, masked crop first; with the same seed the faces are the reference's."""
    face = mf.astronaut()[20:300, 120:380]
    crops = np.stack([cv2.resize(np.roll(face, 5 * k, axis=0), (256, 256)) for k in range(2)])
    chunks = runner.whisper_chunks(speech(1.0), FPS, 25)[[3, 20]]
    sampler = MuseTalkRunner(load_models(models_dir), latents="sample", seed=7)
    ours = sampler.generate_faces(crops, chunks)
    ref = reference_faces(models_dir, crops[..., ::-1].copy(), chunks, seed=7)[..., ::-1]
    assert min(psnr(a, b) for a, b in zip(ours, ref, strict=True)) >= 40
    # a job restarts the draws from the seed; the mean is another latent (random VAE)
    sampler.reset()
    np.testing.assert_array_equal(sampler.generate_faces(crops, chunks), ours)
    assert psnr(runner.generate_faces(crops, chunks)[0], ours[0]) < 40


def test_crop_box_follows_the_reference() -> None:
    lm = np.zeros((68, 2), np.float32)
    lm[:, 0] = np.linspace(100.7, 220.2, 68)
    lm[:, 1] = 150.0
    lm[8] = (160.0, 300.9)  # chin
    lm[29] = (160.0, 210.5)  # nose
    face = FaceObs((90, 100, 230, 310), lm)
    # top = 210 - (300 - 210) = 120; bottom = chin 300 + 10 (v1.5 margin)
    assert mt_face.crop_box(face, 640, 480) == (100, 120, 220, 310)
    assert mt_face.crop_box(face, 640, 480, bbox_shift=5) == (100, 130, 220, 310)
    assert mt_face.crop_box(face, 640, 305)[3] == 305  # clipped to the frame
    # A shift past the chin moves the bottom too (the reference shifts landmark 29 itself):
    # the box comes out empty and falls back to the detector's box.
    assert mt_face.crop_box(face, 640, 480, bbox_shift=95) == (90, 100, 230, 320)
    nan = FaceObs((90, 100, 230, 310), np.full((68, 2), np.nan, np.float32))
    assert mt_face.crop_box(nan, 640, 480) == (90, 100, 230, 320)


def test_vae_images_mask_the_lower_half() -> None:
    crops = np.full((1, 256, 256, 3), 255, np.uint8)
    masked, whole = mt_face.vae_images(crops)
    assert masked.shape == whole.shape == (1, 3, 256, 256)
    assert np.all(whole == 1.0)
    assert np.all(masked[:, :, :128] == 1.0) and np.all(masked[:, :, 128:] == -1.0)


def test_paste_mask_is_feathered_inside_the_box() -> None:
    lm = _face_landmarks()
    face = FaceObs((0, 0, 1, 1), lm)
    box = mt_face.crop_box(face, 512, 512)
    mask = mt_face.paste_mask(face, box)
    h, w = box[3] - box[1], box[2] - box[0]
    assert mask.shape == (h, w) and mask.max() == pytest.approx(1.0, abs=1e-3)
    assert np.all(mask[: h // 2] == 0)
    assert np.all(mask[0] == 0) and np.all(mask[-1] == 0)
    assert np.all(mask[:, 0] == 0) and np.all(mask[:, -1] == 0)
    assert ((mask > 0.05) & (mask < 0.95)).any(), "feathered"
    mouth = (lm[48:68] - np.array(box[:2])).mean(axis=0).astype(int)
    assert mask[mouth[1], mouth[0]] > 0.9


def _face_landmarks() -> np.ndarray:
    return face_landmarks(mf.astronaut())


def test_engine_generates_masked_patches(models_dir: Path) -> None:
    engine = create_engine(
        "musetalk", EngineContext(device="cpu", models_dir=models_dir, batch_size=2)
    )
    assert isinstance(engine, MuseTalkEngine)
    with pytest.raises(RuntimeError):
        engine.generate([mf.astronaut()], [FaceObs((0, 0, 1, 1), _face_landmarks())], [0])
    engine.prepare(speech(0.4), FPS, 10)
    frame = mf.astronaut()
    face = FaceObs((0, 0, 1, 1), _face_landmarks())
    patches = engine.generate([frame] * 3, [face] * 3, [0, 5, 30])  # 30: past the end
    box = mt_face.crop_box(face, frame.shape[1], frame.shape[0])
    for p in patches:
        assert (p.x1, p.y1, p.x2, p.y2) == box
        assert p.mask is not None and p.mask.shape == p.image.shape[:2]
    info = engine.info()
    assert info["frames"] == 3 and info["device"] == "cpu" and info["fp16"] is False
    assert info["latents"] == "sample" and info["blend_mask"] == "landmarks"
    # Batching does not change the result.
    single = create_engine(
        "musetalk", EngineContext(device="cpu", models_dir=models_dir, batch_size=1)
    )
    single.prepare(speech(0.4), FPS, 10)
    again = single.generate([frame] * 3, [face] * 3, [0, 5, 30])
    for a, b in zip(patches, again, strict=True):
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1


@pytest.mark.parametrize("missing", FILES)
def test_missing_file_names_it_and_where_it_goes(
    models_dir: Path, tmp_path: Path, missing: str
) -> None:
    partial = tmp_path / "models"
    for name in FILES:
        if name != missing:
            (partial / name).parent.mkdir(parents=True, exist_ok=True)
            (partial / name).symlink_to(models_dir / name)
    with pytest.raises(ModelMissing) as err:
        create_engine("musetalk", EngineContext(device="cpu", models_dir=partial))
    assert missing in err.value.message and "models/" in err.value.message


def _copy_layout(src: Path, dst: Path) -> Path:
    for name in FILES:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        (dst / name).symlink_to(src / name)
    return dst


def _replace(directory: Path, name: str, state: dict[str, Any]) -> None:
    (directory / name).unlink()
    torch.save(state, directory / name)


def test_unet_key_and_shape_mismatches_are_refused(models_dir: Path, tmp_path: Path) -> None:
    state = torch.load(models_dir / "musetalkV15" / "unet.pth")
    renamed = dict(state)
    renamed["conv_in.weights"] = renamed.pop("conv_in.weight")
    bad = _copy_layout(models_dir, tmp_path / "renamed")
    _replace(bad, "musetalkV15/unet.pth", renamed)
    with pytest.raises(ModelMismatch, match="unet.pth.*missing conv_in.weight"):
        load_models(bad)
    shaped = dict(state)
    shaped["conv_in.weight"] = torch.zeros(32, 4, 3, 3)  # a 4-channel (plain SD) UNet
    bad = _copy_layout(models_dir, tmp_path / "shaped")
    _replace(bad, "musetalkV15/unet.pth", shaped)
    with pytest.raises(ModelMismatch, match="wrong shape conv_in.weight"):
        load_models(bad)


def test_vae_and_whisper_mismatches_are_refused(models_dir: Path, tmp_path: Path) -> None:
    vae = torch.load(models_dir / "sd-vae" / "diffusion_pytorch_model.bin")
    vae.pop("decoder.conv_out.weight")
    bad = _copy_layout(models_dir, tmp_path / "vae")
    _replace(bad, "sd-vae/diffusion_pytorch_model.bin", vae)
    with pytest.raises(ModelMismatch, match="diffusion_pytorch_model.bin.*missing"):
        load_models(bad)
    whisper = torch.load(models_dir / "whisper" / "pytorch_model.bin")
    whisper["model.encoder.conv1.weight"] = torch.zeros(384, 128, 3)  # large-v3's 128 mels
    bad = _copy_layout(models_dir, tmp_path / "whisper")
    _replace(bad, "whisper/pytorch_model.bin", whisper)
    with pytest.raises(ModelMismatch, match="pytorch_model.bin.*wrong shape"):
        load_models(bad)
    garbage = _copy_layout(models_dir, tmp_path / "garbage")
    (garbage / "musetalkV15/unet.pth").unlink()
    (garbage / "musetalkV15/unet.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelMismatch, match="unet.pth"):
        load_models(garbage)
    config = _copy_layout(models_dir, tmp_path / "config")
    (config / "musetalkV15/musetalk.json").unlink()
    (config / "musetalkV15/musetalk.json").write_text(
        json.dumps({**SMALL_UNET, "cross_attention_dim": 768})
    )
    with pytest.raises(ModelMismatch):
        load_models(config)


def _cut_wav(path: Path, seconds: float, out: Path) -> Path:
    from lipsync.media.audio import load_audio

    wav = load_audio(path, sample_rate=16000, channels=1)[0][0]
    return mf.write_wav(out, wav[: int(16000 * seconds)].astype(np.float32), 16000)


@pytest.mark.slow
def test_cli_run_end_to_end_changes_only_the_masked_region(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lipsync run --engine musetalk`` on a real clip with random weights: the output is as
    long as the speech, and outside each frame's pasted mask the picture is the input's."""
    from lipsync import cli
    from lipsync.media.decode import iter_frames

    video = mf.SHARED_MEDIA / "video_SadTalker_WDA_KatieHill_000.mp4"
    speech_src = mf.SHARED_MEDIA / "audio_Real3DPortrait_Obama_5s.wav"
    if not (video.is_file() and speech_src.is_file()):
        pytest.skip("../shared/media is not present")
    audio = _cut_wav(speech_src, 1.2, tmp_path / "speech.wav")
    recorded: dict[int, tuple[int, int, np.ndarray, tuple[int, int]]] = {}
    original = MuseTalkEngine.generate

    def recording(self: MuseTalkEngine, frames: Any, faces: Any, indices: Any) -> Any:
        patches = original(self, frames, faces, indices)
        for frame, i, p in zip(frames, indices, patches, strict=True):
            recorded[int(i)] = (p.x1, p.y1, p.mask, frame.shape[:2])
        return patches

    monkeypatch.setattr(MuseTalkEngine, "generate", recording)
    out = tmp_path / "out.mp4"
    started = time.monotonic()
    code = cli.main(
        [
            "run",
            "--video",
            str(video),
            "--audio",
            str(audio),
            "--output",
            str(out),
            "--engine",
            "musetalk",
            "--models-dir",
            str(models_dir),
            "--device",
            "cpu",
            "--enhancer",
            "none",
            "--crf",
            "0",
            "--batch-size",
            "8",
            "--no-progress",
        ]
    )
    assert code == 0, f"lipsync run failed after {time.monotonic() - started:.1f}s"
    outs = [f.image for f in iter_frames(out, pixel_format="luma")]
    frames_in = iter_frames(video, pixel_format="luma")
    ins = [next(frames_in).image for _ in outs]
    assert len(outs) == 30 and abs(mf.audio_duration(out) - 1.2) < 0.05
    assert len(recorded) == 30
    changed_inside = 0
    for k, (got, src) in enumerate(zip(outs, ins, strict=True)):
        x1, y1, mask, shape = recorded[k]
        assert shape == src.shape, "the face is drawn at the frame's own scale"
        inside = np.zeros(src.shape, bool)
        h, w = mask.shape
        inside[y1 : y1 + h, x1 : x1 + w] = mask > 0
        grown = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        diff = np.abs(got.astype(int) - src.astype(int))
        # The pipeline converts only the patch's box (widened to even coordinates) back
        # to I420: outside it the output is the input exactly.
        box = np.zeros(src.shape, bool)
        box[max(0, y1 - 1) : y1 + h + 1, max(0, x1 - 1) : x1 + w + 1] = True
        assert diff[~box].max() == 0, f"frame {k}: pixels changed outside the patch box"
        # Inside the box but outside the mask only the RGB round trip of that conversion
        # (4:2:0 chroma, rounding) shows: no drawn pixel.
        kept = box & ~grown
        assert diff[kept].mean() < 0.5 and np.percentile(diff[kept], 99.5) <= 2, k
        changed_inside += int((diff[inside] > 8).sum())
    assert changed_inside > 1000, "the random network's face is pasted inside the mask"
