"""The PyTorch Wav2Lip engine: checkpoint discovery, strict loading, reference equivalence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync.audio.mel import mel_chunks, melspectrogram
from lipsync.engines import create_engine
from lipsync.engines.base import EngineContext
from lipsync.engines.wav2lip import Wav2LipEngine, load_generator
from lipsync.engines.wav2lip.export import save_published
from lipsync.engines.wav2lip.net import Wav2Lip
from lipsync.errors import ModelMismatch, ModelMissing
from lipsync.types import FaceObs
from tests.engines._wav2lip_helpers import (
    FPS,
    reference_patch,
    speech_like,
)
from tests.media_factory import astronaut

MODELS = ("wav2lip",)  # models_dir, model and face: tests/engines/conftest.py


def test_network_layout_matches_published_checkpoints() -> None:
    state = Wav2Lip().state_dict()
    # Spot checks of the released key names and shapes.
    assert state["face_encoder_blocks.0.0.conv_block.0.weight"].shape == (16, 6, 7, 7)
    assert state["audio_encoder.12.conv_block.0.weight"].shape == (512, 512, 1, 1)
    assert state["face_decoder_blocks.1.0.conv_block.0.weight"].shape == (1024, 512, 3, 3)
    assert state["output_block.1.weight"].shape == (3, 32, 1, 1)
    params = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert params == 36_320_787
    out = Wav2Lip().eval()(torch.zeros(2, 1, 80, 16), torch.zeros(2, 6, 96, 96))
    assert out.shape == (2, 3, 96, 96)


def test_engine_matches_reference_inference(
    models_dir: Path, model: Wav2Lip, face: FaceObs
) -> None:
    frame = astronaut()
    audio = speech_like(2.0)
    n = 12
    engine = create_engine(
        "wav2lip", EngineContext(device="cpu", models_dir=models_dir, batch_size=5)
    )
    assert isinstance(engine, Wav2LipEngine)
    engine.prepare(audio, FPS, n)
    indices = list(range(n))
    patches = engine.generate([frame] * n, [face] * n, indices)
    chunks = mel_chunks(melspectrogram(audio), FPS, n)
    x1, y1, x2, y2 = face.box
    outputs = []
    for i, patch in zip(indices, patches, strict=True):
        assert (patch.x1, patch.y1, patch.x2, patch.y2) == face.box
        assert patch.image.dtype == np.uint8 and patch.image.shape == (y2 - y1, x2 - x1, 3)
        assert patch.mask is not None and np.all(patch.mask == 1.0)
        ref = reference_patch(model, frame, face.box, chunks[i])
        diff = np.abs(patch.image.astype(int) - ref.astype(int))
        assert diff.max() <= 1, f"frame {i}: max diff {diff.max()}"  # channels_last rounding
        assert (diff == 0).mean() > 0.99
        outputs.append(patch.image)
    # The speech drives the output: different windows give different mouths.
    assert np.abs(outputs[0].astype(int) - outputs[6].astype(int)).max() > 0
    # Not a flat image: the calibrated random network passes image structure through.
    assert outputs[0].std() > 5
    info = engine.info()
    assert info["checkpoint"] == "wav2lip_gan.pth" and info["device"] == "cpu"
    assert info["frames"] == n


def test_batching_does_not_change_results(models_dir: Path, face: FaceObs) -> None:
    frame = astronaut()
    audio = speech_like(1.0, seed=3)
    results = []
    for batch in (1, 7):
        engine = Wav2LipEngine(EngineContext(device="cpu", models_dir=models_dir, batch_size=batch))
        engine.prepare(audio, FPS, 7)
        results.append([p.image for p in engine.generate([frame] * 7, [face] * 7, range(7))])
    for a, b in zip(*results, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_explicit_checkpoint_and_plain_state_dict(tmp_path: Path, model: Wav2Lip) -> None:
    path = tmp_path / "custom.pth"
    torch.save(model.state_dict(), path)  # no "state_dict" wrapper, no "module." prefix
    engine = Wav2LipEngine(
        EngineContext(device="cpu", checkpoint=path, models_dir=tmp_path / "none")
    )
    assert engine.info()["checkpoint"] == "custom.pth"


def test_falls_back_to_non_gan_checkpoint(tmp_path: Path, model: Wav2Lip) -> None:
    save_published(model, tmp_path / "wav2lip.pth")
    engine = Wav2LipEngine(EngineContext(device="cpu", models_dir=tmp_path))
    assert engine.info()["checkpoint"] == "wav2lip.pth"


def test_missing_checkpoint_names_file_and_place(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as err:
        Wav2LipEngine(EngineContext(device="cpu", models_dir=tmp_path))
    assert "wav2lip_gan.pth" in err.value.message and "models/" in err.value.message
    with pytest.raises(ModelMissing):
        Wav2LipEngine(EngineContext(device="cpu", checkpoint=tmp_path / "nope.pth"))


def _save_state(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return path


def test_renamed_key_raises_mismatch(tmp_path: Path, model: Wav2Lip) -> None:
    state = dict(model.state_dict())
    state["audio_encoder.0.conv_block.0.kernel"] = state.pop("audio_encoder.0.conv_block.0.weight")
    path = _save_state(tmp_path / "renamed.pth", state)
    with pytest.raises(ModelMismatch) as err:
        load_generator(path)
    message = err.value.message
    assert "\n" not in message
    assert "missing audio_encoder.0.conv_block.0.weight" in message
    assert "unexpected audio_encoder.0.conv_block.0.kernel" in message


def test_missing_key_raises_mismatch(tmp_path: Path, model: Wav2Lip) -> None:
    state = dict(model.state_dict())
    del state["output_block.1.bias"]
    with pytest.raises(ModelMismatch, match="missing output_block.1.bias"):
        load_generator(_save_state(tmp_path / "missing.pth", state))


def test_wrong_shape_raises_mismatch(tmp_path: Path, model: Wav2Lip) -> None:
    state = dict(model.state_dict())
    state["output_block.1.weight"] = torch.zeros(3, 64, 1, 1)
    with pytest.raises(ModelMismatch, match="wrong shape output_block.1.weight"):
        load_generator(_save_state(tmp_path / "shape.pth", state))
    with pytest.raises(ModelMismatch):
        Wav2LipEngine(
            EngineContext(device="cpu", checkpoint=tmp_path / "shape.pth", models_dir=tmp_path)
        )


def test_garbage_file_raises_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "wav2lip_gan.pth"
    path.write_bytes(b"<!DOCTYPE html><html>a download page, not weights</html>")
    with pytest.raises(ModelMismatch, match="not a readable PyTorch checkpoint"):
        Wav2LipEngine(EngineContext(device="cpu", models_dir=tmp_path))


def test_checkpoint_without_batchnorm_counters_loads(tmp_path: Path, model: Wav2Lip) -> None:
    full = model.state_dict()
    state = {k: v for k, v in full.items() if "num_batches_tracked" not in k}
    assert len(state) < len(full), "the save really lacks the counters"
    loaded = load_generator(_save_state(tmp_path / "old.pth", state))
    assert not loaded.training
    got = loaded.state_dict()
    assert set(got) == set(full), "the counters are filled in, nothing else added"
    for key, value in state.items():  # every saved tensor is the one loaded
        assert torch.equal(got[key], value), key
    mel, face = torch.rand(2, 1, 80, 16), torch.rand(2, 6, 96, 96)
    with torch.inference_mode():
        assert torch.equal(loaded(mel, face), model.eval()(mel, face)), "same network output"


def test_generate_before_prepare_is_an_error(models_dir: Path, face: FaceObs) -> None:
    engine = Wav2LipEngine(EngineContext(device="cpu", models_dir=models_dir))
    with pytest.raises(RuntimeError, match="prepare"):
        engine.generate([astronaut()], [face], [0])


def test_indices_past_the_end_use_last_window(models_dir: Path, face: FaceObs) -> None:
    engine = Wav2LipEngine(EngineContext(device="cpu", models_dir=models_dir))
    engine.prepare(speech_like(0.5), FPS, 4)
    a, b = engine.generate([astronaut()] * 2, [face] * 2, [3, 10])
    assert np.array_equal(a.image, b.image)
