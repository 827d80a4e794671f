"""The default engine on edited footage assembled from the shared real clips: cuts between
people, two people side by side, a fast camera move. Every output frame is checked against
the input frame it shows: no pixels change outside that frame's own lower face, the lips
keep that person's colour, nothing of another person lands on anyone, no doubled lips.
Skipped when the shared clips are absent; everything stays in pytest's temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

import lipsync
from benchmarks import edited
from lipsync.face.geometry import lower_face_polygon
from lipsync.face.tracker import FaceChoice, FaceTracker
from lipsync.media.decode import iter_frames
from lipsync.types import Result
from tests.engines._lips import lip_bands, lip_threshold
from tests.media_factory import SHARED_MEDIA

GERMAN = "audio_SadTalker_deyu_german.wav"
BLOCK = 16
Frame = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def media() -> Path:
    for name in (edited.KATIE, edited.FACE2, edited.FACE4, GERMAN):
        if not (SHARED_MEDIA / name).is_file():
            pytest.skip(f"{name} is not in ../shared/media")
    return SHARED_MEDIA


def pairs(video: Path, output: Path) -> Iterator[tuple[int, Frame, Frame]]:
    """(index, input frame, output frame) for every output frame (sync mode silence: the
    output shows the input's frames one for one)."""
    for a, b in zip(iter_frames(video), iter_frames(output), strict=False):
        yield a.index, a.image, b.image


def all_faces(tracker: FaceTracker, rgb: Frame) -> list[npt.NDArray[np.float32]]:
    """The landmarks of every face dlib finds in the frame."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return [tracker.faces.landmarks(gray, box) for box in tracker._detect(gray)]


def outside_lower_face_change(
    inp: Frame, out: Frame, faces: list[npt.NDArray[np.float32]]
) -> float:
    """The largest mean absolute difference of a 16x16 block lying wholly outside the
    input frame's own lower faces (each grown by a block), or of any block when it has no
    face."""
    diff = np.abs(inp.astype(np.int16) - out.astype(np.int16)).mean(axis=2)
    h, w = diff.shape
    keep = np.zeros((h, w), np.uint8)
    for lm in faces:
        cv2.fillPoly(keep, [np.round(lower_face_polygon(lm)).astype(np.int32)], 1)
    if faces:
        keep = cv2.dilate(keep, np.ones((2 * BLOCK + 1, 2 * BLOCK + 1), np.uint8))
    hb, wb = h // BLOCK, w // BLOCK
    blocks = diff[: hb * BLOCK, : wb * BLOCK].reshape(hb, BLOCK, wb, BLOCK).mean(axis=(1, 3))
    inside = keep[: hb * BLOCK, : wb * BLOCK].reshape(hb, BLOCK, wb, BLOCK).max(axis=(1, 3))
    return float(blocks[inside == 0].max()) if (inside == 0).any() else 0.0


def lip_ab(rgb: npt.NDArray[np.uint8], lm: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Median CIELAB a*, b* of the lip pixels (between the outer and inner lip contours)."""
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(lm[48:60]).astype(np.int32)], 1)
    cv2.fillPoly(mask, [np.round(lm[60:68]).astype(np.int32)], 0)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float64)
    sel = lab[mask > 0]
    return np.median(sel[:, 1:], axis=0) if len(sel) else np.full(2, np.nan)


def check_no_foreign_mouth(
    video: Path, output: Path, point: tuple[int, int] | None = None
) -> tuple[float, float]:
    """Every frame: no block outside the input frame's own lower face changed by more than
    15; the share of frames whose lip colour moved by more than 12 (a*b*), and the worst
    outside-block change."""
    worst, moved, n = 0.0, 0, 0
    tracker, own = FaceTracker(FaceChoice(point=point)), FaceTracker(FaceChoice(point=point))
    for i, inp, out in pairs(video, output):
        tracker.reset()  # each frame's own face, whatever came before
        own.reset()
        lm = tracker.update(inp)
        change = outside_lower_face_change(inp, out, all_faces(tracker, inp))
        assert change <= 15.0, (i, change)
        worst = max(worst, change)
        lm_out = own.update(out) if lm is not None else None
        if lm is not None and lm_out is not None:
            # Each frame's lips where its own landmarks put them (an opened mouth shows
            # teeth where the input's lips were).
            d = float(np.linalg.norm(lip_ab(out, lm_out) - lip_ab(inp, lm)))
            moved += int(d > 12.0)
        n += 1
    return moved / n, worst


def run(video: Path, out: Path, audio: Path, **options: object) -> Result:
    return lipsync.run(video, audio, out, sync_mode="silence", **options)  # type: ignore[arg-type]


def test_cuts_between_people_never_give_anyone_another_persons_lips(
    media: Path, tmp_path: Path
) -> None:
    for build in (edited.man_woman, edited.two_women):
        video = build(tmp_path)
        result = run(video.path, tmp_path / f"out_{video.path.name}", media / GERMAN)
        assert [s["start"] for s in result.shots] == video.shot_starts
        names = video.shot_people
        people = [sf["person"] for sf in result.shot_faces]
        # One person per clip: the same clip gives the same person, another clip another.
        for a in range(len(names)):
            for b in range(len(names)):
                assert (people[a] == people[b]) == (names[a] == names[b]), (names, people)
        assert {p["rendered"] for p in result.people} == {"retrieval"}
        share, worst = check_no_foreign_mouth(video.path, result.output)
        assert share < 0.03, (video.path.name, share)


def test_two_people_side_by_side_only_the_speaker_changes(media: Path, tmp_path: Path) -> None:
    video = edited.side_by_side(tmp_path)  # the speaker on the left, with their own sound
    result = run(video.path, tmp_path / "out.mp4", media / GERMAN)
    (sf,) = result.shot_faces
    assert sf["chosen_by"] == "speaker" and sf["faces_seen"] == 2
    for _, inp, out in pairs(video.path, result.output):
        right = np.abs(inp[:, 512:].astype(np.int16) - out[:, 512:]).mean(axis=2)
        assert float(right.max()) < 40 and float(right.mean()) < 2.5  # codec noise only
    share, _ = check_no_foreign_mouth(video.path, result.output, point=(256, 256))
    assert share < 0.03


def test_a_fast_camera_move_gives_no_doubled_or_misplaced_lips(media: Path, tmp_path: Path) -> None:
    video = edited.fast_pan(tmp_path)
    result = run(video.path, tmp_path / "out.mp4", media / GERMAN)
    assert len(result.shots) == 1
    kept = result.frames_kept_original
    assert kept["count"] == len(kept["frames"]) == sum(kept["reasons"].values())
    tracker = FaceTracker()
    ins, outs = [], []
    for _, inp, out in pairs(video.path, result.output):
        tracker.reset()
        lm = tracker.update(inp)
        if lm is None:
            continue
        t = lip_threshold(inp, lm)
        ins.append(lip_bands(inp, lm, t))
        outs.append(lip_bands(out, lm, t))
    o, i = np.array(outs), np.array(ins)
    assert np.all(o <= 3), np.flatnonzero(o > 3)
    assert np.sum(o > 2) <= max(3, int(np.sum(i > 2))), np.flatnonzero(o > 2)
    check_no_foreign_mouth(video.path, result.output)
