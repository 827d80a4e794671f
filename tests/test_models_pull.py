"""``lipsync models pull`` end to end against a local stand-in for the hub (tests/fakehub.py):
the real download code (huggingface_hub's ``hf_hub_download``, urllib for plain URLs), with
the MuseTalk declarations' hashes overridden for small random files. No test reaches the
internet."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import lipsync.registry as registry
from lipsync import cli
from lipsync.enginespec import EngineSpec
from lipsync.models import list_models, model_by_filename
from lipsync.modelspec import HubFile, ModelFile, UrlFile
from lipsync.pull import Puller, resolve_names
from tests.fakehub import FakeHub

MUSETALK_FILES = (
    "musetalkV15/musetalk.json",
    "musetalkV15/unet.pth",
    "sd-vae/config.json",
    "sd-vae/diffusion_pytorch_model.bin",
    "whisper/config.json",
    "whisper/pytorch_model.bin",
    "whisper/preprocessor_config.json",
)


def _random(size: int, seed: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    import huggingface_hub.constants as hf_constants

    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
        # it keeps what it read in 10 MiB chunks: small ones, for files of a few hundred kB
        monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
        monkeypatch.setenv("LIPSYNC_MODELS_DIR", str(tmp_path / "models"))
        yield server


def serve_musetalk(
    hub: FakeHub,
    monkeypatch: pytest.MonkeyPatch,
    contents: dict[str, bytes] | None = None,
    size: int = 200_000,
) -> dict[str, bytes]:
    """Put the MuseTalk set on the stand-in hub (``contents`` or random bytes) and point the
    declarations' hashes at them: every consumer of the registry sees the overrides."""
    real = registry._read(registry.WINGS)
    contents = contents or {n: _random(size + i, i) for i, n in enumerate(MUSETALK_FILES)}

    def override(m: ModelFile) -> ModelFile:
        data = contents.get(m.filename)
        if data is None or not isinstance(m.download, HubFile):
            return m
        hub.state.repo_files[(m.download.repo_id, m.download.path)] = data
        return replace(m, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))

    specs = tuple(
        replace(s, weights=tuple(override(m) for m in s.weights)) if s.name == "musetalk" else s
        for s in real
    )
    monkeypatch.setattr(registry, "_read", lambda wings: specs)
    return contents


def _engine(name: str) -> EngineSpec:
    return next(s for s in registry.engine_specs() if s.name == name)


def test_names_resolve_to_engines_files_and_sets() -> None:
    names = [m.filename for m in resolve_names(["musetalk"])]
    assert names[:7] == list(MUSETALK_FILES) and names[7] == "face-parse-bisent/79999_iter.pth"
    assert [m.filename for m in resolve_names(["gfpgan"])] == ["GFPGANv1.4.onnx"]
    assert [m.filename for m in resolve_names(["wav2lip-onnx"])] == ["wav2lip_gan_96.onnx"]
    commercial = resolve_names(["all-commercial"])
    assert commercial and all(m.commercial is True for m in commercial)
    assert {m.filename for m in commercial} >= set(MUSETALK_FILES)
    assert len(resolve_names(["musetalk", "musetalkV15/unet.pth"])) == 8  # each once


def test_every_download_is_pinned_or_says_why_not() -> None:
    for m in model_by_filename().values():
        if m.download is None:
            assert m.manual, m.filename
        elif isinstance(m.download, HubFile) and m.sha256 is not None:
            assert m.download.pinned, m.filename  # a pinned hash at a pinned commit
        else:
            assert isinstance(m.download, HubFile | UrlFile)
    for name in MUSETALK_FILES:
        download = model_by_filename()[name].download
        assert isinstance(download, HubFile) and download.pinned
    assert model_by_filename()["wav2lip_gan.pth"].download is None


def test_pull_musetalk_end_to_end(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    contents = serve_musetalk(hub, monkeypatch)
    models_dir = tmp_path / "models"
    code = cli.main(["models", "pull", "musetalk", "--models-dir", str(models_dir)])
    out = capsys.readouterr()
    assert code == 0, out.err
    for name, data in contents.items():
        assert (models_dir / name).read_bytes() == data
    assert "face-parse-bisent/79999_iter.pth: not fetched" in out.out  # manual, not a failure
    assert "Google Drive" in out.out
    assert "7 fetched, 1 to get by hand, 0 failed" in out.out
    assert "licence: MuseTalk" in out.out
    # a real redirect: the resolve route sent the client to the blob host
    resolves = [r for r in hub.state.requests if "/resolve/2bcb936e" in r[1]]
    blobs = [r for r in hub.state.requests if r[0] == "GET" and r[1].startswith("/blobs/")]
    assert resolves and len(blobs) == 7
    # lipsync models: every pulled file verified
    states = {s.model.filename: s.state for s in list_models(models_dir)}
    assert all(states[n] == "verified" for n in MUSETALK_FILES)
    assert cli.main(["models", "--json", "--models-dir", str(models_dir)]) == 0
    files = {
        f["model"]["filename"]: f["state"] for f in json.loads(capsys.readouterr().out)["files"]
    }
    assert all(files[n] == "verified" for n in MUSETALK_FILES)
    _engine("musetalk").check(_ctx(models_dir))  # the engine's pre-check passes
    # a second pull fetches nothing
    before = len(hub.state.requests)
    assert cli.main(["models", "pull", "musetalk", "--models-dir", str(models_dir)]) == 0
    assert "already verified" in capsys.readouterr().out
    assert len(hub.state.requests) == before


def _ctx(models_dir: Path):  # type: ignore[no-untyped-def]
    from lipsync.enginespec import EngineContext

    return EngineContext(models_dir=models_dir)


def test_a_hub_transfer_cut_at_half_resumes_with_range(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The connection drops after 50% of unet.pth: huggingface_hub retries with a Range
    from where it stopped and the pull ends verified, having fetched the file once."""
    contents = serve_musetalk(hub, monkeypatch, size=400_000)
    models_dir = tmp_path / "models"
    hub.state.cut_at, hub.state.fail_after_cut = 0.5, False
    code = cli.main(["models", "pull", "musetalkV15/unet.pth", "--models-dir", str(models_dir)])
    assert code == 0, capsys.readouterr().err
    data = contents["musetalkV15/unet.pth"]
    assert (models_dir / "musetalkV15/unet.pth").read_bytes() == data
    ranges = [r[2] for r in hub.state.requests if r[0] == "GET" and r[1].startswith("/blobs/")]
    assert len(ranges) == 2 and ranges[0] == ""
    start = int(ranges[1].removeprefix("bytes=").removesuffix("-"))  # resumed, not started over
    assert len(data) // 2 - 16 * 1024 <= start <= len(data) // 2
    assert hub.state.bytes_sent == len(data) // 2 + len(data) - start


def test_a_hub_pull_that_gives_up_at_half_leaves_nothing_under_the_name(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    contents = serve_musetalk(hub, monkeypatch, size=400_000)
    models_dir = tmp_path / "models"
    hub.state.cut_at = 0.5  # and 503 after: the client gives up
    code = cli.main(["models", "pull", "musetalkV15/unet.pth", "--models-dir", str(models_dir)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_INPUT_ERROR
    assert "error [download_failed]" in err and "run the pull again" in err
    assert not (models_dir / "musetalkV15/unet.pth").exists()  # never a half file
    hub.state.cut_at = None
    assert (
        cli.main(["models", "pull", "musetalkV15/unet.pth", "--models-dir", str(models_dir)]) == 0
    )
    assert (models_dir / "musetalkV15/unet.pth").read_bytes() == contents["musetalkV15/unet.pth"]


def test_a_plain_url_pull_interrupted_at_half_resumes_on_the_next_pull(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = _random(300_000, 7)
    hub.state.plain_files["s3fd.pth"] = data
    model = replace(
        model_by_filename()["s3fd.pth"],
        sha256=hashlib.sha256(data).hexdigest(),
        download=UrlFile(f"{hub.endpoint}/files/s3fd.pth"),
    )
    models_dir = tmp_path / "models"
    puller = Puller(models_dir, accept_licence=True, out=open(os.devnull, "w"))  # noqa: SIM115
    hub.state.cut_at = 0.5
    first = puller.pull(model)
    assert first.state == "failed" and first.code == "download_failed"
    assert not (models_dir / "s3fd.pth").exists()
    hub.state.cut_at = None
    hub.state.requests.clear()
    assert puller.pull(model).state == "fetched"
    assert (models_dir / "s3fd.pth").read_bytes() == data
    assert [r[2] for r in hub.state.requests] == [f"bytes={len(data) // 2}-"]


def test_a_wrong_hash_is_refused_and_not_left_under_its_name(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    serve_musetalk(hub, monkeypatch)
    # the hub now serves other bytes than the declaration pins
    key = ("TMElyralab/MuseTalk", "musetalkV15/unet.pth")
    hub.state.repo_files[key] = _random(1000, 99)
    models_dir = tmp_path / "models"
    code = cli.main(["models", "pull", "musetalk", "--models-dir", str(models_dir)])
    out = capsys.readouterr()
    assert code == cli.EXIT_INPUT_ERROR
    assert "error [model_mismatch]: musetalkV15/unet.pth: SHA-256" in out.err
    assert not (models_dir / "musetalkV15/unet.pth").exists()
    assert list(models_dir.rglob("unet.pth")) == []  # not staged either
    assert list(models_dir.rglob("*.pulling")) == []
    assert (models_dir / "sd-vae/config.json").is_file()  # the rest was fetched
    assert "6 fetched, 1 to get by hand, 1 failed" in out.out


def test_a_404_is_a_download_failure_naming_the_url(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    serve_musetalk(hub, monkeypatch)
    del hub.state.repo_files[("openai/whisper-tiny", "config.json")]
    models_dir = tmp_path / "models"
    code = cli.main(["models", "pull", "whisper/config.json", "--models-dir", str(models_dir)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_INPUT_ERROR
    assert "error [download_failed]" in err and "404" in err
    assert (
        "/openai/whisper-tiny/resolve/169d4a4341b33bc18d8881c4b69c2e104e1cc0af/config.json" in err
    )
    assert not (models_dir / "whisper/config.json").exists()


def test_dry_run_fetches_nothing(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    serve_musetalk(hub, monkeypatch)
    models_dir = tmp_path / "models"
    args = ["models", "pull", "musetalk", "wav2lip", "codeformer", "--dry-run"]
    assert cli.main([*args, "--models-dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert hub.state.requests == []
    assert not models_dir.exists() or not any(models_dir.iterdir())
    assert "musetalkV15/unet.pth: would fetch" in out
    assert "hf://TMElyralab/MuseTalk@2bcb936e2fdd/musetalkV15/unet.pth" in out
    assert "wav2lip_gan.pth: manual" in out and "SharePoint" in out
    assert "codeformer.onnx: would fetch" in out and "non-commercial" in out
    assert "not pinned (no published SHA-256)" in out


def test_non_commercial_licence_needs_confirmation(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _random(5000, 3)
    hub.state.plain_files["codeformer.onnx"] = data
    real = registry._read(registry.WINGS)
    monkeypatch.setattr(registry, "_read", lambda wings: real)
    import lipsync.models as models

    shared = tuple(
        replace(m, download=UrlFile(f"{hub.endpoint}/files/codeformer.onnx"))
        if m.filename == "codeformer.onnx"
        else m
        for m in models.SHARED_FILES
    )
    monkeypatch.setattr(models, "SHARED_FILES", shared)
    models_dir = tmp_path / "models"
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # noqa: SIM115 (not a terminal)
    code = cli.main(["models", "pull", "codeformer", "--models-dir", str(models_dir)])
    out = capsys.readouterr()
    assert code == cli.EXIT_INPUT_ERROR
    assert "error [licence_not_accepted]: codeformer.onnx" in out.err
    assert "--accept-licence" in out.err
    assert hub.state.requests == [] and not (models_dir / "codeformer.onnx").exists()
    args = ["models", "pull", "codeformer", "--accept-licence", "--models-dir", str(models_dir)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "NOT verified: no published SHA-256" in out
    assert (models_dir / "codeformer.onnx").read_bytes() == data


@pytest.mark.slow
def test_lipsync_run_uses_the_pulled_musetalk_set(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The published layout (random networks saved as MuseTalk's files) served by the
    stand-in hub, pulled, and ``lipsync run --engine musetalk`` runs on what was pulled."""
    pytest.importorskip("diffusers")
    import numpy as np

    from tests import media_factory as mf
    from tests.engines._musetalk_helpers import SMALL_UNET, SMALL_VAE, write_published

    video = mf.SHARED_MEDIA / "video_SadTalker_WDA_KatieHill_000.mp4"
    if not video.is_file():
        pytest.skip("../shared/media is not present")
    published = write_published(tmp_path / "published", SMALL_UNET, SMALL_VAE)
    serve_musetalk(hub, monkeypatch, {n: (published / n).read_bytes() for n in MUSETALK_FILES})
    models_dir = tmp_path / "models"
    assert cli.main(["models", "pull", "musetalk", "--models-dir", str(models_dir)]) == 0
    capsys.readouterr()
    audio = mf.write_wav(
        tmp_path / "speech.wav", (0.1 * np.sin(np.arange(16000) / 9.0)).astype(np.float32), 16000
    )
    out = tmp_path / "out.mp4"
    args = ["run", "--video", str(video), "--audio", str(audio), "--output", str(out)]
    args += ["--engine", "musetalk", "--models-dir", str(models_dir), "--device", "cpu"]
    args += ["--enhancer", "none", "--no-progress", "--json"]
    assert cli.main(args) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["engine"] == "musetalk" and result["frames"] == 25
    assert len(mf.decode_video(out)) == 25
