"""Memory bombs against the bounded probe (issue 17): headers that claim huge pictures, long
durations or many streams are refused from the headers, quickly, with the child's peak
memory measured for real; legitimate files up to the limits still probe.

Each probe runs through :func:`probe_bounded` inside a fresh small Python process, whose
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is then the probe child's own peak resident size
(the test process itself is not used: a child's ru_maxrss starts from its parent's resident
size at fork, and pytest's is large).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lipsync.errors import CorruptMedia, TooLarge
from lipsync.media.probe import PROBE_MEMORY_LIMIT_BYTES, probe_bounded
from tests.app import hostile_media as hm
from tests.media import probe_media as pm

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
# Refusals from the headers: the probe child starts at about 50 MiB resident; the H.264
# headers claiming 16000x16000 are refused at ~130 MiB (726 to 1227 MiB before issue 17).
HEADER_REFUSAL_RSS = 256 * MiB
ANSWER_S = 5.0  # each refusal takes well under a second alone; margin for a shared CPU

_RUNNER = """
import json, resource, sys, threading, time
from pathlib import Path
from lipsync.errors import LipsyncError
from lipsync.media.probe import probe_bounded
paths, kind, copies, memory = json.loads(sys.argv[1])
answers = []
def one(path):
    try:
        kw = {} if memory is None else {"memory_limit_bytes": memory}
        probe_bounded(Path(path), kind=kind, timeout_s=60, **kw)
        answers.append("accepted")
    except LipsyncError as exc:
        answers.append(exc.code + ": " + exc.message)
t0 = time.monotonic()
threads = [threading.Thread(target=one, args=(p,)) for p in paths for _ in range(copies)]
for t in threads: t.start()
for t in threads: t.join()
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"answers": answers, "peak": peak, "seconds": time.monotonic() - t0}))
"""


def _probe(
    paths: list[Path], kind: str = "video", copies: int = 1, memory: int | None = None
) -> dict[str, Any]:
    """``probe_bounded`` of every path ``copies`` times at once (threads, as the API does),
    in a fresh process: the answers, the largest child's peak RSS (bytes), the seconds."""
    args = json.dumps([[str(p) for p in paths], kind, copies, memory])
    out = subprocess.run(
        [sys.executable, "-c", _RUNNER, args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    small = hm.small_video(root / "small.mp4", "mp4").read_bytes()
    (root / "day.mp4").write_bytes(hm.mp4_claiming_duration(small, 86400))
    (root / "huge.png").write_bytes(hm.png_claiming(100000, 100000))
    return {
        "sps.mp4": hm.h264_claiming_size(root / "sps.mp4", 16000, 16000, "mp4"),
        "sps-both.mp4": hm.h264_claiming_size(
            root / "sps-both.mp4", 16000, 16000, "mp4", in_container=True
        ),
        "sps.mkv": hm.h264_claiming_size(root / "sps.mkv", 16000, 16000, "matroska"),
        "day.mp4": root / "day.mp4",
        "streams.mkv": hm.many_streams(root / "streams.mkv", 1000),
        "streams.mp4": hm.many_streams(root / "streams.mp4", 100, "mp4"),
        "huge.png": root / "huge.png",
    }


def test_bomb_files_are_tiny_and_claim_what_they_say(bombs: dict[str, Path]) -> None:
    import av

    for name in ("sps.mp4", "sps.mkv"):
        assert bombs[name].stat().st_size < 2000  # the attacker's was 1,254 bytes
    with av.open(str(bombs["sps.mp4"])) as c:  # FFmpeg reads 16000x16000 from the SPS
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height) == (16000, 16000)


@pytest.mark.parametrize(
    ("name", "code", "match"),
    [
        ("sps.mp4", "too_large", "16000x16000"),
        ("sps-both.mp4", "too_large", "16000x16000"),
        ("sps.mkv", "too_large", "16000x16000"),
        ("day.mp4", "too_large", "lasts 86400 s"),
        ("streams.mkv", "unsupported_media", "more than 16 streams"),
        ("streams.mp4", "unsupported_media", "more than 16 streams"),
        ("huge.png", "too_large", "pixels"),
    ],
)
def test_bomb_is_refused_quickly_within_the_memory_bound(
    bombs: dict[str, Path], name: str, code: str, match: str
) -> None:
    result = _probe([bombs[name]])
    (answer,) = result["answers"]
    assert answer.startswith(code + ":") and match in answer, answer
    assert result["seconds"] < ANSWER_S, result
    assert result["peak"] < HEADER_REFUSAL_RSS < PROBE_MEMORY_LIMIT_BYTES, result


def test_four_sps_bombs_at_once_stay_bounded(bombs: dict[str, Path]) -> None:
    # What the attacker did: four at once took 2.7 GB before the bound.
    result = _probe([bombs["sps.mp4"], bombs["sps.mkv"]], copies=2)
    assert len(result["answers"]) == 4
    assert all(a.startswith("too_large:") for a in result["answers"]), result
    assert result["peak"] < HEADER_REFUSAL_RSS, result  # each child; four: < 1 GiB together
    assert result["seconds"] < 4 * ANSWER_S, result


def test_running_into_the_memory_limit_is_too_large_not_a_crash(tmp_path: Path) -> None:
    # A legitimate 4096x4096 file under a limit too small for it: the child meets the
    # limit while decoding and answers too_large, or corrupt_media where FFmpeg's H.264
    # decoder reports the failed allocation as invalid data (never a crash, a hang or a 500).
    # (4:4:4 10-bit H.264 peaks at ~340 MiB of address space; the child starts at ~125.)
    edge = pm.video(tmp_path / "edge.mkv", "libx264", "matroska", "yuv444p10le",
                    {"preset": "ultrafast"})  # fmt: skip
    result = _probe([edge], memory=200 * MiB)
    (answer,) = result["answers"]
    assert answer.split(":")[0] in ("too_large", "corrupt_media"), answer
    assert result["peak"] < 200 * MiB and result["seconds"] < ANSWER_S
    with pytest.raises((TooLarge, CorruptMedia)):
        probe_bounded(edge, kind="video", timeout_s=60, memory_limit_bytes=200 * MiB)


def test_legit_files_at_the_size_limit_probe_under_the_bound(tmp_path: Path) -> None:
    # The heaviest accepted files measured (docs/RELIABILITY.md, "Probe memory bound"):
    # 4:4:4 high-bit-depth H.264 and HEVC at 4096x4096, and a 4096x4096 PNG.
    files = [
        pm.video(tmp_path / "h264.mkv", "libx264", "matroska", "yuv444p10le",
                 {"preset": "ultrafast"}),
        pm.video(tmp_path / "hevc.mkv", "libx265", "matroska", "yuv444p12le",
                 {"preset": "ultrafast", "x265-params": "log-level=error"}),
        pm.video(tmp_path / "h264-audio.mp4", "libx264", "mp4", options={"preset": "ultrafast"},
                 audio_s=2.0),
        pm.image(tmp_path / "edge.png"),
    ]  # fmt: skip
    for path in files:
        result = _probe([path])
        assert result["answers"] == ["accepted"], (path.name, result)
        assert result["peak"] < PROBE_MEMORY_LIMIT_BYTES, (path.name, result)
    info = probe_bounded(files[0], kind="video", timeout_s=60)
    assert info.video is not None and (info.video.width, info.video.height) == (4096, 4096)


def test_made_video_probes_under_the_bound(portrait_video: Path) -> None:
    result = _probe([portrait_video])
    assert result["answers"] == ["accepted"], result
    assert result["peak"] < HEADER_REFUSAL_RSS, result
    info = probe_bounded(portrait_video, kind="video", timeout_s=60)
    assert info.video is not None and info.video.codec == "h264" and info.audio is not None


def test_shared_clips_probe_under_the_bound(shared_media: Path) -> None:
    clips = sorted(shared_media.glob("*.mp4"))
    if not clips:
        pytest.skip("no .mp4 in ../shared/media")
    result = _probe(clips)
    assert result["answers"] == ["accepted"] * len(clips), result
    assert result["peak"] < PROBE_MEMORY_LIMIT_BYTES, result
