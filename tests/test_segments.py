"""Segments: the form check (field paths), the check against the inputs, and the speech,
sound and share tracks built from them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from lipsync.errors import InvalidOption
from lipsync.options import RunOptions, parse_public_fields, spec_of
from lipsync.segments import (
    Segment,
    check_against_media,
    check_segments,
    face_groups,
    mix_track,
    segment_shares,
    speech_track,
)

TWO = [{"start": 1, "end": 4, "audio": 0}, {"start": 6, "end": 9, "audio": 1, "audio_end": 3.5}]


def _field(value: Any) -> str | None:
    with pytest.raises(InvalidOption) as info:
        check_segments(value)
    return info.value.field


def test_two_segments_are_read_and_written_back() -> None:
    segs = check_segments(TWO)
    assert segs == (Segment(1.0, 4.0, 0), Segment(6.0, 9.0, 1, 0.0, 3.5))
    assert [s.to_json() for s in segs] == [
        {"start": 1.0, "end": 4.0, "audio": 0},
        {"start": 6.0, "end": 9.0, "audio": 1, "audio_end": 3.5},
    ]
    assert RunOptions(segments=TWO).segments == segs
    assert RunOptions().segments == ()


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"start": 1}, "segments"),
        ([{"start": 1, "end": 4}, 3], "segments[1]"),
        ([{"end": 4}], "segments[0].start"),
        ([{"start": 4, "end": 4}], "segments[0].end"),
        ([{"start": -1, "end": 4}], "segments[0].start"),
        ([{"start": 1, "end": "x"}], "segments[0].end"),
        ([{"start": 1, "end": 2, "audio": -1}], "segments[0].audio"),
        ([{"start": 1, "end": 2, "audio": True}], "segments[0].audio"),
        ([{"start": 1, "end": 2, "audio_start": 2, "audio_end": 1}], "segments[0].audio_end"),
        ([{"start": 1, "end": 2, "face": "left"}], "segments[0].face"),
        ([{"start": 1, "end": 2, "face": [1]}], "segments[0].face"),
        ([{"start": 1, "end": 2, "speed": 2}], "segments[0].speed"),
        ([{"start": 5, "end": 6}, {"start": 1, "end": 2}], "segments[1].start"),
        ([{"start": 1, "end": 4}, {"start": 2, "end": 5}], "segments[1].start"),
        (
            [{"start": 1, "end": 4, "face": 0}, {"start": 3, "end": 5, "face": 0}],
            "segments[1].start",
        ),
        ([{"start": 1, "end": 4, "face": 0}, {"start": 3, "end": 5}], "segments[1].start"),
    ],
)
def test_bad_segments_name_their_field(value: Any, field: str) -> None:
    assert _field(value) == field


def test_different_faces_may_overlap() -> None:
    segs = check_segments(
        [{"start": 1, "end": 4, "face": 0}, {"start": 2, "end": 5, "face": [300, 200]}]
    )
    assert [f for f, _ in face_groups(segs)] == [0, (300, 200)]


def test_too_many_segments() -> None:
    many = [{"start": i, "end": i + 0.5} for i in range(5)]
    with pytest.raises(InvalidOption) as info:
        check_segments(many, max_segments=4)
    assert info.value.field == "segments"


def test_the_push_field_is_json_with_field_paths() -> None:
    assert parse_public_fields({"segments": json.dumps(TWO)})["segments"] == [
        {"start": 1.0, "end": 4.0, "audio": 0},
        {"start": 6.0, "end": 9.0, "audio": 1, "audio_end": 3.5},
    ]
    with pytest.raises(InvalidOption) as info:
        parse_public_fields({"segments": "[{"})
    assert info.value.field == "segments"
    with pytest.raises(InvalidOption) as info:
        parse_public_fields({"segments": '[{"start": 2, "end": 1}]'})
    assert info.value.field == "segments[0].end"
    described = spec_of("segments").describe()
    assert described["type"] == "json" and described["default"] == []


@pytest.mark.parametrize(
    ("segments", "mode", "field"),
    [
        ([{"start": 1, "end": 2, "audio": 2}], "loop", "segments[0].audio"),
        ([{"start": 1, "end": 2, "audio_start": 5}], "loop", "segments[0].audio_start"),
        ([{"start": 1, "end": 2, "audio": 1, "audio_end": 3.5}], "loop", "segments[0].audio_end"),
        ([{"start": 8, "end": 11}], "silence", "segments[0].end"),
        ([{"start": 8, "end": 11}], "cut_off", "segments[0].end"),
    ],
)
def test_checked_against_the_inputs(segments: Any, mode: str, field: str) -> None:
    with pytest.raises(InvalidOption) as info:
        check_against_media(check_segments(segments), 10.0, [4.0, 3.0], mode)
    assert info.value.field == field


def test_past_the_video_is_fine_when_it_loops() -> None:
    check_against_media(check_segments([{"start": 8, "end": 11}]), 10.0, [4.0], "loop")


def test_speech_track_places_each_range_at_its_start() -> None:
    a = np.full(16000 * 5, 0.5, np.float32)
    b = np.full(16000 * 5, -0.25, np.float32)
    segs = check_segments(TWO)
    track = speech_track(segs, [a, b], 10.0)
    assert track.shape == (160000,)
    assert not track[:16000].any() and not track[64000:96000].any()
    assert np.allclose(track[18000:62000], 0.5)
    assert np.allclose(track[98000:142000], -0.25)
    assert not track[152000:].any(), "audio 1 plays 0-3.5 s: 6-9.5 cut at 9"
    own = np.full(160000, 0.1, np.float32)
    with_own = speech_track(segs, [a, b], 10.0, own)
    assert np.allclose(with_own[:15000], 0.1) and np.allclose(with_own[66000:94000], 0.1)
    assert np.allclose(with_own[18000:62000], 0.5), "inside: the segment's speech alone"
    assert np.all(np.abs(np.diff(with_own[15000:19000])) < 1e-3), "cross-faded"


@pytest.mark.parametrize(("mode", "under"), [("replace", 0.0), ("duck", 0.1), ("mix", 0.1)])
def test_mix_keeps_the_original_outside_bit_for_bit(mode: str, under: float) -> None:
    rate = 8000
    t = np.arange(rate * 10) / rate
    original = np.stack([np.sin(2 * np.pi * 220 * t), np.cos(2 * np.pi * 220 * t)])
    original = (original * 0.1).astype(np.float32)
    speech = np.full((1, rate * 5), 0.3, np.float32)
    segs = check_segments([{"start": 1, "end": 4}])
    out = mix_track(segs, original, [speech], rate, 10.0, mode, duck_db=20)
    assert out.shape == original.shape
    assert np.array_equal(out[:, :rate], original[:, :rate])
    assert np.array_equal(out[:, 4 * rate :], original[:, 4 * rate :])
    mid = slice(2 * rate, 3 * rate)
    expected = original[:, mid] * (1.0 if mode == "mix" else under) + 0.3
    assert np.allclose(out[:, mid], expected, atol=1e-6)
    # Cross-faded: no step larger than the signal's own at the edges.
    assert np.max(np.abs(np.diff(out[0, rate - 200 : rate + 200]))) < 0.05


def test_shares_are_zero_outside_and_switch_at_the_edges() -> None:
    shares = segment_shares(check_segments(TWO), 250, 25.0)
    assert not shares[:25].any() and not shares[100:150].any() and not shares[225:].any()
    assert (shares[25:100] == 1).all() and (shares[150:225] == 1).all()
    # An easing, where asked for, ramps inside the segment.
    eased = segment_shares(check_segments(TWO), 250, 25.0, ease=3)
    assert list(eased[25:29]) == [0.25, 0.5, 0.75, 1.0]
    assert list(eased[96:100]) == [1.0, 0.75, 0.5, 0.25]
