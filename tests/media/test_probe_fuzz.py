"""Fuzz the media probe (hypothesis): damaged real media and forged headers.

Each input goes through the probe exactly as the API runs it on an upload, a child
``python -m lipsync.media.probe`` with a time limit. No input may crash it (a signal, or an
answer that is not the probe's JSON), hang past the probe timeout, or be answered with
anything but media info or a typed error. ``LIPSYNC_FUZZ_EXAMPLES`` sets how many inputs
(60 by default, a few seconds; e.g. 5000 for a long run on demand).
"""

from __future__ import annotations

import collections
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import media_factory as mf

EXAMPLES = int(os.environ.get("LIPSYNC_FUZZ_EXAMPLES", "60"))
PROBE_TIMEOUT_S = 10.0
CODES = {"unsupported_media", "corrupt_media", "too_large", "audio_empty"}
SEEN: collections.Counter[str] = collections.Counter()
SLOWEST = [0.0]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, bytes]]:
    """Small real files of every accepted kind, made here."""
    from tests.app import hostile_media as hm

    d = tmp_path_factory.mktemp("fuzz-seeds")
    frames = mf.moving_portrait_frames(10, size=64)
    found = {
        "mp4": mf.write_video(d / "v.mp4", frames, audio=mf.tone(0.4)).read_bytes(),
        "avi": hm.small_video(d / "v.avi", "avi", seconds=0.4).read_bytes(),
        "mkv": hm.small_video(d / "v.mkv", "matroska", seconds=0.4).read_bytes(),
        "png": mf.write_png(d / "i.png", frames[0]).read_bytes(),
        "wav": mf.write_wav(d / "a.wav", mf.tone(0.3, 8000), 8000).read_bytes(),
        "wav-claims-24h": hm.wav_claiming(86400, real_s=0.2),
        "png-claims-huge": hm.png_claiming(100000, 100000),
    }
    yield found
    print(f"\nFIGURE probe_fuzz_inputs = {sum(SEEN.values())} {dict(SEEN)}")
    print(f"FIGURE probe_fuzz_slowest_s = {SLOWEST[0]:.2f} (timeout {PROBE_TIMEOUT_S:g} s)")


@st.composite
def damaged(draw: st.DrawFn, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """A seed file, then a few of: bit flips, byte overwrites, cuts, splices, insertions,
    and 32-bit fields overwritten with extreme values (sizes, counts, dimensions)."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "byte", "cut", "splice", "insert", "u32"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
        elif op == "cut":
            data = data[: max(at, 1)]
        elif op == "splice" and len(data) > 8:
            size = draw(st.integers(1, 512))
            src = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[src : src + size]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "u32" and len(data) >= at + 4:
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 100000]))
            struct.pack_into(draw(st.sampled_from(["<I", ">I"])), data, at, value)
    return name, bytes(data)


def _probe_child(path: Path, kind: str) -> tuple[int, str, float]:
    cmd = [sys.executable, "-m", "lipsync.media.probe", str(path), "--kind", kind]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the probe hung past {PROBE_TIMEOUT_S} s on {path}")
    return proc.returncode, proc.stdout, time.monotonic() - t0


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), kind=st.sampled_from(["video", "audio", "any"]))
def test_probe_never_crashes_or_hangs_on_damaged_media(
    data: st.DataObject, kind: str, seeds: dict[str, bytes], tmp_path: Path
) -> None:
    name, blob = data.draw(damaged(seeds))
    path = tmp_path / f"input.{name.split('-')[0]}"
    path.write_bytes(blob)
    rc, out, elapsed = _probe_child(path, kind)
    SLOWEST[0] = max(SLOWEST[0], elapsed)
    assert rc in (0, 2), f"probe died (exit {rc}) on a damaged {name}: {out!r}"
    answer = json.loads(out)  # the child always answers in JSON
    if rc == 0:
        assert set(answer) == {"info"} and answer["info"]["path"] == str(path)
        SEEN["accepted"] += 1
    else:
        assert answer["error"]["code"] in CODES, answer
        assert answer["error"]["message"], answer
        SEEN[answer["error"]["code"]] += 1
