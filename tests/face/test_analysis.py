"""The face analysis on edited footage: one face per shot, never tracked across a cut,
shots grouped into people, the speaker chosen among several faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import edited
from lipsync.face.analysis import EDGE_MARGIN, FaceAnalyser, FaceAnalysis, FaceSetup
from lipsync.face.identity import embed, group_people
from lipsync.face.tracker import FaceTracker
from lipsync.media.audio import load_audio, to_mono
from lipsync.media.decode import iter_frames
from tests import media_factory as mf
from tests.media_factory import SHARED_MEDIA


def _needs_media() -> None:
    for name in (edited.KATIE, edited.FACE2, edited.FACE4):
        if not (SHARED_MEDIA / name).is_file():
            pytest.skip(f"{name} is not in ../shared/media")


def analyse(path: Path, setup: FaceSetup | None = None, audio: bool = False) -> FaceAnalysis:
    own = to_mono(load_audio(path, sample_rate=16000, channels=1)[0]) if audio else None
    analyser = FaceAnalyser(setup or FaceSetup(), 25.0, own_audio16k=own)
    for frame in iter_frames(path, pixel_format="i420"):
        analyser.feed(frame)
    return analyser.finish()


def test_cuts_between_people_give_shots_and_people(tmp_path: Path) -> None:
    _needs_media()
    video = edited.man_woman(tmp_path)  # man -> woman -> man
    a = analyse(video.path)
    assert [s.start for s in a.shots] == video.shot_starts
    assert [sf.person for sf in a.shot_faces] == [0, 1, 0]
    assert a.person_of.tolist() == [0] * 75 + [1] * 100 + [0] * 50
    # Nothing carried over a cut: the first frame of each shot has this shot's face,
    # found on that frame (no landmarks where the last shot's face was).
    for start in video.shot_starts[1:]:
        frame = next(iter_frames(video.path, start_index=start))
        own = FaceTracker().update(frame.image)
        assert own is not None
        assert float(np.abs(a.landmarks[start] - own).mean()) < 6.0


def test_four_shots_in_a_portrait_frame(tmp_path: Path) -> None:
    _needs_media()
    video = edited.portrait_cuts(tmp_path)  # woman B, man, woman A, man
    a = analyse(video.path)
    assert [s.start for s in a.shots] == video.shot_starts
    people = [sf.person for sf in a.shot_faces]
    assert people[1] == people[3] and len({people[0], people[1], people[2]}) == 3


def test_auto_picks_the_face_that_speaks(tmp_path: Path) -> None:
    _needs_media()
    video = edited.side_by_side(tmp_path)  # the speaker on the left, with their own sound
    a = analyse(video.path, FaceSetup("auto"), audio=True)
    (sf,) = a.shot_faces
    assert sf.chosen_by == "speaker" and sf.faces_seen == 2
    assert max(sf.speaker_scores) - min(sf.speaker_scores) > 0.2
    assert np.nanmean(a.landmarks[:, :, 0]) < 512  # the left face
    # The other person speaking: with the right clip's own sound, the right face.
    right = edited.side_by_side(tmp_path / "r", speaker=edited.KATIE, other=edited.FACE2)
    b = analyse(right.path, FaceSetup("auto"), audio=True)
    assert b.shot_faces[0].chosen_by == "speaker"
    assert np.nanmean(b.landmarks[:, :, 0]) < 512  # the speaker is now on the left again


def test_without_a_sound_track_auto_takes_the_largest(tmp_path: Path) -> None:
    _needs_media()
    video = edited.side_by_side(tmp_path)
    a = analyse(video.path, FaceSetup("auto"), audio=False)
    assert a.shot_faces[0].chosen_by == "largest"
    assert np.nanmean(a.landmarks[:, :, 0]) > 512  # the woman's face on the right is larger


def test_embeddings_tell_people_apart() -> None:
    img = mf.astronaut()
    lm = FaceTracker().update(img)
    assert lm is not None
    same = embed(img, lm)
    shifted = np.roll(img, 7, axis=1)
    again = embed(shifted, lm + np.array([7, 0], np.float32))
    assert same.shape == (128,) and float(np.linalg.norm(same - again)) < 0.3
    other = np.ascontiguousarray(img[:, ::-1])  # mirrored: still her
    assert group_people({0: [same], 1: [again]}) == {0: 0, 1: 0}
    far = same + 0.2  # no face is this far from her
    assert group_people({0: [same], 1: [far], 2: [again]}) == {0: 0, 1: 1, 2: 0}
    assert other.shape == img.shape


def test_frames_not_to_paint_on_are_found_and_a_steady_clip_has_none(tmp_path: Path) -> None:
    """The fast camera move (a zoom that pushes the mouth past the frame's edge, two frames
    whose face jumps by a third of its width): those frames, and only frames like them,
    are not to be painted on; a filmed talking head has none."""
    _needs_media()
    video = edited.fast_pan(tmp_path)
    a = analyse(video.path)
    reasons = set(a.untrusted.values())
    assert {"face_jumped", "mouth_at_edge"} <= reasons, a.untrusted
    height, width = mf.decode_video(video.path)[0].shape[:2]
    for i, why in a.untrusted.items():
        if why != "mouth_at_edge":
            continue
        lips = a.landmarks[i, 48:60]
        m = EDGE_MARGIN * float(np.linalg.norm(lips[6] - lips[0]))
        lo, hi = lips.min(axis=0) - m, lips.max(axis=0) + m
        assert lo.min() < 0 or hi[0] > width or hi[1] > height, (i, lo, hi)
    assert len(a.untrusted) < 0.25 * len(a.landmarks)  # most of the move is drawn
    steady = analyse(SHARED_MEDIA / edited.KATIE)
    assert steady.untrusted == {}
