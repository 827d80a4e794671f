"""Segments over HTTP and through the client: several audio inputs (``audio``,
``audio_1``, … files or URLs), every bad segment refused with its field path before
anything is queued, and a good job run by the real worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lipsync.cli import main
from lipsync.client import Client, LipsyncAPIError
from tests.app.service_harness import KEY_A, wait_for

URL = "/api/v1/lipsync/push"


def _push(c: Any, media: dict[str, Path], segments: Any, extra: int = 1, **fields: str) -> Any:
    files = {
        "audio": ("a.wav", media["speech"].read_bytes()),
        "video": ("f.mp4", media["face_video"].read_bytes()),
    }
    for k in range(1, extra + 1):
        files[f"audio_{k}"] = (f"b{k}.wav", media["speech"].read_bytes())
    data = {"segments": json.dumps(segments), **fields}
    return c.post(URL, files=files, data=data)


def _uploads(stack: Any) -> set[Path]:
    return set((stack.data_dir / "uploads").iterdir())


@pytest.mark.parametrize(
    ("segments", "extra", "fields", "field"),
    [
        ([{"start": 1, "end": 0.5}], 1, {}, "segments[0].end"),
        ([{"start": 1, "end": 2}, {"start": 0.2, "end": 0.5}], 1, {}, "segments[1].start"),
        ([{"start": 0, "end": 1}, {"start": 0.5, "end": 1.5}], 1, {}, "segments[1].start"),
        ([{"start": 0, "end": 1, "audio": 2}], 1, {}, "segments[0].audio"),
        ([{"start": 0, "end": 1, "audio": 1, "audio_end": 60}], 1, {}, "segments[0].audio_end"),
        ([{"start": 0, "end": 1, "audio_start": 60}], 1, {}, "segments[0].audio_start"),
        ([{"start": 1, "end": 5}], 1, {"sync_mode": "silence"}, "segments[0].end"),
        ([{"start": i / 10, "end": i / 10 + 0.05} for i in range(40)], 1, {}, "segments"),
        ([], 1, {}, "segments"),
    ],
)
def test_bad_segments_are_refused_before_queueing(
    stack: Any, media: dict[str, Path], segments: Any, extra: int, fields: Any, field: str
) -> None:
    before = _uploads(stack)
    with stack.client() as c:
        resp = _push(c, media, segments, extra, **fields)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"]["field"] == field, resp.text
    assert _uploads(stack) <= before, "nothing kept, nothing queued"


def test_a_skipped_audio_input_is_refused(stack: Any, media: dict[str, Path]) -> None:
    with stack.client() as c:
        files = {
            "audio": ("a.wav", media["speech"].read_bytes()),
            "audio_2": ("b.wav", media["speech"].read_bytes()),
            "video": ("f.mp4", media["face_video"].read_bytes()),
        }
        resp = c.post(URL, files=files, data={"segments": '[{"start": 0, "end": 1}]'})
    assert resp.status_code == 422 and resp.json()["detail"]["field"] == "audio_1"


def test_two_audio_inputs_run_end_to_end(stack: Any, media: dict[str, Path]) -> None:
    segments = [
        {"start": 0.2, "end": 0.9, "audio": 0},
        {"start": 1.1, "end": 1.8, "audio": 1, "audio_start": 0.2},
    ]
    with stack.client() as c:
        resp = _push(c, media, segments, segment_audio="duck", duck_db="20")
        assert resp.status_code == 202, resp.text
        body = wait_for(c, resp.json()["task_id"])
        assert body["state"] == "succeeded", body
    reasons = body["result"]["frames_kept_original"]["reasons"]
    assert reasons.get("outside_segments", 0) >= 10, body["result"]


def test_the_client_and_remote_run_refuse_and_push(
    stack: Any, media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = [media["speech"], media["speech"]]
    with Client(stack.base_url, api_key=KEY_A, timeout=60) as client:
        with pytest.raises(LipsyncAPIError) as info:  # refused before sending
            client.submit(media["face_video"], two, segments=[{"start": 0, "end": 1, "audio": 2}])
        assert info.value.field == "segments[0].audio" and info.value.status == 0
        with pytest.raises(LipsyncAPIError) as info:  # refused by the server (past the file)
            client.submit(
                media["face_video"], two, segments=[{"start": 0, "end": 1, "audio_start": 60}]
            )
        assert info.value.field == "segments[0].audio_start" and info.value.status == 422
        job = client.submit(
            media["face_video"], two, segments=[{"start": 0.2, "end": 0.9, "audio": 1}]
        )
        assert job.wait(timeout=180).state == "succeeded"
    seg = tmp_path / "s.json"
    seg.write_text(json.dumps([{"start": 0, "end": 1}, {"start": 0.5, "end": 1.5}]))
    args = ["remote", "run", "--server", stack.base_url, "--api-key", KEY_A]
    args += ["--video", str(media["face_video"]), "--audio", str(media["speech"])]
    args += ["--audio", str(media["speech"]), "--segments", str(seg), "-o", str(tmp_path / "o.mp4")]
    assert main(args) == 2
    assert "error [invalid_option]: segments[1].start" in capsys.readouterr().err
