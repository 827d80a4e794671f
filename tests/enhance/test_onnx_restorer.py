"""The ONNX face restorer with small hand-built 512x512 models standing in for GFPGAN & co."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lipsync.enhance import create_enhancer
from lipsync.enhance.onnx_restorer import FFHQ_512_TEMPLATE, OnnxFaceRestorer, five_points
from lipsync.errors import ModelMismatch, ModelMissing
from lipsync.types import FaceObs, Patch
from tests.enhance._face_helpers import astronaut_face
from tests.media_factory import astronaut

IMAGE = [1, 3, 512, 512]


def _save(path: Path, nodes: list, inputs: list, outputs: list, inits: list | None = None) -> Path:
    graph = helper.make_graph(nodes, "restorer", inputs, outputs, initializer=inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _image(name: str, shape: list[int] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape or IMAGE)


def identity_model(path: Path) -> Path:
    return _save(
        path,
        [helper.make_node("Identity", ["input"], ["output"])],
        [_image("input")],
        [_image("output")],
    )


def constant_model(path: Path, value: float) -> Path:
    """Ignores the face and returns one grey level (in [-1, 1]) everywhere."""
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    const = helper.make_tensor("const", TensorProto.FLOAT, [], [value])
    nodes = [
        helper.make_node("Mul", ["input", "zero"], ["blank"]),
        helper.make_node("Add", ["blank", "const"], ["output"]),
    ]
    return _save(path, nodes, [_image("input")], [_image("output")], [zero, const])


def codeformer_like(path: Path) -> Path:
    """Two inputs like CodeFormer's export: the image and a double ``weight`` of shape [1].

    Output = input * weight * 2, so it is the identity exactly when weight is 0.5.
    """
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [
        helper.make_node("Cast", ["weight"], ["w"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w", "two"], ["w2"]),
        helper.make_node("Mul", ["x", "w2"], ["y"]),
    ]
    inputs = [_image("x"), helper.make_tensor_value_info("weight", TensorProto.DOUBLE, [1])]
    return _save(path, nodes, inputs, [_image("y")], [two])


def generated_patch(frame: np.ndarray, face: FaceObs) -> Patch:
    x1, y1, x2, y2 = face.box
    crop = frame[y1:y2, x1:x2]
    soft = cv2.resize(cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA), (x2 - x1, y2 - y1))
    image = np.asarray(soft, dtype=np.uint8)
    return Patch(x1, y1, image, mask=np.ones((y2 - y1, x2 - x1), dtype=np.float32))


def test_alignment_puts_landmarks_on_the_ffhq_template() -> None:
    face = astronaut_face()
    points = five_points(face.landmarks)
    matrix, _ = cv2.estimateAffinePartial2D(points, FFHQ_512_TEMPLATE, method=cv2.LMEDS)
    mapped = cv2.transform(points[None], matrix)[0]
    assert np.abs(mapped - FFHQ_512_TEMPLATE).max() < 25  # similarity fit of 5 points
    eye_distance = np.linalg.norm(mapped[1] - mapped[0])
    assert 100 < eye_distance < 150


def test_identity_model_leaves_the_patch_nearly_unchanged(tmp_path: Path) -> None:
    frame, face = astronaut(), astronaut_face()
    patch = generated_patch(frame, face)
    restorer = OnnxFaceRestorer(identity_model(tmp_path / "GFPGANv1.4.onnx"), device="cpu")
    out = restorer.enhance(frame, patch, face)
    assert (out.x1, out.y1, out.image.shape) == (patch.x1, patch.y1, patch.image.shape)
    assert out.mask is patch.mask
    diff = np.abs(out.image.astype(int) - patch.image.astype(int))
    assert diff.mean() < 2.0  # only the two bilinear warps' resampling
    assert np.percentile(diff, 99) <= 12


def test_restored_face_is_blended_where_the_face_is(tmp_path: Path) -> None:
    frame, face = astronaut(), astronaut_face()
    patch = generated_patch(frame, face)
    restorer = OnnxFaceRestorer(constant_model(tmp_path / "black.onnx", -1.0), device="cpu")
    out = restorer.enhance(frame, patch, face)
    local = face.landmarks - np.array([patch.x1, patch.y1])
    for idx in (30, 33, 51, 57, 36, 45):  # nose, mouth, eye corners: inside the crop
        x, y = np.round(local[idx]).astype(int)
        assert out.image[y, x].max() <= 5, f"landmark {idx} not restored"
    changed = np.any(out.image != patch.image, axis=2)
    ys, xs = np.nonzero(changed)
    centre = np.array([xs.mean(), ys.mean()])
    assert np.linalg.norm(centre - local[[30, 33, 51]].mean(axis=0)) < 30


def test_codeformer_weight_input_gets_one_half(tmp_path: Path) -> None:
    frame, face = astronaut(), astronaut_face()
    patch = generated_patch(frame, face)
    identity = OnnxFaceRestorer(identity_model(tmp_path / "id.onnx"), device="cpu")
    weighted = OnnxFaceRestorer(codeformer_like(tmp_path / "codeformer.onnx"), device="cpu")
    a = identity.enhance(frame, patch, face).image
    b = weighted.enhance(frame, patch, face).image
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_wrong_input_shape_raises_mismatch(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "gfpgan256.onnx",
        [helper.make_node("Identity", ["i"], ["o"])],
        [_image("i", [1, 3, 256, 256])],
        [_image("o", [1, 3, 256, 256])],
    )
    with pytest.raises(ModelMismatch, match="1x3x512x512"):
        OnnxFaceRestorer(path, device="cpu")


def test_wrong_output_shape_raises_mismatch(tmp_path: Path) -> None:
    node = helper.make_node("AveragePool", ["i"], ["o"], kernel_shape=[2, 2], strides=[2, 2])
    path = _save(tmp_path / "half.onnx", [node], [_image("i")], [_image("o", [1, 3, 256, 256])])
    restorer = OnnxFaceRestorer(path, device="cpu")
    frame, face = astronaut(), astronaut_face()
    with pytest.raises(ModelMismatch, match="returned shape"):
        restorer.enhance(frame, generated_patch(frame, face), face)


def test_missing_file_raises_model_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="models/"):
        OnnxFaceRestorer(tmp_path / "GFPGANv1.4.onnx")
    with pytest.raises(ModelMissing):
        create_enhancer(f"onnx:{tmp_path / 'codeformer.onnx'}", device="cpu")


def test_registry_creates_it(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "GPEN-BFR-512.onnx")
    assert isinstance(create_enhancer(f"onnx:{path}", device="cpu"), OnnxFaceRestorer)


def test_bad_landmarks_leave_patch_alone(tmp_path: Path) -> None:
    frame, face = astronaut(), astronaut_face()
    patch = generated_patch(frame, face)
    restorer = OnnxFaceRestorer(identity_model(tmp_path / "id.onnx"), device="cpu")
    nan_face = FaceObs(face.box, np.full((68, 2), np.nan, dtype=np.float32))
    assert restorer.enhance(frame, patch, nan_face) is patch
