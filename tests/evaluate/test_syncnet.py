"""SyncNet (LSE-D / LSE-C): the network, its loader on random weights saved in the published
layout, the MFCC front end and the scoring procedure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync.errors import Canceled, ModelMismatch
from lipsync.evaluate import evaluate
from lipsync.evaluate.mouth import measure_mouth
from lipsync.evaluate.syncnet import SyncNet, load_syncnet, mfcc, score_lse
from lipsync.media.audio import load_audio, to_mono


def _published_checkpoint(path: Path, seed: int = 0) -> Path:
    """Random weights saved like syncnet_v2.model: a plain state dict of the network's
    tensors in the legacy (pre-zip) format, with no BatchNorm batch counters."""
    torch.manual_seed(seed)
    net = SyncNet()
    for m in net.modules():  # non-trivial running statistics, as a trained file has
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)  # type: ignore[union-attr]
            m.running_var.uniform_(0.5, 1.5)  # type: ignore[union-attr]
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def test_shapes_and_names() -> None:
    net = SyncNet().eval()
    with torch.no_grad():
        assert net.forward_aud(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
        assert net.forward_lip(torch.zeros(2, 3, 5, 224, 224)).shape == (2, 1024)
    names = net.state_dict()
    assert names["netcnnlip.0.weight"].shape == (96, 3, 5, 7, 7)
    assert names["netcnnaud.18.weight"].shape == (512, 256, 5, 4)
    assert names["netfclip.3.weight"].shape == (1024, 512)


def test_loader_round_trip(tmp_path: Path) -> None:
    path = _published_checkpoint(tmp_path / "syncnet_v2.model")
    net = load_syncnet(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for k, v in saved.items():
        assert torch.equal(net.state_dict()[k], v)
    assert not net.training


def test_loader_refuses_other_files(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.model"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ModelMismatch):
        load_syncnet(wrong)
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelMismatch):
        load_syncnet(junk)
    state = SyncNet().state_dict()
    state["netfcaud.3.weight"] = torch.zeros(10, 512)
    bad = tmp_path / "bad.model"
    torch.save(state, bad)
    with pytest.raises(ModelMismatch):
        load_syncnet(bad)


def test_mfcc_matches_python_speech_features() -> None:
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16000) * 3000).astype(np.int16)
    ours = mfcc(x.astype(np.float64))
    theirs = psf.mfcc(x, 16000)
    assert ours.shape == theirs.shape == (99, 13)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_scoring_on_random_weights(
    synced_still: Path, speech_pause: tuple[Path, float, float], tmp_path: Path
) -> None:
    net = load_syncnet(_published_checkpoint(tmp_path / "syncnet_v2.model"))
    samples, _ = load_audio(speech_pause[0], sample_rate=16000, channels=1)
    mono = to_mono(samples)
    track = measure_mouth(synced_still)
    res = score_lse(net, synced_still, mono, track)
    assert res is not None
    assert len(res.dists_by_offset) == 31
    assert res.windows == min(len(track), mono.size // 640) - 5
    assert np.isfinite(res.lse_d) and res.lse_d == pytest.approx(min(res.dists_by_offset), abs=1e-3)
    assert res.lse_c >= 0
    assert res.lse_c == pytest.approx(float(np.median(res.dists_by_offset)) - res.lse_d, abs=1e-3)
    assert -15 <= res.av_offset <= 15
    assert res.dists_by_offset.index(min(res.dists_by_offset)) == 15 - res.av_offset
    # A cancel stops the scoring (polled per decoded frame).
    asked: list[int] = []

    def cancel() -> bool:
        asked.append(1)
        return True

    with pytest.raises(Canceled):
        score_lse(net, synced_still, mono, track, should_cancel=cancel)
    assert len(asked) == 1


def test_evaluate_reports_lse_when_the_checkpoint_is_there(
    synced_still: Path, speech_pause: tuple[Path, float, float], tmp_path: Path
) -> None:
    _published_checkpoint(tmp_path / "syncnet_v2.model")
    report = evaluate(synced_still, speech_pause[0], models_dir=tmp_path, visemes=False)
    assert report.lse is not None and report.lse_note is None
    data = report.to_dict()
    assert set(data["lse"]) >= {"lse_d", "lse_c", "av_offset"}
