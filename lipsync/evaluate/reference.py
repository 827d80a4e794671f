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
* Articulation ratio: the output's 90th-percentile mouth aperture over its *speech* frames
  divided by the input's own 90th percentile over the input's speech frames: does the new
  mouth open as far as this person's does when they speak? Speech frames are the frames with
  a face whose centre falls in voice activity (silero-vad, as for the pauses): of the speech
  being evaluated for the output, of the input's own audio track for the input (all its face
  frames when it has no audio track or no voice activity in it). None, with a note, under
  :data:`MIN_FRAMES` frames on either side.
* Mouth sharpness ratio: the variance of the Laplacian (3x3 kernel) of the grey image inside
  the *lip box*, a face-aligned rectangle 1.2 eye distances wide from 0.1 to 1.0 eye
  distances below the nose base (the chin is about 1.25 below), placed with the reference's
  5 points of that frame and used on both videos, on the frames with a face in both;
  output / input compared at equal mouth opening (:func:`aperture_matched_ratio`): a mouth
  showing teeth has many more edges than a closed one, so a plain frame-by-frame ratio read
  0.5 for a sharp output that talked with its mouth shut where the input showed teeth. A
  blurred or smeared mouth scores below 1.

Frames are paired by index up to the shorter video; an output of another size is resized to
the reference's for the comparison. PSNR, SSIM and sharpness come from one pass over both
videos; flicker and articulation from the two mouth tracks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.evaluate.cancel import CancelPoll
from lipsync.evaluate.faces import BoxF, FaceFinder, detect_every_for
from lipsync.evaluate.flags import FrameFlags, summarise
from lipsync.evaluate.lipcolour import LIP_SHIFT, lip_colour_shift
from lipsync.evaluate.mouth import FaceFrame, MouthTrack, TrackBuilder
from lipsync.evaluate.occlusion import OCCLUDED_SHARE, OcclusionMeter
from lipsync.evaluate.outside import BLOCK_CHANGE, outside_change
from lipsync.media.decode import iter_frames
from lipsync.media.prefetch import Prefetch

LOWER_FACE_X_D = (-1.15, 1.15)
LOWER_FACE_Y_D = (-0.25, 1.75)  # from the nose base, down; the chin is about 1.25 below
PSNR_CAP = 100.0
LIP_BOX_X_D = (-0.6, 0.6)  # 1.2 eye distances wide, centred under the nose
LIP_BOX_Y_D = (0.1, 1.0)  # from just below the nose base to above the chin
ARTICULATION_PERCENTILE = 90
MIN_FRAMES = 10  # fewer speech (or matched) frames than this: no ratio
# Sharpness is compared within this many aperture classes (quantile bins of both videos'
# apertures), each needing this many frames of both.
SHARPNESS_BINS = 5
SHARPNESS_MIN_BIN = 3
SAME_FACE_DIFF = 20.0  # grey levels: the output's upper face is the reference's
SSIM_FRAMES = 20  # SSIM (the costliest per pair) is read on about this many frame pairs
SSIM_EVERY = 10  # or on every 10th when the frame count is unknown


@dataclass(frozen=True)
class ReferenceResult:
    frames_compared: int
    psnr_outside_lower_face: float | None
    ssim_outside_lower_face: float | None
    mouth_flicker: float | None
    reference_mouth_flicker: float | None
    size_matched: bool
    articulation_ratio: float | None = None
    output_speech_p90: float | None = None
    input_speech_p90: float | None = None
    output_speech_frames: int = 0
    input_speech_frames: int = 0
    input_speech_basis: str = ""
    articulation_note: str | None = None
    sharpness_ratio: float | None = None
    output_mouth_sharpness: float | None = None
    input_mouth_sharpness: float | None = None
    sharpness_frames: int = 0
    sharpness_note: str | None = None
    lip_colour: FrameFlags | None = None
    outside_change: FrameFlags | None = None
    occlusion: FrameFlags | None = None

    def to_dict(self) -> dict[str, Any]:
        flags = ("lip_colour", "outside_change", "occlusion")
        data = {k: v for k, v in asdict(self).items() if k not in flags}
        for k in flags:
            value = getattr(self, k)
            data[k] = None if value is None else value.to_dict()
        return data


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


@dataclass(frozen=True)
class Articulation:
    ratio: float | None
    output_p90: float | None
    input_p90: float | None
    output_frames: int
    input_frames: int
    note: str | None


def _p90(
    aperture: npt.NDArray[np.float32], speech: npt.NDArray[np.bool_] | None
) -> tuple[float | None, int]:
    use = ~np.isnan(aperture)
    if speech is not None:
        n = min(speech.size, use.size)
        use = use[:n] & speech[:n]
        aperture = aperture[:n]
    count = int(use.sum())
    if count < MIN_FRAMES:
        return None, count
    return float(np.percentile(aperture[use], ARTICULATION_PERCENTILE)), count


def articulation(
    out_aperture: npt.NDArray[np.float32],
    out_speech: npt.NDArray[np.bool_] | None,
    in_aperture: npt.NDArray[np.float32],
    in_speech: npt.NDArray[np.bool_] | None,
) -> Articulation:
    """The articulation ratio (see the module docstring); a speech mask of None means every
    frame with a face."""
    out_p90, out_n = _p90(out_aperture, out_speech)
    in_p90, in_n = _p90(in_aperture, in_speech)
    note: str | None = None
    ratio: float | None = None
    if out_p90 is None:
        note = f"only {out_n} output frames with a face and speech (need {MIN_FRAMES})"
    elif in_p90 is None:
        note = f"only {in_n} input frames with a face and speech (need {MIN_FRAMES})"
    elif in_p90 <= 1e-6:
        note = "the input's mouth reads closed on its speech frames"
    else:
        ratio = out_p90 / in_p90
    return Articulation(
        None if ratio is None else round(ratio, 4),
        None if out_p90 is None else round(out_p90, 4),
        None if in_p90 is None else round(in_p90, 4),
        out_n,
        in_n,
        note,
    )


def lip_box_sharpness(
    image: npt.NDArray[np.float32] | npt.NDArray[np.uint8], frame: FaceFrame
) -> float | None:
    """Variance of the Laplacian of ``image`` (grey, or RGB read in grey) inside the
    face-aligned lip box of ``frame``."""
    h, w = image.shape[:2]
    poly = frame.polygon(LIP_BOX_X_D, LIP_BOX_Y_D)
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in poly.min(axis=0))
    x1, y1 = int(min(w, np.ceil(poly[:, 0].max()) + 3)), int(min(h, np.ceil(poly[:, 1].max()) + 3))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    crop: npt.NDArray[np.float32] = np.asarray(image[y0:y1, x0:x1], np.float32)
    if crop.ndim == 3:  # only the box turned grey: a whole frame cost more than the rest
        crop = np.asarray(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), np.float32)
    mask = np.zeros(crop.shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly - np.array([x0, y0], np.float32)).astype(np.int32)], 1)
    inside = mask.astype(bool)
    if int(inside.sum()) < 16:
        return None
    lap = cv2.Laplacian(crop, cv2.CV_32F)
    return float(np.var(lap[inside]))


def aperture_matched_ratio(
    out_sharp: list[float], out_ap: list[float], ref_sharp: list[float], ref_ap: list[float]
) -> float | None:
    """Output / input lip-box sharpness, compared at equal mouth opening: a mouth showing
    teeth has far more edges than a closed one, so frame i of the output is not compared with
    frame i of the input (whose mouth may be in another state) but the frames of each
    aperture class (:data:`SHARPNESS_BINS` quantile bins of both videos' apertures together)
    with each other: the geometric mean of the per-class ratios of geometric means, weighted
    by the smaller side's count. None when no class has frames of both."""
    so, ao = np.log(np.maximum(np.asarray(out_sharp), 1e-6)), np.asarray(out_ap, np.float64)
    sr, ar = np.log(np.maximum(np.asarray(ref_sharp), 1e-6)), np.asarray(ref_ap, np.float64)
    ok_o, ok_r = np.isfinite(ao), np.isfinite(ar)
    so, ao, sr, ar = so[ok_o], ao[ok_o], sr[ok_r], ar[ok_r]
    if not len(ao) or not len(ar):
        return None
    edges = np.quantile(np.concatenate([ao, ar]), np.linspace(0, 1, SHARPNESS_BINS + 1))
    bo = np.clip(np.searchsorted(edges, ao, side="right") - 1, 0, SHARPNESS_BINS - 1)
    br = np.clip(np.searchsorted(edges, ar, side="right") - 1, 0, SHARPNESS_BINS - 1)
    num = den = 0.0
    for b in range(SHARPNESS_BINS):
        n_o, n_r = int(np.sum(bo == b)), int(np.sum(br == b))
        if n_o < SHARPNESS_MIN_BIN or n_r < SHARPNESS_MIN_BIN:
            continue
        wgt = float(min(n_o, n_r))
        num += wgt * float(so[bo == b].mean() - sr[br == b].mean())
        den += wgt
    return float(np.exp(num / den)) if den > 0 else None


@dataclass
class _Accumulated:
    """What one pass over the paired frames gathers."""

    sharp_out: list[float] = field(default_factory=list)  # lip-box sharpness, output
    sharp_ref: list[float] = field(default_factory=list)  # and the input, same frames
    sharp_at: list[tuple[int, int]] = field(default_factory=list)  # their (output, input) frames
    sq_err: float = 0.0  # outside the lower face
    count: int = 0  # values (pixels x 3) in sq_err
    ssim_sum: float = 0.0
    ssim_n: int = 0
    frames: int = 0  # frames with anything outside the lower face
    size_matched: bool = True
    lip_shift: dict[int, float] = field(default_factory=dict)  # frame -> a*b* distance
    outside: dict[int, float] = field(default_factory=dict)  # frame -> largest block change
    occlusion: OcclusionMeter = field(default_factory=OcclusionMeter)
    ssim_every: int = 1  # SSIM on every this many frame pairs

    def extend(self, later: _Accumulated) -> None:
        """Add what a pass over the frames after this one's gathered."""
        self.sharp_out += later.sharp_out
        self.sharp_ref += later.sharp_ref
        self.sharp_at += later.sharp_at
        self.sq_err += later.sq_err
        self.count += later.count
        self.ssim_sum += later.ssim_sum
        self.ssim_n += later.ssim_n
        self.frames += later.frames
        self.size_matched = self.size_matched and later.size_matched
        self.lip_shift.update(later.lip_shift)
        self.outside.update(later.outside)
        self.occlusion.values.update(later.occlusion.finish())


@dataclass(frozen=True)
class _Tracks:
    out: MouthTrack
    ref: MouthTrack


def _to_size(img: npt.NDArray[np.uint8], h: int, w: int) -> npt.NDArray[np.uint8]:
    """``img`` resized to ``w`` x ``h``: area averaging to shrink, bilinear to enlarge."""
    return np.asarray(
        cv2.resize(
            img,
            (w, h),
            interpolation=cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR,
        ),
        np.uint8,
    )


def _add_outside(
    acc: _Accumulated,
    images: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]],
    hole: npt.NDArray[np.float32] | None,
    with_ssim: bool,
    diff: npt.NDArray[np.uint8] | None = None,
) -> None:
    """Squared error (and, ``with_ssim``, SSIM) of the output and the reference outside
    the polygon ``hole`` (None: over the whole frame); ``diff``: their ``cv2.absdiff`` when
    the caller has it. The error is the whole frame's less the hole's, the hole drawn in
    its bounding box only (the same sums as over a whole-frame mask, for a third of the
    cost); a whole-frame mask is drawn for the SSIM only."""
    out_img, ref_img = images
    h, w = ref_img.shape[:2]
    if diff is None:
        diff = np.asarray(cv2.absdiff(out_img, ref_img), np.uint8)
    sq_err, kept = float(cv2.norm(diff, cv2.NORM_L2SQR)), h * w
    pts = None if hole is None else np.round(hole).astype(np.int32)
    if pts is not None:
        x0, y0 = (int(min(max(v, 0), lim)) for v, lim in zip(pts.min(axis=0), (w, h), strict=True))
        x1, y1 = (
            int(min(max(v + 1, 0), lim)) for v, lim in zip(pts.max(axis=0), (w, h), strict=True)
        )
        if x1 > x0 and y1 > y0:
            sub = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(sub, [pts - np.array([x0, y0], np.int32)], 1)
            kept -= int(cv2.countNonZero(sub))
            sq_err -= float(cv2.norm(diff[y0:y1, x0:x1], cv2.NORM_L2SQR, mask=sub))
    if not kept:
        return
    acc.sq_err += sq_err
    acc.count += kept * 3
    acc.frames += 1
    if with_ssim:
        keep = np.ones((h, w), np.uint8)
        if pts is not None:
            cv2.fillPoly(keep, [pts], 0)
        ga = cv2.cvtColor(out_img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gb = cv2.cvtColor(ref_img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        smap = _ssim_map(ga, gb)
        acc.ssim_sum += float(smap[keep > 0].sum())
        acc.ssim_n += kept


@dataclass(frozen=True)
class FramePair:
    """One output frame and the reference frame it is compared with, same size, and what
    the evaluator found in them."""

    index: int  # the output's frame index (= the reference's)
    out_img: npt.NDArray[np.uint8]
    ref_img: npt.NDArray[np.uint8]
    ref_face: FaceFrame | None  # the reference's face in this frame
    held_face: FaceFrame | None  # the same, held over frames where it is not found
    out_has_face: bool
    ref_patch: npt.NDArray[np.uint8] | None = None  # the reference's mouth patch, if known


def add_pair(acc: _Accumulated, pair: FramePair) -> None:
    """Everything one frame pair adds to the comparison."""
    face = pair.ref_face
    if face is not None and pair.out_has_face:
        sa, sb = lip_box_sharpness(pair.out_img, face), lip_box_sharpness(pair.ref_img, face)
        if sa is not None and sb is not None:
            acc.sharp_out.append(sa)
            acc.sharp_ref.append(sb)
            acc.sharp_at.append((pair.index, pair.index))
    if face is not None:
        shift = lip_colour_shift(pair.out_img, pair.ref_img, face, pair.ref_patch)
        if shift is not None:
            acc.lip_shift[pair.index] = shift
        acc.occlusion.add(pair.index, pair.out_img, pair.ref_img, face)
    diff = np.asarray(cv2.absdiff(pair.out_img, pair.ref_img), np.uint8)  # read twice below
    acc.outside[pair.index] = outside_change(pair.out_img, pair.ref_img, face, diff=diff)
    hole = None
    if pair.held_face is not None:
        hole = pair.held_face.polygon(LOWER_FACE_X_D, LOWER_FACE_Y_D)
    with_ssim = pair.index % acc.ssim_every == 0
    _add_outside(acc, (pair.out_img, pair.ref_img), hole, with_ssim, diff)


def _compare_frames(output: Path, reference: Path, tracks: _Tracks) -> _Accumulated:
    """One pass over both videos, frames paired by index up to the shorter one."""
    acc = _Accumulated()
    held: FaceFrame | None = None
    for out_f, ref_f in zip(iter_frames(output), iter_frames(reference), strict=False):
        ref_img = ref_f.image
        out_img = out_f.image
        h, w = ref_img.shape[:2]
        if out_img.shape[:2] != (h, w):
            acc.size_matched = False
            out_img = _to_size(out_img, h, w)
        here = tracks.ref.face_frame(ref_f.index)
        held = here or held
        out_face = out_f.index < len(tracks.out) and bool(tracks.out.found[out_f.index])
        add_pair(acc, FramePair(out_f.index, out_img, ref_img, here, held, out_face))
    return acc


def _psnr(sq_err: float, count: int) -> float | None:
    if not count:
        return None
    mse = sq_err / count
    return PSNR_CAP if mse <= 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


@dataclass(frozen=True)
class Sharpness:
    ratio: float | None
    output_mean: float | None
    input_mean: float | None
    frames: int
    note: str | None


def _sharpness(acc: _Accumulated, tracks: _Tracks) -> Sharpness:
    """The mouth sharpness ratio (see the module docstring) from the matched frames."""
    ratio: float | None = None
    mean_out = float(np.mean(acc.sharp_out)) if acc.sharp_out else None
    mean_ref = float(np.mean(acc.sharp_ref)) if acc.sharp_ref else None
    note: str | None = None
    if len(acc.sharp_out) < MIN_FRAMES:
        note = f"only {len(acc.sharp_out)} matched frames with a face in both (need {MIN_FRAMES})"
    elif mean_ref is None or mean_ref <= 1e-9:
        note = "the input's lip box is flat (no texture)"
    else:
        ap_out = [float(tracks.out.aperture[i]) for i, _ in acc.sharp_at]
        ap_ref = [float(tracks.ref.aperture[j]) for _, j in acc.sharp_at]
        ratio = aperture_matched_ratio(acc.sharp_out, ap_out, acc.sharp_ref, ap_ref)
        if ratio is None:
            note = "no mouth opening shared by enough frames of both videos"
    return Sharpness(
        None if ratio is None else round(ratio, 4),
        None if mean_out is None else round(mean_out, 3),
        None if mean_ref is None else round(mean_ref, 3),
        len(acc.sharp_out),
        note,
    )


def compare_with_reference(
    output: Path,
    reference: Path,
    out_track: MouthTrack,
    ref_track: MouthTrack,
    out_speech: npt.NDArray[np.bool_] | None = None,
    ref_speech: npt.NDArray[np.bool_] | None = None,
    ref_speech_basis: str = "all face frames",
) -> ReferenceResult:
    """Compare ``output`` with the ``reference`` it was made from, given both mouth tracks
    (one more pass over both videos; :func:`measure_with_reference` does it all in one).
    ``out_speech`` / ``ref_speech``: which frames are speech, for the articulation ratio
    (None: every frame with a face); ``ref_speech_basis`` says how the reference's were
    chosen."""
    tracks = _Tracks(out_track, ref_track)
    acc = _compare_frames(output, reference, tracks)
    return reference_result(acc, tracks, out_speech, ref_speech, ref_speech_basis)


def reference_result(
    acc: _Accumulated,
    tracks: _Tracks,
    out_speech: npt.NDArray[np.bool_] | None,
    ref_speech: npt.NDArray[np.bool_] | None,
    ref_speech_basis: str,
) -> ReferenceResult:
    """The :class:`ReferenceResult` of a finished pass."""
    out_track, ref_track = tracks.out, tracks.ref
    art = articulation(out_track.aperture, out_speech, ref_track.aperture, ref_speech)
    psnr = _psnr(acc.sq_err, acc.count)
    sharp = _sharpness(acc, tracks)
    return ReferenceResult(
        frames_compared=acc.frames,
        psnr_outside_lower_face=None if psnr is None else round(psnr, 3),
        ssim_outside_lower_face=round(acc.ssim_sum / acc.ssim_n, 5) if acc.ssim_n else None,
        mouth_flicker=None if out_track.flicker is None else round(out_track.flicker, 4),
        reference_mouth_flicker=None if ref_track.flicker is None else round(ref_track.flicker, 4),
        size_matched=acc.size_matched,
        articulation_ratio=art.ratio,
        output_speech_p90=art.output_p90,
        input_speech_p90=art.input_p90,
        output_speech_frames=art.output_frames,
        input_speech_frames=art.input_frames,
        input_speech_basis=ref_speech_basis,
        articulation_note=art.note,
        sharpness_ratio=sharp.ratio,
        output_mouth_sharpness=sharp.output_mean,
        input_mouth_sharpness=sharp.input_mean,
        sharpness_frames=sharp.frames,
        sharpness_note=sharp.note,
        lip_colour=summarise(acc.lip_shift, LIP_SHIFT),
        outside_change=summarise(acc.outside, BLOCK_CHANGE),
        occlusion=summarise(acc.occlusion.finish(), OCCLUDED_SHARE, nd=4),
    )


@dataclass(frozen=True)
class JointPass:
    """What :func:`measure_with_reference` gathers: both mouth tracks and the comparison
    (turned into a :class:`ReferenceResult` by :meth:`result` once the speech frames are
    known)."""

    out: MouthTrack
    ref: MouthTrack
    acc: _Accumulated
    detections: int  # CNN face detections run, on both videos together
    processes: int = 1  # how many processes measured it (:mod:`.halves`)
    also: Any = None  # what measure_with_reference's ``also`` gave

    def result(
        self,
        out_speech: npt.NDArray[np.bool_] | None = None,
        ref_speech: npt.NDArray[np.bool_] | None = None,
        ref_speech_basis: str = "all face frames",
    ) -> ReferenceResult:
        return reference_result(
            self.acc, _Tracks(self.out, self.ref), out_speech, ref_speech, ref_speech_basis
        )


def _scaled_box(box: BoxF | None, sx: float, sy: float) -> BoxF | None:
    if box is None:
        return None
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def _same_upper_face(
    out_img: npt.NDArray[np.uint8], ref_img: npt.NDArray[np.uint8], box: BoxF
) -> bool:
    """Whether the output shows the reference's face in the upper half of ``box`` (eyes,
    brows: what lip-sync leaves alone), so that the reference's box may stand in for a
    detection on the output: mean absolute grey difference under :data:`SAME_FACE_DIFF`.
    The 5-point model finds "points" in any box, a black frame's included."""
    h, w = ref_img.shape[:2]
    x0, y0 = int(max(0, box[0])), int(max(0, box[1]))
    x1, y1 = int(min(w, box[2])), int(min(h, (box[1] + box[3]) / 2))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return False
    if out_img.shape[:2] != (h, w):
        out_img = _to_size(out_img, h, w)
    a, b = (
        cv2.cvtColor(np.ascontiguousarray(img[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        for img in (out_img, ref_img)
    )
    return float(cv2.absdiff(a, b).mean()) < SAME_FACE_DIFF


@dataclass
class Part:
    """What one pass over a stretch of frame pairs gathers (:func:`measure_part`); the
    parts of one video pair, in order, make a :class:`JointPass` (:func:`join_parts`)."""

    out: TrackBuilder
    ref: TrackBuilder
    acc: _Accumulated
    detections: int
    pid: int = 0  # the process that measured it
    #: (output, reference) times of the first and the last frame pair measured, as
    #: :func:`~lipsync.media.decode.iter_frames` reports them (None: no pair)
    first_times: tuple[float, float] | None = None
    last_times: tuple[float, float] | None = None


@contextmanager
def _opencv_threads(threads: int) -> Iterator[None]:
    """OpenCV's threads set to ``threads`` inside (0: left as they are), restored after."""
    before = cv2.getNumThreads()
    if threads:
        cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def measure_part(
    output: Path,
    reference: Path,
    fps: float,
    ref_fps: float,
    ssim_every: int,
    poll: Callable[[], None],
    start: int = 0,
    stop: int | None = None,
    *,
    seed: Callable[[], BoxF | None] | None = None,
    first_box: Callable[[BoxF | None], None] | None = None,
    threads: int = 0,
    start_times: tuple[float, float] | None = None,
) -> Part:
    """Frame pairs ``start`` .. ``stop`` (None: to the end of both videos; then a longer
    video's tail is measured too) of ``output`` and ``reference`` (see
    :func:`measure_with_reference`). Frames before ``start`` are decoded but not
    converted: the pairs stay paired by index whatever the videos' timestamps; with
    ``start_times`` (the times of frame ``start`` in the output and the reference, from
    their packets) each decoder seeks to the keyframe before it instead, and the caller
    checks the pairing by the parts' ``first_times`` and ``last_times``. ``seed``:
    asked once, where the reference's face was seen elsewhere (:class:`.faces.FaceFinder`);
    ``first_box``: told the reference's face box in the first frame (None: no face);
    ``threads``: 1 when another process measures beside this one: the decoders and
    OpenCV then work on one thread each (fewer threads fighting over the cores: 4% less
    wall time on a 2-core machine), 0 their own choice."""
    out_t, ref_t = start_times if start_times is not None else (None, None)
    first_times: tuple[float, float] | None = None
    last_times: tuple[float, float] | None = None
    ref_finder = FaceFinder(detect_every_for(ref_fps), poll=poll, seed=seed)
    out_finder = FaceFinder(detect_every_for(fps), poll=poll)
    out_b, ref_b = TrackBuilder(fps), TrackBuilder(ref_fps)
    acc = _Accumulated(ssim_every=ssim_every)
    held: FaceFrame | None = None
    with (
        _opencv_threads(threads),
        Prefetch(
            iter_frames(output, start, out_t, threads=threads), name="evaluate-output"
        ) as outs,
        Prefetch(
            iter_frames(reference, start, ref_t, threads=threads), name="evaluate-reference"
        ) as refs,
    ):
        ref_iter = iter(refs)
        for out_f in outs:
            if stop is not None and out_f.index >= stop:
                break
            poll()
            out_img = out_f.image
            ref_f = next(ref_iter, None)
            if ref_f is None:  # the output is longer: its own face only
                out_b.add(out_img, out_finder.update(out_img))
                continue
            last_times = (out_f.time_s, ref_f.time_s)
            first_times = first_times or last_times
            ref_img = ref_f.image
            h, w = ref_img.shape[:2]
            oh, ow = out_img.shape[:2]
            ref_got = ref_finder.update(ref_img)
            if first_box is not None:
                first_box(None if ref_got is None else ref_got[1])
                first_box = None
            ref_patch = ref_b.add(ref_img, ref_got)
            hint = None
            if ref_got is not None and _same_upper_face(out_img, ref_img, ref_got[1]):
                hint = _scaled_box(ref_got[1], ow / w, oh / h)
            out_got = out_finder.update(out_img, hint=hint)
            out_b.add(out_img, out_got)
            if (oh, ow) != (h, w):
                acc.size_matched = False
                out_img = _to_size(out_img, h, w)
            here = None if ref_got is None else FaceFrame.from_points(ref_got[0])
            held = here or held
            found = out_got is not None
            pair = FramePair(out_f.index, out_img, ref_img, here, held, found, ref_patch)
            add_pair(acc, pair)
        if stop is None:
            for ref_f in ref_iter:  # the reference is longer: its track goes on
                poll()
                ref_b.add(ref_f.image, ref_finder.update(ref_f.image))
    acc.occlusion.finish()
    detections = ref_finder.detections + out_finder.detections
    return Part(out_b, ref_b, acc, detections, os.getpid(), first_times, last_times)


def join_parts(parts: list[Part]) -> JointPass:
    """The :class:`JointPass` of consecutive parts of one video pair."""
    first, rest = parts[0], parts[1:]
    for part in rest:
        first.out.extend(part.out)
        first.ref.extend(part.ref)
        first.acc.extend(part.acc)
        first.detections += part.detections
    return JointPass(
        first.out.finish(),
        first.ref.finish(),
        first.acc,
        first.detections,
        len({first.pid, *(part.pid for part in rest)}),
    )


def measure_with_reference(
    output: Path,
    reference: Path,
    fps: float = 25.0,
    ref_fps: float | None = None,
    frames: int = 0,
    *,
    should_cancel: Callable[[], bool] | None = None,
    processes: int | None = None,
    also: Callable[[], Any] | None = None,
) -> JointPass:
    """One pass over ``output`` and the ``reference`` it was made from, frames paired by
    index: the mouth track of each (as :func:`.mouth.measure_mouth` measures it) and the
    comparison of :func:`compare_with_reference`. Both decoders run ahead on threads of
    their own. The CNN face detector runs on the reference's sampled frames; the output's
    face is followed with its own 5 points, re-anchored on the reference's box of the same
    frame (an output of another size: the box scaled) where its upper face is the
    reference's (:func:`_same_upper_face`), and detected on its own where it is not, where
    that box gives no plausible face, or past the reference's last frame. ``frames``: the
    output's frame count when known, so that SSIM is read on about :data:`SSIM_FRAMES`
    evenly spread frame pairs (0: on every :data:`SSIM_EVERY`-th), and so that a long
    video's later frames can be measured by a second process at the same time
    (:mod:`.halves`; ``processes``: 1 keeps it all in this one, None decides by the
    frame count and the CPUs). ``also``: a picklable work to run beside (in the second
    process before its frames, else here after the pass); what it gives is
    :attr:`JointPass.also`. ``should_cancel`` is polled as frames go
    (:class:`lipsync.errors.Canceled`)."""
    from lipsync.evaluate.halves import measure_in_halves, split_at

    rfps = ref_fps if ref_fps else fps
    poll = CancelPoll(should_cancel)
    every = max(1, frames // SSIM_FRAMES) if frames > 0 else SSIM_EVERY
    at = split_at(frames, processes)
    if at is None:
        joint = join_parts([measure_part(output, reference, fps, rfps, every, poll)])
        extra = None if also is None else also()
    else:
        parts, extra = measure_in_halves(output, reference, fps, rfps, every, poll, at, also)
        joint = join_parts(parts)
    return replace(joint, also=extra)
