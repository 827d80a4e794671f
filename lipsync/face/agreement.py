"""How closely two landmark models agree on a video, and how fast each is.

``python -m lipsync.face.agreement CLIP [CLIP ...] [--json]`` follows the face of each clip
the way the face tracker does (dlib's HOG detector every ``detect_every`` frames on a copy
of at most 640x480 pixels; in between, the box from the previous frame's landmarks), once
per landmark model, and reports against the reference model (``dlib68``):

* ``mouth_nme``: mean distance of the 20 mouth points (48-67), ÷ the interocular distance
  (the reference's eye centres), in per cent; ``all_nme`` the same over all 68 points and
  ``jaw_nme`` over 0-16;
* ``gap_r``: Pearson r of the inner-lip gap (the engines' measure: points 61/67, 62/66,
  63/65 along the face's down axis, ÷ interocular distance) between the two models;
  ``gap_slope``: least-squares slope of the candidate's gap on the reference's;
  ``gap_mae``: mean absolute difference of the gaps (share of the interocular distance);
* ``closed_agreement``: share of frames both call the mouth closed or both open (gap
  under 0.05 interocular distances = closed);
* ``ms_per_frame``: mean wall time of one ``landmarks`` call (the detector excluded, the
  same for both), single thread.

Measures only: nothing here is used by a job.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lipsync.face.landmarks import BoxF, Landmarker, create_landmarker

CLOSED_GAP = 0.05  # inner-lip gap under this share of the interocular distance: closed
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))


@dataclass(frozen=True)
class Agreement:
    clip: str
    frames: int  # frames where both models gave landmarks
    mouth_nme: float
    all_nme: float
    jaw_nme: float
    gap_r: float
    gap_slope: float
    gap_mae: float
    closed_agreement: float
    ms_per_frame: dict[str, float]


def _gap(lm: npt.NDArray[np.float32], iod: float) -> float:
    from lipsync.face.geometry import face_axes

    _, down, _ = face_axes(lm)
    return float(
        np.mean([max(0.0, float(np.dot(lm[b] - lm[a], down))) for a, b in INNER_PAIRS]) / iod
    )


def follow(
    path: Path,
    landmarker: Landmarker,
    detect_every: int = 10,
    max_frames: int | None = None,
    detect_pixels: int = 640 * 480,
) -> tuple[list[npt.NDArray[np.float32] | None], float]:
    """Landmarks per frame (None where no face) and the mean seconds per landmarks call."""
    import cv2

    from lipsync.face.geometry import detector_like_box
    from lipsync.face.hog import HogDetector
    from lipsync.media.decode import iter_frames

    detector = HogDetector()
    out: list[npt.NDArray[np.float32] | None] = []
    box: BoxF | None = None
    spent, calls = 0.0, 0
    for frame in iter_frames(path, pixel_format="luma"):
        if max_frames is not None and frame.index >= max_frames:
            break
        gray = frame.image
        if box is None or frame.index % detect_every == 0:
            h, w = gray.shape
            scale = min(1.0, float(np.sqrt(detect_pixels / float(h * w))))
            small = (
                np.asarray(
                    cv2.resize(
                        gray, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA
                    ),
                    np.uint8,
                )
                if scale < 1.0
                else gray
            )
            boxes = detector.detect(small, 0) or detector.detect(small, 1)
            if boxes:
                x1, y1, x2, y2 = max(boxes, key=lambda b: b[2] - b[0])
                box = (x1 / scale, y1 / scale, x2 / scale, y2 / scale)
        if box is None:
            out.append(None)
            continue
        t0 = time.perf_counter()
        lm = landmarker.landmarks(gray, box)
        spent += time.perf_counter() - t0
        calls += 1
        out.append(lm)
        box = detector_like_box(lm)
    return out, spent / max(calls, 1)


def compare(
    path: Path,
    models_dir: Path,
    candidate: str = "mediapipe",
    reference: str = "dlib68",
    max_frames: int | None = None,
) -> Agreement:
    """The candidate's landmarks against the reference's on one clip (see the module)."""
    from lipsync.face.geometry import eye_centres

    ref, ref_s = follow(path, create_landmarker(reference, models_dir), max_frames=max_frames)
    cand, cand_s = follow(path, create_landmarker(candidate, models_dir), max_frames=max_frames)
    pairs = [(r, c) for r, c in zip(ref, cand, strict=False) if r is not None and c is not None]
    mouth, full, jaw, gr, gc = [], [], [], [], []
    for r, c in pairs:
        le, re = eye_centres(r)
        iod = float(np.linalg.norm(re - le)) or 1.0
        d = np.linalg.norm(r - c, axis=1) / iod
        mouth.append(d[48:68].mean())
        full.append(d.mean())
        jaw.append(d[0:17].mean())
        gr.append(_gap(r, iod))
        gc.append(_gap(c, iod))
    a, b = np.asarray(gr), np.asarray(gc)
    ok = len(a) > 2 and a.std() > 0 and b.std() > 0
    return Agreement(
        clip=path.name,
        frames=len(pairs),
        mouth_nme=round(100 * float(np.mean(mouth)), 2) if pairs else float("nan"),
        all_nme=round(100 * float(np.mean(full)), 2) if pairs else float("nan"),
        jaw_nme=round(100 * float(np.mean(jaw)), 2) if pairs else float("nan"),
        gap_r=round(float(np.corrcoef(a, b)[0, 1]), 3) if ok else float("nan"),
        gap_slope=round(float(np.polyfit(a, b, 1)[0]), 3) if ok else float("nan"),
        gap_mae=round(float(np.abs(a - b).mean()), 4) if pairs else float("nan"),
        closed_agreement=round(float(np.mean((a < CLOSED_GAP) == (b < CLOSED_GAP))), 3)
        if pairs
        else float("nan"),
        ms_per_frame={reference: round(1000 * ref_s, 3), candidate: round(1000 * cand_s, 3)},
    )


def main(argv: Sequence[str] | None = None) -> int:
    from lipsync.options import default_models_dir

    parser = argparse.ArgumentParser(prog="python -m lipsync.face.agreement")
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--candidate", default="mediapipe")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    models_dir = args.models_dir or default_models_dir()
    rows = [compare(c, models_dir, args.candidate, max_frames=args.max_frames) for c in args.clips]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    print(
        "clip  frames  mouth_nme%  all_nme%  jaw_nme%  gap_r  gap_slope  gap_mae  closed_agree  ms"
    )
    for r in rows:
        ms = " / ".join(f"{k} {v}" for k, v in r.ms_per_frame.items())
        print(
            f"{r.clip}  {r.frames}  {r.mouth_nme}  {r.all_nme}  {r.jaw_nme}  {r.gap_r}  "
            f"{r.gap_slope}  {r.gap_mae}  {r.closed_agreement}  {ms}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
