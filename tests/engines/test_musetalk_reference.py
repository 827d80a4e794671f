"""MuseTalk 1.5 step by step against the reference's documented behaviour, on real images and
speech: each array step of the engine is compared with an independent restatement, written
here, of what TMElyralab/MuseTalk does (file and line in the docstrings; its code is read,
not imported). The networks are random (no weights can be downloaded).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from lipsync.engines import create_engine
from lipsync.engines.base import EngineContext
from lipsync.engines.musetalk import audio as mt_audio
from lipsync.engines.musetalk import blendmask as bm
from lipsync.engines.musetalk import face as mt_face
from lipsync.engines.musetalk.engine import MuseTalkEngine, MuseTalkRunner
from lipsync.engines.musetalk.loaders import load_models
from lipsync.engines.musetalk.parsing import PARSER_WEIGHTS, load_parser
from lipsync.errors import InvalidOption, ModelMismatch
from lipsync.options import RunOptions, engine_options, parse_public_fields, spec_of
from lipsync.types import FaceObs, Patch
from tests import media_factory as mf
from tests.engines._musetalk_helpers import (
    face_landmarks,
    reference_chunks,
)

SPEECH = mf.SHARED_MEDIA / "audio_Real3DPortrait_Obama_5s.wav"


MODELS = ("musetalk", "face-parser")  # models_dir: tests/engines/conftest.py


@pytest.fixture(scope="module")
def astronaut_face() -> tuple[np.ndarray, FaceObs]:
    image = mf.astronaut()
    return image, FaceObs((0, 0, 1, 1), face_landmarks(image))


# --- audio --------------------------------------------------------------------------------


def test_positional_encoding_is_the_sinusoid() -> None:
    """``musetalk/models/unet.py:12-27`` adds the Transformer's sinusoidal encoding, sin on
    even channels and cos on odd ones. Compared with an implementation written elsewhere:
    diffusers' ``get_1d_sincos_pos_embed_from_grid`` (MAE's, in float64), which lays the
    same sines and cosines out as two halves; only its columns are interleaved here."""
    from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid

    length, dim = 50, 384
    positions = torch.arange(length, dtype=torch.float64)
    halves = get_1d_sincos_pos_embed_from_grid(dim, positions).numpy()
    expected = np.empty((length, dim))
    expected[:, 0::2] = halves[:, : dim // 2]
    expected[:, 1::2] = halves[:, dim // 2 :]
    np.testing.assert_allclose(mt_audio.positional_encoding(length, dim), expected, atol=2e-5)


def test_whisper_chunks_on_real_speech_at_30_fps(models_dir: Path) -> None:
    """``audio_processor.py:37-94`` on real speech at another whole frame rate: the same
    windows to 1e-4."""
    from lipsync.media.audio import load_audio

    if not SPEECH.is_file():
        pytest.skip("../shared/media is not present")
    audio = load_audio(SPEECH, sample_rate=16000, channels=1)[0][0].astype(np.float32)
    ref = reference_chunks(models_dir / "whisper", audio, 30)
    ours = MuseTalkRunner(load_models(models_dir)).whisper_chunks(audio, 30.0, len(ref))
    assert ref.shape == (math.floor(audio.size / 16000 * 30), 50, 384)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_window_starts_follow_the_true_frame_rate() -> None:
    """The reference casts fps to int (``audio_processor.py:61``), so 29.97 fps video is
    read as 29 and drifts 0.3 s in 10 s; here frame i starts at state floor(i * 50 / fps)
    (4 zero states of context in front)."""
    states = np.arange(600, dtype=np.float32).reshape(600, 1, 1) + 1  # state k holds k + 1
    out = mt_audio.frame_windows(states, 16000 * 12, 29.97, 300)
    for i in (50, 150, 299):
        start = math.floor(i * 50 / 29.97)
        assert out[i, 0, 0] == start - 4 + 1
        assert out[i, 0, 0] != math.floor(i * 50 / 29) - 4 + 1


# --- face crop and VAE input ---------------------------------------------------------------


def reference_box(lm: np.ndarray, shift: int, margin: int, height: int) -> tuple[int, ...]:
    """``preprocessing.py:96-132`` + ``inference.py:169-172``: int32 landmarks, the nose
    point (29) shifted in place, the box's top as far above it as the chin is below."""
    pts = lm.astype(np.int32)
    half = pts[29]  # a view: shifting it shifts the landmark too
    if shift != 0:
        half[1] = shift + half[1]
    dist = np.max(pts[:, 1]) - half[1]
    upper = max(0, half[1] - dist)
    x1, y1, x2, y2 = np.min(pts[:, 0]), int(upper), np.max(pts[:, 0]), np.max(pts[:, 1])
    return (int(x1), int(y1), int(x2), min(int(y2) + margin, height))


def test_crop_box_on_real_landmarks(astronaut_face: tuple[np.ndarray, FaceObs]) -> None:
    image, face = astronaut_face
    h, w = image.shape[:2]
    for shift, margin in [(0, 10), (-7, 10), (5, 0), (0, 40)]:
        assert mt_face.crop_box(face, w, h, shift, margin) == reference_box(
            np.asarray(face.landmarks), shift, margin, h
        )


def test_vae_images_of_a_real_crop(astronaut_face: tuple[np.ndarray, FaceObs]) -> None:
    """``vae.py:51-82``: BGR->RGB, ``/ 255.`` in float64, to float32, lower half times 0,
    ``Normalize(0.5, 0.5)``; the crop resized with Lanczos (``inference.py:173-174``)."""
    image, face = astronaut_face
    box = mt_face.crop_box(face, image.shape[1], image.shape[0])
    crops = mt_face.crop_faces([image], [box])
    x1, y1, x2, y2 = box
    bgr = cv2.resize(image[y1:y2, x1:x2, ::-1], (256, 256), interpolation=cv2.INTER_LANCZOS4)
    np.testing.assert_array_equal(crops[0], bgr[..., ::-1])
    x = np.transpose(np.asarray([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)]) / 255.0, (3, 0, 1, 2))
    x = torch.squeeze(torch.FloatTensor(x))
    mask = torch.zeros((256, 256))
    mask[:128] = 1
    half = ((x * (mask > 0.5)) - 0.5) / 0.5
    whole = (x - 0.5) / 0.5
    masked, ours = mt_face.vae_images(crops)
    np.testing.assert_array_equal(masked[0], half.numpy())
    np.testing.assert_array_equal(ours[0], whole.numpy())


# --- the paste-back mask --------------------------------------------------------------------


def reference_jaw_kernel() -> np.ndarray:
    """``face_parsing/__init__.py:15-42``, row by row as written there."""
    cone, tail = 21, 12
    size = cone + tail
    kernel = np.zeros((size, size), dtype=np.uint8)
    cx = size // 2
    for row in range(cone):
        if row < cone // 2:
            continue
        width = int(2 * (row - cone // 2) + 1)
        kernel[row, int(cx - width // 2) : int(cx + width // 2 + 1)] = 1
    base = int(kernel[cone - 1].sum())
    for row in range(cone, size):
        kernel[row, max(0, cx - base // 2) : min(size, cx + base // 2 + 1)] = 1
    return kernel


def reference_region(parsing: np.ndarray, mode: str, left: int, right: int) -> np.ndarray:
    """``face_parsing/__init__.py:92-108`` (the cheek mask of ``:51-57`` drawn with
    ``cv2.rectangle`` as there)."""
    parsing = parsing.copy()
    cheeks = np.zeros((512, 512), dtype=np.uint8)
    cv2.rectangle(cheeks, (0, 0), (256 - left, 512), 255, -1)
    cv2.rectangle(cheeks, (256 + right, 0), (512, 512), 255, -1)
    if mode == "neck":
        parsing[np.isin(parsing, [1, 11, 12, 13, 14])] = 255
    elif mode == "jaw":
        face = (np.isin(parsing, [1]) * 255).astype(np.uint8)
        dilated = cv2.dilate(face, reference_jaw_kernel(), iterations=1)
        flat = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3))
        eroded = cv2.erode(dilated, flat, iterations=2)
        region = cv2.bitwise_and(eroded, cheeks)
        region = cv2.bitwise_or(region, cv2.bitwise_and(dilated, ~cheeks))
        parsing[(region == 255) & (~np.isin(parsing, [10]))] = 255
        parsing[np.isin(parsing, [11, 12, 13])] = 255
    else:
        parsing[np.isin(parsing, [1, 11, 12, 13])] = 255
    parsing[np.where(parsing != 255)] = 0
    return parsing.astype(np.uint8)


def class_map(face: FaceObs, square: tuple[int, int, int, int]) -> np.ndarray:
    """A 512x512 parsing of the real face drawn from its landmarks: skin (1), nose (10),
    lips (12, 13), mouth (11), neck (14) below the jaw."""
    side = square[2] - square[0]
    lm = (np.asarray(face.landmarks) - square[:2]) * (512 / side)
    out = np.zeros((512, 512), np.int32)
    cv2.fillPoly(out, [np.round(lm[:17] + [0, 60]).astype(np.int32)], 14)
    cv2.fillPoly(out, [cv2.convexHull(np.round(lm[:27]).astype(np.int32))], 1)
    cv2.fillPoly(out, [np.round(lm[27:36]).astype(np.int32)], 10)
    cv2.fillPoly(out, [np.round(lm[48:60]).astype(np.int32)], 13)
    cv2.fillPoly(out, [np.round(lm[48:55]).astype(np.int32)], 12)
    cv2.fillPoly(out, [np.round(lm[60:68]).astype(np.int32)], 11)
    return out.astype(np.int64)


def test_jaw_kernel_and_regions(astronaut_face: tuple[np.ndarray, FaceObs]) -> None:
    image, face = astronaut_face
    np.testing.assert_array_equal(bm.jaw_kernel(), reference_jaw_kernel())
    box = mt_face.crop_box(face, image.shape[1], image.shape[0])
    classes = class_map(face, bm.expanded_box(box)[0])
    assert set(np.unique(classes)) == {0, 1, 10, 11, 12, 13, 14}
    for mode, left, right in [("jaw", 90, 90), ("jaw", 40, 130), ("raw", 90, 90), ("neck", 90, 90)]:
        ours = bm.parsing_region(classes, mode, left, right)
        np.testing.assert_array_equal(ours, reference_region(classes, mode, left, right))
    jaw = bm.parsing_region(classes, "jaw")
    assert (jaw > 0).sum() > (bm.parsing_region(classes, "raw") > 0).sum() * 0.9


def reference_get_image(
    frame_rgb: np.ndarray, face_rgb: np.ndarray, box: tuple[int, ...], region: np.ndarray
) -> np.ndarray:
    """``blending.py:7-13`` and ``:35-93`` with the parsing replaced by ``region`` (512x512,
    0/255): the frame with the face pasted through the blurred mask, by Pillow."""
    body = Image.fromarray(frame_rgb)
    face = Image.fromarray(face_rgb)
    x, y, x1, y1 = box
    xc, yc = (x + x1) // 2, (y + y1) // 2
    s = int(max(x1 - x, y1 - y) // 2 * 1.5)
    crop_box = [xc - s, yc - s, xc + s, yc + s]
    x_s, y_s = crop_box[:2]
    face_large = body.crop(crop_box)
    ori_shape = face_large.size
    mask_image = Image.fromarray(region).resize(face_large.size)
    mask_small = mask_image.crop((x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    mask_image = Image.new("L", ori_shape, 0)
    mask_image.paste(mask_small, (x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    width, height = mask_image.size
    top = int(height * 0.5)
    kept = Image.new("L", ori_shape, 0)
    kept.paste(mask_image.crop((0, top, width, height)), (0, top))
    k = int(0.05 * ori_shape[0] // 2 * 2) + 1
    mask_image = Image.fromarray(cv2.GaussianBlur(np.array(kept), (k, k), 0))
    face_large.paste(face, (x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    body.paste(face_large, crop_box[:2], mask_image)
    return np.array(body)


def test_blend_mask_and_paste_equal_get_image(
    astronaut_face: tuple[np.ndarray, FaceObs],
) -> None:
    """Our mask (``mask_from_region``) through the project's compositor against the
    reference's ``get_image`` on a real frame, the face box near the frame's top so the
    blend square leaves the frame: equal to 1 grey level (Pillow's integer blend)."""
    from lipsync.composite import composite

    image, face = astronaut_face
    for shift in (0, 60):
        frame = np.ascontiguousarray(np.roll(image, -shift, axis=0))
        moved = FaceObs(face.box, np.asarray(face.landmarks) - [0, shift])
        box = mt_face.crop_box(moved, frame.shape[1], frame.shape[0])
        region = bm.parsing_region(class_map(moved, bm.expanded_box(box)[0]), "jaw")
        x1, y1, x2, y2 = box
        generated = np.ascontiguousarray(255 - frame[y1:y2, x1:x2])
        mask = bm.mask_from_region(region, box)
        ours = composite(frame, Patch(x1, y1, generated, mask=mask), moved)
        ref = reference_get_image(frame, generated, box, region)
        assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
        assert (np.abs(ours.astype(int) - frame.astype(int)) > 8).sum() > 1000


def test_parser_input_is_the_reference_transform(
    astronaut_face: tuple[np.ndarray, FaceObs],
) -> None:
    """``face_parsing/__init__.py:71-90``: Pillow bilinear to 512, ``ToTensor``, ImageNet
    ``Normalize``; the square cut as Pillow's ``crop`` (black outside the frame)."""
    image, face = astronaut_face
    box = mt_face.crop_box(face, image.shape[1], image.shape[0])
    square, _ = bm.expanded_box((box[0], 0, box[2], box[3] - box[1]))  # leaves the frame
    cut = bm.crop_padded(image, square)
    np.testing.assert_array_equal(cut, np.array(Image.fromarray(image).crop(square)))
    resized = np.asarray(Image.fromarray(cut).resize((512, 512), Image.Resampling.BILINEAR))
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div(255)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    np.testing.assert_array_equal(bm.parser_input(cut)[0], ((x - mean) / std).numpy())


# --- the parsing network, the engine and its options ---------------------------------------


def test_parser_loads_strictly_from_the_published_path(models_dir: Path, tmp_path: Path) -> None:
    net = load_parser(models_dir)
    assert net is not None and sum(p.numel() for p in net.parameters()) == 13_300_416
    assert load_parser(tmp_path) is None  # absent: the engine's landmark mask
    state = torch.load(models_dir / PARSER_WEIGHTS)
    state["cp.arm16.conv_atten.weights"] = state.pop("cp.arm16.conv_atten.weight")
    (tmp_path / PARSER_WEIGHTS).parent.mkdir(parents=True)
    torch.save(state, tmp_path / PARSER_WEIGHTS)
    with pytest.raises(ModelMismatch, match="79999_iter.pth.*missing cp.arm16.conv_atten"):
        load_parser(tmp_path)


def test_engine_pastes_through_the_parsing_mask(
    models_dir: Path, astronaut_face: tuple[np.ndarray, FaceObs]
) -> None:
    """With 79999_iter.pth present the patch's mask is the reference's parsing mask, and the
    engine's options (through EngineContext) reach the crop and the mask."""
    image, face = astronaut_face
    options = RunOptions(engine="musetalk", extra_margin=0, parsing_mode="raw")
    ctx = EngineContext(device="cpu", models_dir=models_dir, options=engine_options(options))
    engine = create_engine("musetalk", ctx)
    assert isinstance(engine, MuseTalkEngine) and engine.parser is not None
    engine.prepare(np.zeros(16000, np.float32), 25.0, 25)
    (patch,) = engine.generate([image], [face], [0])
    box = mt_face.crop_box(face, image.shape[1], image.shape[0], 0, 0)
    assert (patch.x1, patch.y1, patch.x2, patch.y2) == box
    np.testing.assert_array_equal(patch.mask, engine.parser.blend_mask(image, box))
    assert engine.report().details["blend_mask"] == "face parsing (raw)"
    assert patch.mask is not None and patch.mask[: (box[3] - box[1]) // 2 - 20].max() == 0


def test_musetalk_options_are_declared_for_the_engine() -> None:
    names = ("bbox_shift", "extra_margin", "parsing_mode", "left_cheek_width", "right_cheek_width")
    for name in names:
        spec = spec_of(name)
        assert spec.meta.engines == ("musetalk",) and spec.meta.public
    assert {n for n, _ in engine_options(RunOptions(engine="musetalk"))} == set(names)
    assert engine_options(RunOptions(engine="viseme")) == ()
    assert parse_public_fields({"extra_margin": "25"}) == {"extra_margin": 25}
    for bad in ({"parsing_mode": "cheeks"}, {"extra_margin": "41"}, {"bbox_shift": "x"}):
        with pytest.raises(InvalidOption):
            parse_public_fields(bad)
    assert {"musetalk"} <= set(spec_of("batch_size").meta.engines)
    with pytest.raises(InvalidOption):
        MuseTalkEngine(EngineContext(options=(("parsing_mode", "cheeks"),)))


def test_speed_benchmark_keeps_the_musetalk_section() -> None:
    """``python -m benchmarks.speed`` rewrites docs/BENCHMARKS.md; the MuseTalk section,
    written by ``benchmarks.musetalk_cpu``, survives it."""
    from benchmarks.speed import keep_other_sections

    doc = (Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md").read_text()
    heading = "## MuseTalk 1.5 networks on CPU (per frame)"
    assert heading in doc
    rewritten = keep_other_sections(doc[: doc.index(heading)], doc)
    assert rewritten.count(heading) == 1 and rewritten.strip() == doc.strip()
