"""MuseTalk 1.5 against the reference code itself (TMElyralab/MuseTalk), when it is at hand.

Set ``MUSETALK_REFERENCE`` to a checkout of TMElyralab/MuseTalk (its ``musetalk/`` package is
imported from there, nothing of it is copied here) with its imports importable (``librosa``,
``einops``, ``torchvision``); otherwise these tests skip. They run the reference's own
``AudioProcessor``, ``VAE``, ``UNet``/``PositionalEncoding``, ``FaceParsing`` and
``get_image`` on the same random weights, real images and speech as the engine:

* the whisper chunks equal to 1e-4;
* the generated faces (the reference's ``latent_dist.sample()`` after ``torch.manual_seed``,
  the engine seeded alike) to PSNR >= 40 dB;
* the frame after the paste-back through the face-parsing mask to PSNR >= 40 dB.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from lipsync.composite import composite
from lipsync.engines.base import EngineContext
from lipsync.engines.musetalk import face as mt_face
from lipsync.engines.musetalk.engine import MuseTalkEngine, MuseTalkRunner
from lipsync.engines.musetalk.loaders import load_models
from lipsync.engines.musetalk.parsing import PARSER_WEIGHTS, ResNet18
from lipsync.types import FaceObs, Patch
from tests import media_factory as mf
from tests.engines._musetalk_helpers import (
    face_landmarks,
    psnr,
    speech,
)

SPEECH = mf.SHARED_MEDIA / "audio_Real3DPortrait_Obama_5s.wav"


def _reference() -> Path:
    root = os.environ.get("MUSETALK_REFERENCE")
    if not root or not (Path(root) / "musetalk" / "utils" / "blending.py").is_file():
        pytest.skip("MUSETALK_REFERENCE does not name a TMElyralab/MuseTalk checkout")
    for module in ("librosa", "einops", "torchvision.transforms"):
        pytest.importorskip(module)
    if root not in sys.path:
        sys.path.insert(0, root)
    return Path(root)


MODELS = ("musetalk", "face-parser")


@pytest.fixture(scope="module", autouse=True)
def reference() -> Path:
    """The reference checkout (every test here skips without one, before any set-up)."""
    return _reference()


@pytest.fixture(scope="module")
def models_dir(models_dir: Path) -> Path:
    """The conftest's models directory, with the ImageNet backbone the reference also opens
    (then overwritten by 79999_iter.pth)."""
    directory = models_dir
    backbone = ResNet18().state_dict()
    backbone["fc.weight"], backbone["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(backbone, directory / "face-parse-bisent" / "resnet18-5c106cde.pth")
    return directory


def _speech() -> np.ndarray:
    if SPEECH.is_file():
        from lipsync.media.audio import load_audio

        return load_audio(SPEECH, sample_rate=16000, channels=1)[0][0][: 16000 * 3]
    return speech(3.0)


def test_whisper_chunks_equal_the_reference_code(models_dir: Path, tmp_path: Path) -> None:
    import soundfile
    from musetalk.utils.audio_processor import AudioProcessor
    from transformers import WhisperModel

    audio = np.asarray(_speech(), np.float32)
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, audio, 16000, subtype="FLOAT")
    processor = AudioProcessor(feature_extractor_path=str(models_dir / "whisper"))
    features, length = processor.get_audio_feature(str(wav))
    whisper = WhisperModel.from_pretrained(str(models_dir / "whisper")).eval()
    with torch.no_grad():
        ref = processor.get_whisper_chunk(features, "cpu", torch.float32, whisper, length, fps=25)
    ours = MuseTalkRunner(load_models(models_dir)).whisper_chunks(audio, 25.0, len(ref))
    assert ref.shape == (math.floor(audio.size / 16000 * 25), 50, 384)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-4, rtol=0)


def _crops() -> tuple[np.ndarray, list[tuple[int, int, int, int]], np.ndarray, FaceObs]:
    image = mf.astronaut()
    face = FaceObs((0, 0, 1, 1), face_landmarks(image))
    box = mt_face.crop_box(face, image.shape[1], image.shape[0])
    boxes = [box, (box[0] + 6, box[1] - 4, box[2] + 6, box[3] - 4)]
    return mt_face.crop_faces([image, image], boxes), boxes, image, face


def _reference_faces(models_dir: Path, crops_bgr: np.ndarray, chunks: np.ndarray) -> Any:
    from musetalk.models.unet import PositionalEncoding, UNet
    from musetalk.models.vae import VAE

    vae = VAE(model_path=str(models_dir / "sd-vae"))
    unet = UNet(
        unet_config=str(models_dir / "musetalkV15" / "musetalk.json"),
        model_path=str(models_dir / "musetalkV15" / "unet.pth"),
        device=torch.device("cpu"),
    )
    pe = PositionalEncoding(d_model=384)
    torch.manual_seed(11)
    with torch.no_grad():
        latents = torch.cat([vae.get_latents_for_unet(c) for c in crops_bgr], dim=0)
        audio = pe(torch.from_numpy(chunks))
        pred = unet.model(latents, torch.tensor([0]), encoder_hidden_states=audio).sample
        return vae.decode_latents(pred)  # BGR uint8


def test_generated_faces_equal_the_reference_code(models_dir: Path) -> None:
    crops, _, _, _ = _crops()
    runner = MuseTalkRunner(load_models(models_dir), latents="sample", seed=11)
    chunks = runner.whisper_chunks(np.asarray(_speech(), np.float32), 25.0, 50)[[5, 40]]
    ours = runner.generate_faces(crops, chunks)
    ref = _reference_faces(models_dir, np.ascontiguousarray(crops[..., ::-1]), chunks)
    assert min(psnr(a, b[..., ::-1]) for a, b in zip(ours, ref, strict=True)) >= 40


def test_paste_back_equals_get_image(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference's ``FaceParsing`` (jaw, cheeks 90) and ``get_image`` against the engine's
    parsing mask through the project's compositor, on a real frame."""
    from musetalk.utils.blending import get_image
    from musetalk.utils.face_parsing import FaceParsing

    assert (models_dir / PARSER_WEIGHTS).is_file()
    monkeypatch.chdir(models_dir.parent)
    (models_dir.parent / "models").symlink_to(models_dir, target_is_directory=True)
    fp = FaceParsing(left_cheek_width=90, right_cheek_width=90)
    engine = MuseTalkEngine(EngineContext(device="cpu", models_dir=models_dir))
    assert engine.parser is not None
    _, boxes, image, face = _crops()
    for box in boxes:
        x1, y1, x2, y2 = box
        generated = np.ascontiguousarray(cv2.GaussianBlur(image, (31, 31), 0)[y1:y2, x1:x2])
        bgr, face_bgr = image[..., ::-1].copy(), generated[..., ::-1].copy()
        ref = get_image(bgr, face_bgr, list(box), mode="jaw", fp=fp)
        mask = engine.parser.blend_mask(image, box)
        assert mask.max() > 0.5  # the random parser finds some skin: a real blend
        ours = composite(image, Patch(x1, y1, generated, mask=mask), face)
        assert psnr(ours, ref[..., ::-1]) >= 40
        assert np.abs(ours.astype(int) - ref[..., ::-1].astype(int)).max() <= 2
