"""The service says what it can run: ``/options`` and ``/readyz`` list each engine's missing
weights (from the server's models/), and a push choosing an engine without its weights is
refused at the push (422 model_missing naming the files). Before and after a pull from a
local stand-in for the hub (tests/fakehub.py). No Redis: the store is a stub."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.deps import get_store
from app.main import create_app
from lipsync import cli
from service.settings import Settings
from tests.fakehub import FakeHub
from tests.test_models_pull import MUSETALK_FILES, hub, serve_musetalk  # noqa: F401

API = "/api/v1/lipsync"


class StubStore:
    """What of the job store the routes here read: Redis answers, one live worker, an
    empty queue."""

    def __init__(self) -> None:
        self.workers = SimpleNamespace(live=lambda max_age_s=30.0: ["w@host"])
        self.stats = SimpleNamespace(queue_depth=lambda: 0)

    def ping(self) -> bool:
        return True


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data")
    app = create_app(settings)
    app.dependency_overrides[get_store] = lambda: StubStore()
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _engines(client: TestClient) -> dict[str, Any]:
    body = client.get(f"{API}/options").json()
    return {e["name"]: e for e in body["engines"]}


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x01" * 16000)
    return path


def test_musetalk_missing_before_a_pull_and_ready_after(
    client: TestClient,
    hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    serve_musetalk(hub, monkeypatch)
    before = _engines(client)["musetalk"]
    assert before["ready"] is False
    assert before["missing"] == list(MUSETALK_FILES)  # the optional parser is not named
    assert _engines(client)["viseme"]["ready"] is True
    ready = client.get("/readyz").json()
    assert ready["engines"]["musetalk"] == list(MUSETALK_FILES)
    assert ready["engines"]["viseme"] == []

    audio = _wav(tmp_path / "speech.wav")
    with audio.open("rb") as a, audio.open("rb") as v:
        resp = client.post(
            f"{API}/push",
            files={"audio": ("speech.wav", a), "video": ("face.wav", v)},
            data={"engine": "musetalk"},
        )
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail["code"] == "model_missing" and detail["field"] == "engine"
    assert "musetalkV15/unet.pth" in detail["message"]
    assert "lipsync models pull musetalk" in detail["message"]

    models_dir = tmp_path / "models"
    assert cli.main(["models", "pull", "musetalk", "--models-dir", str(models_dir)]) == 0
    after = _engines(client)["musetalk"]
    assert after["ready"] is True and after["missing"] == []
    assert client.get("/readyz").json()["engines"]["musetalk"] == []
