"""The evaluator's face finder on real frames from ../shared/media (skipped when absent):
the CNN runs on sampled frames and after a cut, the 5 points follow the face in between and
land where a detection on every frame puts them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.evaluate.faces import FaceFinder
from lipsync.media.decode import iter_frames
from tests import media_factory as mf

RGB = npt.NDArray[np.uint8]


def _frames(path: Path, n: int, size: int) -> list[RGB]:
    out = []
    for f in iter_frames(path):
        out.append(np.asarray(cv2.resize(f.image, (size, size), interpolation=cv2.INTER_AREA)))
        if len(out) == n:
            break
    return out


def test_sampled_detection_follows_the_face_and_redetects_at_a_cut(shared_media: Path) -> None:
    a = _frames(mf.shared_file(shared_media, "video_videoretalking_face2.mp4"), 40, 512)
    b = _frames(mf.shared_file(shared_media, "video_SadTalker_WDA_KatieHill_000.mp4"), 40, 512)
    frames = a + b  # one cut, at frame 40, to another person elsewhere in the picture
    sparse, dense = FaceFinder(detect_every=100), FaceFinder(detect_every=1)
    got_sparse = [sparse.update(f) for f in frames]
    got_dense = [dense.update(f) for f in frames]
    assert all(g is not None for g in got_sparse) and all(g is not None for g in got_dense)
    # The CNN ran on the first frame and at the cut only (a near-box miss there may add a
    # whole-frame pass), against once per frame for the dense finder.
    assert sparse.detections <= 4 and dense.detections >= len(frames)
    pts_sparse = np.array([g[0] for g in got_sparse if g is not None])
    pts_dense = np.array([g[0] for g in got_dense if g is not None])
    # Where the 5 points are: the same to within a few pixels of this 512 px frame, on
    # both people, so after the cut the finder is on the new face.
    err = np.abs(pts_sparse - pts_dense).max(axis=(1, 2))
    assert float(err.max()) <= 4.0, err
    nose_a, nose_b = pts_sparse[39, 4], pts_sparse[40, 4]
    assert float(np.linalg.norm(nose_a - nose_b)) > 20  # the two faces are apart


def test_a_box_hint_replaces_the_cnn(shared_media: Path) -> None:
    frames = _frames(mf.shared_file(shared_media, "video_videoretalking_face2.mp4"), 10, 512)
    own = FaceFinder()
    boxes = [own.update(f) for f in frames]
    hinted = FaceFinder()
    for f, got in zip(frames, boxes, strict=True):
        assert got is not None
        mine = hinted.update(f, hint=got[1])
        assert mine is not None
        assert float(np.abs(mine[0] - got[0]).max()) <= 2.0
    assert hinted.detections == 0


def test_a_face_too_small_for_the_first_pass_is_found_near_where_the_hog_sees_it() -> None:
    """A 1080x1920 portrait frame whose face is about 55 px in the whole-frame pass's copy
    (the CNN needs about 80): the finder looks near the face dlib's HOG detector sees
    (the tiled pass at twice the size, which it replaces there, took 8 s on such a frame
    on a 2-core CPU, and misses this face), and its box is the CNN's on the photo alone."""
    photo = cv2.resize(mf.astronaut(), (560, 560), interpolation=cv2.INTER_AREA)
    frame = np.full((1920, 1080, 3), 90, np.uint8)
    frame[900:1460, 300:860] = photo
    finder = FaceFinder()
    box = finder._detect_full(frame)
    # the first pass, then the CNN near the HOG's one face: no tiles
    assert box is not None and finder.detections == 2
    alone = FaceFinder()._run_detector(photo, 1.0)
    assert len(alone) == 1
    ref = tuple(v + d for v, d in zip(alone[0][0], (300, 900, 300, 900), strict=True))
    ix = max(0.0, min(box[2], ref[2]) - max(box[0], ref[0]))
    iy = max(0.0, min(box[3], ref[3]) - max(box[1], ref[1]))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (ref[2] - ref[0]) * (ref[3] - ref[1])
    assert ix * iy / (union - ix * iy) > 0.6, (box, ref)
    got = finder.update(frame)  # and the 5 points read in it land on the face
    assert got is not None
    assert ref[0] < got[0][4][0] < ref[2] and ref[1] < got[0][4][1] < ref[3]
