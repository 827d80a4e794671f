"""What must not change, and does the mouth shimmer? Comparison of an output with the input
(``--reference``) it was made from.

* PSNR (RGB, over all compared frames) and SSIM (grey, Gaussian window of sigma 1.5, the
  usual constants) *outside the lower face*: the lower face is a face-aligned rectangle from
  just above the nose base to below the chin, 2.3 eye distances wide, placed with the
  reference's own 5 points (held over frames where its face is not found). Lip-sync may
  change that region; everything else should come through untouched (up to the
  re-encode).
* Mouth-region flicker: the mean absolute grey-level change of the face-aligned mouth patch
  from one frame to the next, for the output and for the reference. A generated mouth that
  shimmers scores higher than the input's own.

Frames are paired by index up to the shorter video; an output of another size is resized to
the reference's for the comparison.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.evaluate.mouth import FaceFrame, MouthTrack
from lipsync.media.decode import iter_frames

LOWER_FACE_X_D = (-1.15, 1.15)
LOWER_FACE_Y_D = (-0.25, 1.75)  # from the nose base, down; the chin is about 1.25 below
PSNR_CAP = 100.0


@dataclass(frozen=True)
class ReferenceResult:
    frames_compared: int
    psnr_outside_lower_face: float | None
    ssim_outside_lower_face: float | None
    mouth_flicker: float | None
    reference_mouth_flicker: float | None
    size_matched: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lower_face_mask(frame: FaceFrame | None, height: int, width: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros((height, width), np.uint8)
    if frame is not None:
        poly = frame.polygon(LOWER_FACE_X_D, LOWER_FACE_Y_D)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def _ssim_map(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(cv2.GaussianBlur(x, (11, 11), 1.5), np.float32)

    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a * mu_a
    sbb = blur(b * b) - mu_b * mu_b
    sab = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (saa + sbb + c2)
    return np.asarray(num / den, np.float32)


def compare_with_reference(
    output: Path, reference: Path, out_track: MouthTrack, ref_track: MouthTrack
) -> ReferenceResult:
    sq_err = 0.0
    count = 0
    ssim_sum = 0.0
    ssim_n = 0
    frames = 0
    size_matched = True
    held: FaceFrame | None = None
    for out_f, ref_f in zip(iter_frames(output), iter_frames(reference), strict=False):
        ref_img = ref_f.image
        out_img = out_f.image
        h, w = ref_img.shape[:2]
        if out_img.shape[:2] != (h, w):
            size_matched = False
            out_img = np.asarray(
                cv2.resize(out_img, (w, h), interpolation=cv2.INTER_AREA), np.uint8
            )
        held = ref_track.face_frame(ref_f.index) or held
        keep = ~lower_face_mask(held, h, w)
        if not keep.any():
            continue
        diff = out_img.astype(np.float32) - ref_img.astype(np.float32)
        sq_err += float(np.sum(diff[keep] ** 2))
        count += int(keep.sum()) * 3
        ga = cv2.cvtColor(out_img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gb = cv2.cvtColor(ref_img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        smap = _ssim_map(ga, gb)
        ssim_sum += float(smap[keep].sum())
        ssim_n += int(keep.sum())
        frames += 1
    psnr: float | None = None
    if count:
        mse = sq_err / count
        psnr = PSNR_CAP if mse <= 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))
    return ReferenceResult(
        frames_compared=frames,
        psnr_outside_lower_face=None if psnr is None else round(psnr, 3),
        ssim_outside_lower_face=round(ssim_sum / ssim_n, 5) if ssim_n else None,
        mouth_flicker=None if out_track.flicker is None else round(out_track.flicker, 4),
        reference_mouth_flicker=None if ref_track.flicker is None else round(ref_track.flicker, 4),
        size_matched=size_matched,
    )
