"""The occlusion mask where nothing is in front of the face, and objects kept in front.

    python -m benchmarks.occlusion                    # every shared clip, the five objects
    python -m benchmarks.occlusion --clips video_videoretalking_face4.mp4 --objects ""

Clean clips (the shared talking heads: nothing is in front of their mouths), analysed as
the pipeline analyses them (its default landmark model), the mask asked for over each
frame's lower face as the renderer asks for it:

* ``masked``: frames whose mask keeps the input's pixels on more than 2% of the lower face;
* ``below``: the largest share, over the frames, of the lower face below the mouth corners
  (no farther sideways than a quarter of a mouth width past them) that the mask keeps: where
  the engine moves the lips and the chin, a kept pixel shows the input's lower lip under the
  new one or its hair cut into a moved jaw line;
* ``covered``: frames taken for ones whose lips are hidden (they lend no mouth to
  ``retrieval``).

Objects: the KatieHill clip with an object over the mouth (``benchmarks.edited.occluded``),
rendered by the default engine: the largest mean change (0-255) of the object's pixels on
any frame and of its top edge (:func:`edge_change`), the frames the mask was applied to,
and how far the mouth still opens on the object's frames against the others
(:func:`articulation_kept`; issue 28 asks >= 0.7 where the mouth is partly covered).
Prints a markdown table; writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.common import SHARED_MEDIA

if TYPE_CHECKING:
    from lipsync.face.analysis import FaceAnalysis
    from lipsync.media.decode import DecodedFrame

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
OBJECTS = ("dark", "textured", "skin", "half", "full")
OBJECT_SPEECH = "audio_SadTalker_deyu_german.wav"
MASKED_SHARE = 0.02


@dataclass
class Clean:
    clip: str
    frames: int
    masked: int
    below: float
    covered: int


def lower_face_masks(
    video: Path, analysis: FaceAnalysis
) -> Iterator[tuple[DecodedFrame, F32, int, int, F32]]:
    """Per frame with a face: the frame, its landmarks, and the occlusion mask over the box
    of its lower face (x1, y1, mask), as the renderer asks for it."""
    from lipsync.face.geometry import lower_face_polygon
    from lipsync.media.decode import iter_frames
    from lipsync.occlusion import OcclusionMasker

    masker = OcclusionMasker(analysis.occlusion)
    for f in iter_frames(video):
        lm = analysis.landmarks[f.index]
        if not np.isfinite(lm).all():
            continue
        poly = lower_face_polygon(lm)
        x1, y1 = (int(v) for v in np.floor(poly.min(axis=0)))
        x2, y2 = (int(v) for v in np.ceil(poly.max(axis=0)))
        shot = int(analysis.shot_of[f.index])
        occ = masker.occlusion(f.image, lm, shot, x1, y1, y2 - y1, x2 - x1)
        if occ is None:
            raise RuntimeError(f"shot {shot} of {video.name} has no colour model")
        yield f, lm, x1, y1, occ


def regions(lm: F32, x1: int, y1: int, shape: tuple[int, int]) -> tuple[Mask, Mask]:
    """The lower face (within its jaw line) and its part below the mouth corners (no
    farther sideways than a quarter of a mouth width past them), in the box at x1, y1."""
    from lipsync.face.geometry import lower_face_polygon

    face = np.zeros(shape, np.uint8)
    poly = np.round(lower_face_polygon(lm, extend=0.0) - (x1, y1)).astype(np.int32)
    cv2.fillPoly(face, [poly], 1)
    below = face.copy()
    mouth_w = float(np.linalg.norm(lm[54] - lm[48]))
    below[: max(0, int(max(lm[48, 1], lm[54, 1])) - y1)] = 0
    below[:, : max(0, int(lm[48, 0] - 0.25 * mouth_w) - x1)] = 0
    below[:, max(0, int(lm[54, 0] + 0.25 * mouth_w) - x1) :] = 0
    return face > 0, below > 0


def analyse(video: Path) -> FaceAnalysis:
    """The face analysis of ``video`` as the pipeline makes it: its default landmark model
    (MediaPipe's mesh once set up, else dlib68), the occlusion colour models sampled."""
    from lipsync.face.analysis import FaceAnalyser, FaceSetup
    from lipsync.face.landmarks import create_landmarker
    from lipsync.media.decode import iter_frames
    from lipsync.options import RunOptions

    options = RunOptions()
    landmarker = create_landmarker(options.landmark_model, options.models_dir)
    analyser = FaceAnalyser(FaceSetup(), 25.0, occlusion=True, landmarker=landmarker)
    for frame in iter_frames(video, pixel_format="i420"):
        analyser.feed(frame)
    return analyser.finish()


def clean_clip(video: Path) -> Clean:
    """:class:`Clean` of one clip with nothing in front of the face."""
    analysis = analyse(video)
    frames, masked, below = 0, 0, 0.0
    for _, lm, x1, y1, occ in lower_face_masks(video, analysis):
        face, under = regions(lm, x1, y1, occ.shape[:2])
        kept = occ > 0.5
        frames += 1
        masked += int(float(kept[face].mean()) > MASKED_SHARE) if face.any() else 0
        if under.any():
            below = max(below, float(kept[under].mean()))
    return Clean(video.name, frames, masked, below, len(analysis.covered))


def object_change(video: Path, mask: Path, output: Path) -> list[float]:
    """Per frame with the object, the mean absolute difference inside it (0-255)."""
    from lipsync.media.decode import iter_frames

    out = []
    for a, b, m in zip(iter_frames(video), iter_frames(output), iter_frames(mask), strict=True):
        sel = m.image[..., 0] > 128
        if sel.any():
            out.append(float(np.abs(a.image[sel].astype(np.int16) - b.image[sel]).mean()))
    return out


EDGE_ROWS = 4  # the object's top edge: this many pixels down from its top in each column


def edge_change(video: Path, mask: Path, output: Path) -> list[float]:
    """Per frame with the object, the mean absolute difference (0-255) in its top edge
    (:data:`EDGE_ROWS` pixels down from its top, column by column): where a new lip or chin
    drawn over it shows as a bent edge, which the whole object's mean hides."""
    from lipsync.media.decode import iter_frames

    out = []
    for a, b, m in zip(iter_frames(video), iter_frames(output), iter_frames(mask), strict=True):
        sel = m.image[..., 0] > 128
        if not sel.any():
            continue
        top = sel.argmax(axis=0)
        rows = np.arange(sel.shape[0])[:, None]
        edge = sel & (rows >= top[None, :]) & (rows < top[None, :] + EDGE_ROWS)
        out.append(float(np.abs(a.image[edge].astype(np.int16) - b.image[edge]).mean()))
    return out


def articulation_kept(video: Path, mask: Path, output: Path) -> float | None:
    """How far the mouth still opens on the frames with the object, against the frames
    without it: the output's 90th-percentile aperture over the input's on the object's
    frames, over the same ratio on the others (the evaluator's aperture, its own face
    model). About 1: the visible mouth moves as much with the object as without it."""
    from lipsync.evaluate.reference import measure_with_reference
    from lipsync.media.decode import iter_frames

    covered = np.array([bool((m.image[..., 0] > 128).any()) for m in iter_frames(mask)])
    joint = measure_with_reference(output, video, fps=25.0, processes=1)
    n = min(len(joint.out), len(joint.ref), covered.size)
    out, ref, covered = joint.out.aperture[:n], joint.ref.aperture[:n], covered[:n]

    def ratio(sel: npt.NDArray[np.bool_]) -> float | None:
        ok = sel & ~np.isnan(out) & ~np.isnan(ref)
        if ok.sum() < 5:
            return None
        base = float(np.percentile(ref[ok], 90))
        return float(np.percentile(out[ok], 90)) / base if base > 0 else None

    with_object, without = ratio(covered), ratio(~covered)
    return None if with_object is None or not without else with_object / without


def object_case(kind: str, tmp: Path) -> tuple[float, float, int, float | None]:
    """The largest change of the object's pixels on any frame, and of its top edge
    (:func:`edge_change`), the frames masked, and the articulation kept on the object's
    frames (:func:`articulation_kept`)."""
    import lipsync
    from benchmarks import edited

    video, mask = edited.occluded(tmp, kind)
    result = lipsync.run(
        video, SHARED_MEDIA / OBJECT_SPEECH, tmp / f"{kind}_out.mp4", sync_mode="silence"
    )
    change = max(object_change(video, mask, result.output))
    edge = max(edge_change(video, mask, result.output))
    return change, edge, result.occluded_frames, articulation_kept(video, mask, result.output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", default=None, help="comma-separated (default: every video)")
    parser.add_argument("--objects", default=",".join(OBJECTS))
    args = parser.parse_args(argv)
    clips = (
        args.clips.split(",")
        if args.clips
        else sorted(p.name for p in SHARED_MEDIA.glob("video_*.mp4"))
    )
    print("| clean clip | frames | masked > 2% of the lower face | below the mouth | covered |")
    print("|---|---|---|---|---|")
    for name in clips:
        c = clean_clip(SHARED_MEDIA / name)
        share = 100 * c.masked / max(1, c.frames)
        row = [name, str(c.frames), f"{c.masked} ({share:.1f}%)", f"{100 * c.below:.1f}%"]
        print("| " + " | ".join([*row, str(c.covered)]) + " |")
    kinds = [k for k in args.objects.split(",") if k]
    if kinds:
        print(
            "\n| object | largest change of its pixels | of its top edge | frames masked "
            "| articulation with the object / without |"
        )
        print("|---|---|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for kind in kinds:
                change, edge, masked, kept = object_case(kind, Path(tmp))
                shown = "-" if kept is None else f"{kept:.2f}"
                print(f"| {kind} | {change:.2f} | {edge:.2f} | {masked} | {shown} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
