"""The optional S3FD detector: network layout, decoding, strict loading, pipeline wiring.

No published weights are available offline: the network is built with random weights and
saved the way face-alignment publishes ``s3fd.pth`` (a plain state dict), then loaded
through the real loader. Decoding and NMS are checked on constructed head outputs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import lipsync
from lipsync.errors import InvalidOption, ModelMismatch, ModelMissing
from lipsync.face.dlib_backend import DlibFaces
from lipsync.face.geometry import crop_box, detector_like_box
from lipsync.face.s3fd import (
    S3fdDetector,
    S3fdFaces,
    decode,
    detections,
    dlib_like_box,
    nms,
    to_input,
)
from lipsync.face.s3fd_net import S3FD
from lipsync.face.tracker import FaceTracker, iou
from lipsync.options import RunOptions
from tests import media_factory as mf


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return S3FD().state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, state: dict[str, torch.Tensor]) -> Path:
    """Random weights in the published layout: ``torch.save`` of a bare state dict."""
    path = tmp_path_factory.mktemp("s3fd") / "s3fd.pth"
    torch.save(state, path)
    return path


def test_parameter_names_and_size_match_the_published_file(
    state: dict[str, torch.Tensor],
) -> None:
    assert len(state) == 65  # 17 convolutions + 12 heads (weight, bias) + 3 L2 norms
    assert state["conv3_3_norm.weight"].shape == (256,)
    assert torch.all(state["conv3_3_norm.weight"] == 10) and torch.all(
        state["conv5_3_norm.weight"] == 5
    )
    assert state["conv3_3_norm_mbox_conf.weight"].shape == (4, 256, 3, 3)  # max-out head
    assert state["fc7_mbox_conf.weight"].shape == (2, 1024, 3, 3)
    assert state["fc6.weight"].shape == (1024, 512, 3, 3)
    assert state["conv7_2_mbox_loc.weight"].shape == (4, 256, 3, 3)
    # s3fd-619a316812.pth is ~89.8 MB of float32.
    size = sum(t.numel() for t in state.values()) * 4
    assert abs(size - 89.8e6) / 89.8e6 < 0.01


def test_head_shapes_for_a_640x480_input() -> None:
    torch.manual_seed(0)
    with torch.inference_mode():
        out = S3FD().eval()(torch.zeros(1, 3, 480, 640))
    shapes = [tuple(t.shape) for t in out]
    # Strides 4, 8, 16 exactly; fc6 pads by 3 so fc7 is 4 cells larger than pool5 (15x20).
    maps = [(120, 160), (60, 80), (30, 40), (19, 24), (10, 12), (5, 6)]
    expected = [s for hw in maps for s in ((1, 2, *hw), (1, 4, *hw))]
    assert shapes == expected


def test_first_head_takes_the_max_of_three_background_scores() -> None:
    torch.manual_seed(1)
    net = S3FD().eval()
    raw: list[torch.Tensor] = []
    net.get_submodule("conv3_3_norm_mbox_conf").register_forward_hook(lambda m, i, o: raw.append(o))
    with torch.inference_mode():
        cls1 = net(torch.randn(1, 3, 64, 64) * 50)[0]
    assert torch.equal(cls1[:, 0], raw[0][:, :3].amax(dim=1))
    assert torch.equal(cls1[:, 1], raw[0][:, 3])


def test_input_is_bgr_minus_caffe_means() -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200  # red
    x = to_input(rgb)
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    assert np.allclose(x[0, :, 0, 0], [0 - 104, 0 - 117, 200 - 123])
    gray = np.full((2, 3), 100, np.uint8)
    assert np.allclose(to_input(gray)[0, :, 1, 2], [100 - 104, 100 - 117, 100 - 123])


def _levels(shapes: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.zeros((h, w), np.float32), np.zeros((4, h, w), np.float32)) for h, w in shapes]


def test_decode_places_priors_on_the_stride_grid() -> None:
    levels = _levels([(8, 8), (4, 4)])
    levels[0][0][2, 5] = 0.9  # stride 4: centre (22, 10), side 16
    levels[1][0][1, 0] = 0.7  # stride 8: centre (4, 12), side 32
    levels[1][1][:, 1, 0] = [1.0, -2.0, np.log(2) / 0.2, 0.0]  # shift, double the width
    boxes = decode(levels, strides=(4, 8))
    assert boxes.shape == (2, 5)
    np.testing.assert_allclose(boxes[0], [14, 2, 30, 18, 0.9], rtol=1e-6)
    cx, cy = 4 + 1.0 * 0.1 * 32, 12 - 2.0 * 0.1 * 32
    np.testing.assert_allclose(boxes[1], [cx - 32, cy - 16, cx + 32, cy + 16, 0.7], rtol=1e-5)
    assert decode(_levels([(3, 3)]), strides=(4,)).shape == (0, 5)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10, 0.6],
            [1, 1, 11, 11, 0.9],  # IoU with the first ~0.68: suppresses it
            [20, 20, 30, 30, 0.8],
            [0, 0, 10, 5, 0.7],  # IoU 0.5 with the first, 0.32 with the second
        ],
        np.float32,
    )
    assert nms(boxes, 0.3).tolist() == [1, 2]
    assert nms(boxes, 0.7).tolist() == [1, 2, 3, 0]
    assert nms(np.zeros((0, 5), np.float32)).size == 0


def test_detections_threshold_then_suppress() -> None:
    levels = _levels([(10, 10), (5, 5)])
    levels[0][0][4, 4] = 0.95  # stride 4, centre (18, 18), side 16
    levels[0][0][4, 5] = 0.9  # neighbour, IoU 0.6: suppressed
    levels[0][0][9, 9] = 0.4  # under the 0.5 threshold
    levels[1][0][0, 4] = 0.6  # stride 8, centre (36, 4), side 32: overlaps nothing much
    found = detections(levels, strides=(4, 8))
    assert [round(d[4], 2) for d in found] == [0.95, 0.6]
    assert found[0][:4] == pytest.approx((10, 10, 26, 26))


def test_loads_the_published_layout_and_detects_end_to_end(
    weights: Path, state: dict[str, torch.Tensor]
) -> None:
    faces = S3fdFaces.from_models_dir(weights.parent, device="cpu")
    assert torch.equal(faces.model.state_dict()["fc7_mbox_loc.bias"], state["fc7_mbox_loc.bias"])
    image = mf.astronaut()[::2, ::2]  # 256x256
    levels = faces.heads(image)
    assert [lv[0].shape for lv in levels][:3] == [(64, 64), (32, 32), (16, 16)]
    assert all(lv[0].min() >= 0 and lv[0].max() <= 1 for lv in levels)
    found = faces.detect(image)
    # Random weights: arbitrary boxes, but exactly the NMS survivors of the head maps' cells
    # over 0.5, each the decoded shape of one S3FD prior.
    candidates = int(sum((lv[0] > 0.5).sum() for lv in levels))
    assert 0 < len(found) < candidates, (len(found), candidates)
    assert found == detections(levels)
    assert len(found) == len(nms(decode(levels, min_score=0.5)))
    assert found[0][4] == pytest.approx(max(float(lv[0].max()) for lv in levels))
    strides = (4, 8, 16, 32, 64, 128)
    sides = 4.0 * np.array(strides)  # each level's prior side
    extent = max(lv[0].shape[1] * s for lv, s in zip(levels, strides, strict=True))
    for x1, y1, x2, y2, score in found:
        assert x1 < x2 and y1 < y2 and 0.5 < score <= 1.0
        w, h = x2 - x1, y2 - y1
        assert 0.75 < w / h < 1.33, "priors are square; offsets only stretch them a little"
        assert np.abs(np.log(w / sides)).min() < np.log(1.25), f"width {w} fits no prior"
        assert -8 <= (x1 + x2) / 2 <= extent + 8 and -8 <= (y1 + y2) / 2 <= extent + 8
    overlaps = [iou(a[:4], b[:4]) for i, a in enumerate(found) for b in found[i + 1 :]]
    assert max(overlaps) <= 0.3, "NMS left no two boxes overlapping more than IoU 0.3"
    assert [d[4] for d in found] == sorted((d[4] for d in found), reverse=True)
    gray = np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), np.uint8)
    assert len(S3fdDetector(faces).detect(gray)) == len(faces.detect(gray))
    assert S3fdFaces(weights, device="cpu").model is faces.model  # cached per process


def test_wrong_keys_or_shapes_are_a_model_mismatch(
    tmp_path: Path, state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "s3fd.pth"
    torch.save({"conv1_1.weight": state["conv1_1.weight"]}, path)
    with pytest.raises(ModelMismatch, match=r"missing conv1_1\.bias \(\+63 more\)"):
        S3fdFaces(path, device="cpu")
    bad = dict(state)
    bad["fc7_mbox_conf.weight"] = torch.zeros(4, 1024, 3, 3)
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, path)
    with pytest.raises(ModelMismatch) as err:
        S3fdFaces(path, device="cpu")
    assert "unexpected extra.weight" in err.value.message
    assert "wrong shape fc7_mbox_conf.weight (4, 1024, 3, 3) vs (2, 1024, 3, 3)" in (
        err.value.message
    )
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelMismatch, match="not a readable PyTorch checkpoint"):
        S3fdFaces(path, device="cpu")


def test_missing_weights_name_the_file_and_models_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as err:
        S3fdFaces.from_models_dir(tmp_path, device="cpu")
    assert "s3fd.pth" in err.value.message and "models/" in err.value.message


def test_s3fd_boxes_become_dlib_boxes_for_the_shape_predictor() -> None:
    """An S3FD-convention box (forehead to chin, cheek to cheek, as ``crop_box`` models it)
    converted back lands on dlib's own box, and the tracker reads the same landmarks."""
    gray = np.asarray(cv2.cvtColor(mf.astronaut(), cv2.COLOR_RGB2GRAY), np.uint8)
    dlib_box = DlibFaces().detect(gray)[0]
    reference = FaceTracker().update(gray)
    assert reference is not None
    s3fd_box = crop_box(reference, (0, 0, 0, 0), gray.shape[1], gray.shape[0])
    converted = dlib_like_box(s3fd_box)
    assert iou(converted, detector_like_box(reference)) > 0.95
    assert iou(converted, dlib_box) > 0.75

    class Boxes:  # stands in for S3FD: the face's S3FD-style box, wherever it is asked
        max_upsample = 0

        def __init__(self) -> None:
            self.calls = 0

        def detect(
            self, img: np.ndarray, upsample: int = 0
        ) -> list[tuple[float, float, float, float]]:
            self.calls += 1
            assert img.shape == gray.shape and upsample == 0
            return [dlib_like_box(s3fd_box)]

    boxes = Boxes()
    lm = FaceTracker(detector=boxes).update(gray)
    assert boxes.calls == 1 and lm is not None
    assert np.abs(lm - reference).mean() < 2.0


def test_detector_option_is_checked() -> None:
    assert RunOptions().detector == "dlib"
    with pytest.raises(InvalidOption, match="detector"):
        RunOptions(detector="mtcnn")  # type: ignore[arg-type]


def test_pipeline_with_s3fd_and_no_weights_fails_before_any_work(
    tmp_path: Path, portrait_png: Path, speech_wav: Path
) -> None:
    out = tmp_path / "o.mp4"
    with pytest.raises(ModelMissing) as err:
        lipsync.run(portrait_png, speech_wav, out, detector="s3fd", models_dir=tmp_path)
    assert err.value.code == "model_missing" and "s3fd.pth" in err.value.message
    assert not out.exists()


def test_cli_detector_option(
    tmp_path: Path, portrait_png: Path, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lipsync.cli import main

    args = ["run", "--video", str(portrait_png), "--audio", str(speech_wav)]
    args += ["-o", str(tmp_path / "o.mp4"), "--models-dir", str(tmp_path), "--no-progress"]
    assert main([*args, "--detector", "s3fd"]) == 2
    err = capsys.readouterr().err
    assert "model_missing" in err and "s3fd.pth" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main([*args, "--detector", "mtcnn"])
