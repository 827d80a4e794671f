"""``retrieval``: photoreal and weight-free; the mouths come from the person's own frames.

In the spirit of Video Rewrite (Bregler, Covell, Slaney, SIGGRAPH 1997): instead of
drawing a mouth, re-use one the input video already shows, with this person's real lips
and teeth in this lighting.

1. **Index** (:mod:`lipsync.engines.retrieval_index`, once per job in
   :meth:`RetrievalEngine.prepare_source`): pose- and scale-normalised mouth geometry of
   every source frame; crops and appearance descriptors of a bounded candidate set.
2. **Target shapes** from the new speech: :func:`lipsync.audio.visemes.analyse` gives the
   opening and spreading per output frame; they are mapped onto this person's range of
   mouth shapes. When the video has its own speech, the mapping is calibrated on the
   person's own audio/video pairs: a quantile map from speech opening to this person's
   lip gap, and a small ridge regression over audio features that is used only when
   blocked cross-validation shows it predicts better. The wanted opening is scaled by the
   vowel's openness (first-formant height: open vowels wider, close vowels and p/b/m near
   shut) and smoothed over about a frame, keeping every closure.
3. **Choice** of a source mouth per output frame by Viterbi over a few candidates per
   frame: shape match against continuity (playing the source forward is free, holding or
   stepping back costs a little, a jump costs more the more the two mouths look
   different). The head pose of the frame being rendered joins the cost batch by batch,
   with the rest of the sequence summarised by a backward pass (cost-to-go).
4. **Rendering**: the chosen mouth crop is mapped onto the face by the similarity that
   aligns the two frames' rigid points (eye corners, nose), refined by registering the
   nose base and the skin beside it (ECC: a rotation and shift, sub-pixel); where the
   wanted opening differs a little from the chosen mouth's, its lips are opened or closed
   the rest of the way by a small warp. The target frame's lower face is warped (the
   viseme engine's warp, by the outer lips and the jaw: the inside of the mouth is painted
   over, and the closed inner lips as warp points bent the field into the chin) so its own
   lips and jaw take that geometry, leaving no trace of its old mouth; the crop's colour
   and lighting are matched to the target on a ring of skin around the mouth (a
   per-channel gain that may vary linearly across the face, filtered over time while a
   source run plays on), and it is blended with a feathered ellipse from under the nose
   to above the chin.

Still images and videos without enough mouth variety fall back to the ``viseme`` engine;
:meth:`RetrievalEngine.info` says which path ran and why.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d

from lipsync.audio.visemes import MouthTrack, analyse
from lipsync.engines.base import Engine, EngineContext, SourceVideo
from lipsync.engines.retrieval_index import (
    MASK_ACROSS,
    RIGID,
    MouthIndex,
    apply,
    build_index,
    compose,
    ellipse_box,
    measure,
    mouth_ellipse,
    nose_box,
    similarity,
)
from lipsync.engines.viseme import GAP_FLOOR as VISEME_GAP_FLOOR
from lipsync.engines.viseme import GAP_MAX as VISEME_GAP_MAX
from lipsync.engines.viseme import VisemeEngine, inner_gap, open_mouth
from lipsync.face.geometry import face_axes
from lipsync.types import FaceObs, Patch, RGBImage

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# -- when to fall back ---------------------------------------------------------------------
MIN_CANDIDATES = 25  # usable face frames
MIN_GAP_RANGE = 0.10  # q95 - q05 of the lip gap, interocular units
MAX_CLOSED_GAP = 0.10  # the most closed mouth must be at least this closed
# The wanted openings over the new speech take this person's own distribution of openings
# over their own speech (a quantile map of the drive's ranks), so the mouth opens as wide as
# theirs does when they talk - not wider, not half as wide - whatever the new voice's level.
# This many quantiles describe the person's distribution.
N_QUANTILES = 101
ARTICULATION = 1.05  # the person's openings are scaled by this (smoothing takes a little)
MIN_SPEECH_FRAMES = 25  # fewer speech frames in the new speech: the fixed curve below
GAMMA = 1.3  # fixed curve (too little speech to rank): > 1 keeps small openings nearer shut
MIN_REGRESSION_R2 = 0.3  # the calibration regression is used only when it predicts this well
# Wanted openings are smoothed over this many frames (sigma), closures kept: the small
# frame-to-frame wiggles of the speech's loudness made the mouth twitch (flicker) without
# making open vowels more open or p/b/m more closed.
TARGET_SIGMA = 0.6
# How much the vowel's openness (first-formant height, 0..1) scales the drive before it is
# ranked: x max(0, 1 + VOWEL_EMPHASIS * (height - 0.5)), so open vowels rank higher than
# close vowels and consonants. Strong emphasis (5.0) raised the open-vowel/p/b/m contrast but
# decoupled the mouth from the speech's loudness (sync score 0.52 against viseme's 0.74).
VOWEL_EMPHASIS = 1.0


# -- choice --------------------------------------------------------------------------------
TOP_K = 12  # best-matching candidates considered per frame
MAX_STATES = 28  # with the continuations of the previous frame's states
CONTINUE = (0, 1, 2)  # source steps from each state kept as candidates of the next frame
W_WIDTH = 0.25  # weight of the width mismatch against the openness mismatch
# Weight of the mismatch of the opening read from the pixels (what a viewer sees; the
# landmarks miss a slightly parted mouth): at 0.5 the mouths chosen on face4 matched the
# wanted landmark gap (r 0.93) but not the visible opening, and the sync score read 0.43.
W_OPENING = 2.0
W_BLUR = 0.5  # cost of a mouth e times blurrier than others as open
W_POSE = 0.6  # weight of the head-pose mismatch (yaw, pitch)
POSE_SIGMA = (0.05, 0.04)  # yaw, pitch units that cost 1
# ...and of its square beyond the pose gate's first threshold: a mouth the gate would fade
# out is taken only when no mouth of a close pose fits at all.
W_POSE_GATE = 20.0
C_NEXT = 0.0  # play the source forward
C_SKIP = 0.25  # skip one source frame
C_HOLD = (0.2, 2.0)  # show the same mouth again: in silence, in speech (a frozen mouth)
C_BACK = 1.2  # step back one frame
C_JUMP = 4.0  # cut to another part of the video...
W_JUMP_LOOK = 6.0  # ...plus this times the difference in look of the two mouths

# -- pose gate -----------------------------------------------------------------------------
# A source mouth is pasted only where its head pose is close to the frame's: a mouth from a
# head turned or tilted otherwise is a 2D picture of other 3D lips, and no similarity puts it
# right (the "second pair of lips" below the real ones). The mismatch is measured in these
# units: yaw (nose tip off the jaw's middle, share of the jaw width), pitch (nose base
# below the eye line, interocular units; a wide smile lifts it a little too, so it is looser
# than POSE_SIGMA's), roll in radians, and the log of how much the crop is magnified (a
# mouth blown up from a smaller face is a blurred one).
GATE_SIGMA = (0.05, 0.06, 0.15, float(np.log(1.4)))
# Mismatch (the root of the summed squares) up to which the source mouth is used in full,
# and from which only the frame's own mouth, warped and drawn as the viseme engine does.
GATE_RANGE = (1.5, 3.0)
# The switch between the two eases over this many frames: the share of the source mouth
# changes by at most 1/GATE_EASE a frame (ahead of a frame that needs its own mouth, within
# the batch it is in).
GATE_EASE = 3

# -- rendering -----------------------------------------------------------------------------
# Share of the remaining gap error the chosen mouth is warped by: (closing, opening).
RESIDUAL = (1.0, 0.8)
OPEN_EXTRA = 0.5  # the chosen mouth may be opened by at most this share of its own gap
REGISTER_MAX = 0.12  # largest registration shift trusted, interocular units
REGISTER_MAX_ANGLE = 0.1  # largest registration rotation trusted, radians
REGISTER_MIN_CC = 0.5  # least correlation of the registered patches
REGISTER_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
ALPHA_CORE = 0.55  # share of the mask ellipse kept at full strength
GAIN_RANGE = (0.6, 1.6)
COLOUR_GAIN = 0.15  # share of a new colour fit taken while a source run plays on
# Jaw points follow the chin's displacement with these weights (the viseme engine's jaw
# weights, relative to the chin).
JAW_W = {8: 1.0, 7: 0.9, 9: 0.9, 6: 0.68, 10: 0.68, 5: 0.39, 11: 0.39, 4: 0.13, 12: 0.13}


# -- speech features -----------------------------------------------------------------------
def speech_features(track: MouthTrack) -> F32:
    """Per-frame features for the calibration regression: the viseme model's opening,
    spreading and voice activity at -2..+2 frames. Only these speaker-independent features
    are used: spectral ones fit the person's own recording well but carry over badly to
    another voice."""
    base = np.stack([track.open, track.spread, track.speech], axis=1)
    cols = [np.roll(base, -lag, axis=0) for lag in (-2, -1, 0, 1, 2)]
    return np.concatenate(cols, axis=1).astype(np.float32)


def _ridge(x: F64, y: F64, alpha: float) -> F64:
    xa = np.hstack([x, np.ones((len(x), 1))])
    reg = alpha * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    coef: F64 = np.asarray(np.linalg.solve(xa.T @ xa + reg, xa.T @ y), np.float64)
    return coef


def _ridge_predict(x: F64, coef: F64) -> F64:
    out: F64 = x @ coef[:-1] + coef[-1]
    return out


def _quantile_map(src: F64, dst: F64) -> tuple[F64, F64]:
    q = np.linspace(0, 100, 21)
    xs = np.percentile(src, q)
    ys = np.percentile(dst, q)
    xs = np.maximum.accumulate(xs + np.arange(len(xs)) * 1e-9)
    return xs, np.maximum.accumulate(ys)


def _r2(y: F64, pred: F64) -> float:
    ss = float(((y - y.mean()) ** 2).sum()) or 1e-12
    return 1.0 - float(((y - pred) ** 2).sum()) / ss


def _ranks(values: F64, reference: F64) -> F64:
    """Mid-rank of each value among ``reference`` (its empirical CDF), 0..1."""
    ref = np.sort(reference)
    lo = np.searchsorted(ref, values, side="left")
    hi = np.searchsorted(ref, values, side="right")
    out: F64 = (lo + hi) / (2.0 * max(len(ref), 1))
    return out


@dataclass
class ShapeModel:
    """Speech -> (lip gap, mouth width) for one person, in template units.

    The new speech gives a *drive* per frame (the viseme model's opening, or a regression
    calibrated on the person's own audio/video pairs), emphasised by the vowel's openness;
    its rank among the new speech's talking frames picks the same quantile of the person's
    own lip gaps over their own speech (``speech_gaps``). Pauses take the closed mouth.
    """

    kind: str  # "default" | "quantile" | "regression": what the drive is
    g_closed: float
    g_open: float
    width_coef: F64  # width = c0 + c1 * gap + c2 * spread
    speech_gaps: F64  # N_QUANTILES quantiles of the person's gap while they speak
    reg_coef: F64 | None = None
    mu: F64 | None = None
    sd: F64 | None = None
    cv_r2: dict[str, float] | None = None

    def drive(self, track: MouthTrack, feats: F32) -> F64:
        raw: F64 = track.open.astype(np.float64)
        if self.kind == "regression" and self.reg_coef is not None:
            assert self.mu is not None and self.sd is not None
            raw = _ridge_predict((feats - self.mu) / self.sd, self.reg_coef)
        if VOWEL_EMPHASIS and track.height is not None:
            # Open vowels open the jaw further than close vowels and consonants do.
            factor = 1.0 + VOWEL_EMPHASIS * (track.height.astype(np.float64) - 0.5)
            raw = raw * np.maximum(factor, 0.0)
        return raw

    def predict(self, track: MouthTrack, feats: F32) -> tuple[F32, F32]:
        open_ = track.open.astype(np.float64)
        pause = (open_ < 0.03) & (track.speech < 0.5)
        talking = (track.speech >= 0.5) & ~pause
        qs = np.linspace(0.0, 1.0, len(self.speech_gaps))
        if int(talking.sum()) >= MIN_SPEECH_FRAMES:
            drive = self.drive(track, feats)
            u = _ranks(drive, drive[talking])
        else:
            u = np.clip(open_, 0.0, 1.0) ** GAMMA
        gap = np.interp(u, qs, self.speech_gaps)
        gap = self.g_closed + ARTICULATION * (gap - self.g_closed)
        gap = np.where(pause, self.g_closed, gap)
        gap = np.clip(gap, self.g_closed, self.g_open)
        c = self.width_coef
        width = c[0] + c[1] * gap + c[2] * track.spread
        return gap.astype(np.float32), width.astype(np.float32)


def fit_shape_model(
    index: MouthIndex, own: tuple[MouthTrack, F32] | None, frame_times: F64, fps: float
) -> ShapeModel:
    """This person's mapping from speech to mouth shape (see :class:`ShapeModel`)."""
    ok = np.isfinite(index.shape.gap)
    cand = index.candidates
    g_all = index.shape.gap[cand] if len(cand) else index.shape.gap[ok]
    g_closed = float(np.percentile(g_all, 2))
    g_open = float(np.max(g_all))
    qs = np.linspace(0, 100, N_QUANTILES)
    gap = index.shape.gap.astype(np.float64)
    width = index.shape.width.astype(np.float64)
    # Width from gap (opening narrows the mouth a little); spreading adds the residual.
    xw = np.stack([np.ones(ok.sum()), gap[ok]], axis=1)
    cw, *_ = np.linalg.lstsq(xw, width[ok], rcond=None)
    resid = float(np.std(width[ok] - xw @ cw))
    model = ShapeModel(
        "default",
        g_closed,
        g_open,
        np.array([cw[0], cw[1], resid]),
        np.percentile(g_all.astype(np.float64), qs),
    )
    if own is None:
        return model
    track, feats = own
    # Source frame f sits at frame_times[f] on the own track's frame grid.
    t0 = float(frame_times[0]) if len(frame_times) else 0.0
    row = np.clip(np.round((frame_times - t0) * fps).astype(int), 0, len(track) - 1)
    speech = (track.speech[row] > 0.5) & ok
    if speech.sum() < MIN_SPEECH_FRAMES:
        return model
    model.speech_gaps = np.percentile(gap[speech], qs)
    # Width with the speech's spreading, on the person's own pairs.
    sp = track.spread[row].astype(np.float64)
    xw2 = np.stack([np.ones(speech.sum()), gap[speech], sp[speech]], axis=1)
    cw2, *_ = np.linalg.lstsq(xw2, width[speech], rcond=None)
    if cw2[2] > 0:  # spreading must widen; otherwise keep the default
        model.width_coef = cw2
    o = track.open[row].astype(np.float64)
    y = gap[speech]
    model.kind = "quantile"
    # Blocked cross-validation: the speech opening (through the person's quantile map)
    # against ridge regressions over the speech features.
    x = feats[row][speech].astype(np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mu) / sd
    folds = np.array_split(np.arange(len(y)), 5)
    scores: dict[str, float] = {}
    pred_q = np.zeros_like(y)
    for f in folds:
        tr = np.setdiff1d(np.arange(len(y)), f)
        pred_q[f] = np.interp(o[speech][f], *_quantile_map(o[speech][tr], y[tr]))
    scores["quantile"] = _r2(y, pred_q)
    best_alpha, best = 0.0, -np.inf
    for alpha in (3.0, 30.0, 300.0):
        pred = np.zeros_like(y)
        for f in folds:
            tr = np.setdiff1d(np.arange(len(y)), f)
            pred[f] = _ridge_predict(xs[f], _ridge(xs[tr], y[tr], alpha))
        r2 = _r2(y, pred)
        scores[f"ridge_{alpha:g}"] = r2
        if r2 > best:
            best, best_alpha = r2, alpha
    model.cv_r2 = {k: round(v, 3) for k, v in scores.items()}
    if best > max(scores["quantile"], 0.0) + 0.1 and best > MIN_REGRESSION_R2:
        model.kind = "regression"
        model.reg_coef, model.mu, model.sd = _ridge(xs, y, best_alpha), mu, sd
    return model


# -- choice --------------------------------------------------------------------------------
class Plan:
    """Candidate states, costs and a backward (cost-to-go) pass over the output frames."""

    def __init__(self, index: MouthIndex, gap: F32, width: F32, speech: F32) -> None:
        self.index = index
        cand = index.candidates
        self.frames = cand
        self.hold = (C_HOLD[0] + (C_HOLD[1] - C_HOLD[0]) * np.clip(speech, 0, 1)).astype(np.float32)
        dim = max(index.thumbs.shape[1], 1)
        self.thumbs = (index.thumbs / np.sqrt(dim)).astype(np.float32)
        self.thumb_sq = (self.thumbs**2).sum(axis=1)
        sg = max(float(np.std(index.shape.gap[cand])), 0.02)
        sw = max(float(np.std(index.shape.width[cand])), 0.02)
        cg = index.shape.gap[cand].astype(np.float32)
        cw = index.shape.width[cand].astype(np.float32)
        # The opening read from the pixels backs up the landmarks' (which can miss a slightly
        # parted mouth): its target follows the landmark gap by this clip's own relation.
        co = index.opening.astype(np.float32)
        so = max(float(np.std(co)), 0.02)
        slope, icpt = np.polyfit(cg.astype(np.float64), co.astype(np.float64), 1)
        g_lo = float(np.percentile(cg, 5))
        g_hi = float(np.percentile(cg, 95))
        # Blurred mouths (motion blur, focus) cost a little more: sharpness is judged against
        # mouths equally open (a closed mouth has fewer edges than one showing teeth).
        sharp = np.log(np.maximum(index.sharpness.astype(np.float64), 1e-3))
        resid = sharp - np.polyval(np.polyfit(cg.astype(np.float64), sharp, 1), cg)
        quality = (W_BLUR * np.clip(-resid, 0.0, 1.0)).astype(np.float32)
        n = len(gap)
        k_all = len(cand)
        self.states: list[I64] = []
        self.unary: list[F32] = []
        prev: I64 | None = None
        for t in range(n):
            err = (cg - gap[t]) / sg
            # Near-closed targets: a mouth that is open when it should be shut is the worst
            # error (pauses, p/b/m), so it counts double.
            closed = float(
                np.clip(
                    (g_lo + 0.3 * (g_hi - g_lo) - gap[t]) / max(g_hi - g_lo, 1e-3) * 4.0, 0.0, 1.0
                )
            )
            err = np.where(err > 0, err * (1.0 + closed), err)
            o_err = (co - (icpt + slope * gap[t])) / so
            o_err = np.where(o_err > 0, o_err * (1.0 + closed), o_err)
            u_all = err**2 + W_OPENING * o_err**2 + W_WIDTH * ((cw - width[t]) / sw) ** 2 + quality
            top = np.argpartition(u_all, min(TOP_K, k_all - 1))[:TOP_K]
            if prev is not None:
                cont = np.concatenate([prev + d for d in CONTINUE])
                cont = cont[(cont >= 0) & (cont < k_all)]
                top = np.unique(np.concatenate([top, cont]))
                if len(top) > MAX_STATES:
                    top = top[np.argsort(u_all[top])[:MAX_STATES]]
            top = np.sort(top).astype(np.int64)
            self.states.append(top)
            self.unary.append(u_all[top].astype(np.float32))
            prev = top
        # Backward pass: value[t][i] = best cost of frames t+1.. given state i at t.
        self.value: list[F32] = [np.zeros(0, np.float32)] * n
        if n:
            self.value[n - 1] = np.zeros(len(self.states[n - 1]), np.float32)
        for t in range(n - 2, -1, -1):
            trans = self.transition(self.states[t], self.states[t + 1], t + 1)
            nxt = self.unary[t + 1] + self.value[t + 1]
            self.value[t] = (trans + nxt[None, :]).min(axis=1).astype(np.float32)
        self.path = self._global_path()

    def transition(self, a: I64, b: I64, t: int) -> F32:
        """Cost of showing candidate ``b[j]`` at output frame ``t`` right after ``a[i]``."""
        fa = self.frames[a][:, None]
        fb = self.frames[b][None, :]
        step = fb - fa
        # Positions are consecutive only when the frames are too (cand is ascending).
        pos_step = b[None, :] - a[:, None]
        ta, tb = self.thumbs[a], self.thumbs[b]
        look = np.maximum(
            self.thumb_sq[a][:, None] + self.thumb_sq[b][None, :] - 2.0 * (ta @ tb.T), 0.0
        )
        cost = C_JUMP + W_JUMP_LOOK * look
        cost = np.where((step == 1) & (pos_step == 1), C_NEXT, cost)
        cost = np.where((step == 2) & (pos_step <= 2), C_SKIP + 0.5 * W_JUMP_LOOK * look, cost)
        cost = np.where(step == 0, self.hold[t], cost)
        cost = np.where((step == -1) & (pos_step == -1), C_BACK, cost)
        return cost.astype(np.float32)

    def _global_path(self) -> I64:
        """The best path without the pose term (used when frames come out of order)."""
        n = len(self.states)
        out = np.zeros(n, np.int64)
        if n == 0:
            return out
        i = int(np.argmin(self.unary[0] + self.value[0]))
        out[0] = self.states[0][i]
        for t in range(1, n):
            trans = self.transition(self.states[t - 1][i : i + 1], self.states[t], t)[0]
            i = int(np.argmin(trans + self.unary[t] + self.value[t]))
            out[t] = self.states[t][i]
        return out

    def solve(self, start: int, stop: int, prev: int | None, extra: dict[int, F32]) -> I64:
        """Best candidates for output frames ``start..stop-1`` given the state shown at
        ``start - 1`` (``prev``), extra unary costs for some frames, and the cost-to-go."""
        m = stop - start
        back: list[npt.NDArray[np.intp]] = []
        cost = self.unary[start] + extra.get(start, 0.0)
        if prev is not None:
            cost = cost + self.transition(np.array([prev], np.int64), self.states[start], start)[0]
        for t in range(start + 1, stop):
            trans = self.transition(self.states[t - 1], self.states[t], t)
            total = cost[:, None] + trans
            arg = np.argmin(total, axis=0)
            back.append(arg)
            cost = total[arg, np.arange(total.shape[1])] + self.unary[t] + extra.get(t, 0.0)
        cost = cost + self.value[stop - 1]
        i = int(np.argmin(cost))
        out = np.zeros(m, np.int64)
        out[m - 1] = self.states[stop - 1][i]
        for k in range(m - 2, -1, -1):
            i = int(back[k][i])
            out[k] = self.states[start + k][i]
        return out


@dataclass(frozen=True)
class _Pose:
    """A frame's head pose as the gate compares it: yaw and pitch (see MouthShape), roll
    (eye line angle, radians) and interocular distance (pixels)."""

    yaw: float
    pitch: float
    roll: float
    iod: float


@dataclass
class _Draft:
    """A frame's render up to its colour: the warped lower face (``image`` at ``x1, y1``,
    with its mask ``region``), the mouth's box in it, the mask ellipse, the mapped mouth
    crop and its colour fit (None: too little skin ring to fit)."""

    x1: int
    y1: int
    image: RGBImage
    region: F32
    box: tuple[int, int, int, int]
    alpha: F32
    uv: tuple[F32, F32]
    base: F32
    src: F32
    coef: F64 | None
    pos: int
    out_index: int | None
    share: float


# -- the engine ----------------------------------------------------------------------------
class RetrievalEngine(Engine):
    name = "retrieval"
    wants_source = True

    def __init__(self, ctx: EngineContext | None = None) -> None:
        self.ctx = ctx or EngineContext()
        self.viseme = VisemeEngine(self.ctx)
        self._reset()

    def _reset(self) -> None:
        self.index: MouthIndex | None = None
        self.model: ShapeModel | None = None
        self.plan: Plan | None = None
        self.path = "viseme"
        self.reason = "no source video given"
        self._own: tuple[MouthTrack, F32] | None = None
        self._last: tuple[int, int] | None = None  # (output index, candidate position)
        # (output index, source frame, colour field) of the last frame drawn
        self._colour: tuple[int, int, F64] | None = None
        self._chosen: dict[int, int] = {}
        self._timings: dict[str, float] = {}
        self._target: tuple[F32, F32] | None = None
        # Per candidate: roll (eye line angle), interocular distance in source pixels, and
        # the crop's scale (crop pixels per source pixel).
        self._crop_pose: tuple[F64, F64, F64] | None = None
        self._shares: dict[int, float] = {}
        self._mismatch: dict[int, float] = {}

    # -- per job -----------------------------------------------------------------------------
    def prepare_source(self, source: SourceVideo) -> None:
        self._reset()
        t0 = time.perf_counter()
        if source.is_image:
            self.reason = "still image: there are no other mouths to re-use"
            return
        lms = source.landmarks
        valid = np.isfinite(lms.reshape(len(lms), -1)).all(axis=1)
        if valid.sum() < MIN_CANDIDATES:
            self.reason = f"only {int(valid.sum())} frames show the face"
            return
        size = _frame_size(source)
        index = build_index(source, size)
        self._timings["index_s"] = round(time.perf_counter() - t0, 3)
        self.index = index
        roll, iod = _roll_iod(np.stack([c.landmarks for c in index.crops]))
        self._crop_pose = (roll, iod, np.array([c.scale for c in index.crops], np.float64))
        if len(index.candidates) < MIN_CANDIDATES:
            self.reason = f"only {len(index.candidates)} frames have a usable mouth"
            return
        g = index.shape.gap[index.candidates]
        lo, hi = float(np.percentile(g, 5)), float(np.percentile(g, 95))
        if float(g.min()) > MAX_CLOSED_GAP:
            self.reason = f"the mouth never closes in the video (smallest gap {g.min():.2f})"
            return
        if hi - lo < MIN_GAP_RANGE:
            self.reason = f"not enough mouth variety in the video (gap range {hi - lo:.2f})"
            return
        t1 = time.perf_counter()
        if source.audio16k is not None and source.audio16k.size > 16000 // 2:
            n_own = (
                int(
                    round(
                        (float(source.frame_times[-1]) - float(source.frame_times[0])) * source.fps
                    )
                )
                + 1
            )
            track = analyse(source.audio16k, source.fps, n_own)
            self._own = (track, speech_features(track))
        self.model = fit_shape_model(index, self._own, source.frame_times, source.fps)
        self._timings["calibrate_s"] = round(time.perf_counter() - t1, 3)
        self.path = "retrieval"
        self.reason = f"{len(index.candidates)} usable mouths, gap range {lo:.2f}..{hi:.2f}"

    def prepare(self, audio16k: F32, fps: float, n_frames: int) -> None:
        self.viseme.prepare(audio16k, fps, n_frames)
        self._last = None
        self._colour = None
        self._chosen = {}
        self._shares = {}
        self._mismatch = {}
        if self.path != "retrieval" or self.model is None or self.index is None:
            return
        t0 = time.perf_counter()
        track = self.viseme.track
        assert track is not None
        gap, width = self.model.predict(track, speech_features(track))
        gap = np.minimum(gaussian_filter1d(gap, TARGET_SIGMA), gap).astype(np.float32)
        self._target = (gap, width)
        self.plan = Plan(self.index, gap, width, track.speech)
        self._timings["plan_s"] = round(time.perf_counter() - t0, 3)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "reason": self.reason}
        if self.path == "viseme":
            out.update({f"viseme_{k}": v for k, v in self.viseme.info().items()})
        if self.index is not None:
            out["index"] = dict(self.index.stats)
        if self.model is not None:
            out["calibration"] = self.model.kind
            if self.model.cv_r2 is not None:
                out["calibration_cv_r2"] = self.model.cv_r2
        if self._chosen:
            seq = np.array([self._chosen[k] for k in sorted(self._chosen)])
            frames = self.index.candidates[seq] if self.index is not None else seq
            cont = np.diff(frames) if len(frames) > 1 else np.zeros(0)
            cuts = int(np.sum((cont < -1) | (cont > 2)))
            out["cuts"] = cuts
            out["mean_run_frames"] = round(len(frames) / (cuts + 1), 1)
            out["distinct_source_frames"] = int(len(np.unique(frames)))
        if self._shares:
            share = np.array(list(self._shares.values()))
            mism = np.array(list(self._mismatch.values()))
            out["pose_gate"] = {
                "own_mouth_frames": int(np.sum(share <= 0.0)),
                "eased_frames": int(np.sum((share > 0.0) & (share < 1.0))),
                "source_mouth_frames": int(np.sum(share >= 1.0)),
                "median_mismatch": round(float(np.median(mism)), 3),
                "p95_mismatch": round(float(np.percentile(mism, 95)), 3),
            }
        out.update(self._timings)
        return out

    # -- frames ------------------------------------------------------------------------------
    def generate(
        self, frames: Sequence[RGBImage], faces: Sequence[FaceObs], indices: Sequence[int]
    ) -> list[Patch]:
        if self.path != "retrieval" or self.plan is None:
            return self.viseme.generate(frames, faces, indices)
        plan = self.plan
        n = len(plan.states)
        idx = [min(max(int(i), 0), n - 1) for i in indices]
        poses = self.poses(faces)
        choice = self._choose(idx, poses)
        assert self._target is not None
        gap = self._target[0]
        share = self._gate(idx, poses, choice)
        calls = [
            (frame, face.landmarks, choice[i], float(gap[i]), i, w)
            for frame, face, i, w in zip(frames, faces, idx, share, strict=True)
        ]
        drafts = self.viseme.mapper.map(self._draft, calls)
        return [self._finish(d) for d in drafts]

    def close(self) -> None:
        self.viseme.close()

    def poses(self, faces: Sequence[FaceObs]) -> list[_Pose]:
        """The head pose of each face, measured once for the choice and the gate."""
        assert self.index is not None
        stack = np.stack([f.landmarks for f in faces]).astype(np.float32)
        shape = measure(stack, self.index.template)
        roll, iod = _roll_iod(stack)
        return [
            _Pose(float(shape.yaw[k]), float(shape.pitch[k]), float(roll[k]), float(iod[k]))
            for k in range(len(faces))
        ]

    def mismatch(self, positions: I64, pose: _Pose) -> F32:
        """How far the head pose of candidates ``positions`` is from a frame's ``pose``, in
        :data:`GATE_SIGMA` units: yaw, pitch, roll and the crop's magnification (0 where
        the frame's pose can't be read)."""
        index = self.index
        assert index is not None and self._crop_pose is not None
        roll_c, iod_c, scale_c = (x[positions] for x in self._crop_pose)
        frames = index.candidates[positions]
        d_roll = np.angle(np.exp(1j * (pose.roll - roll_c)))
        mag = np.log(np.maximum(pose.iod / np.maximum(iod_c, 1e-6) / scale_c, 1e-6))
        terms = (
            (index.shape.yaw[frames] - pose.yaw) / GATE_SIGMA[0],
            (index.shape.pitch[frames] - pose.pitch) / GATE_SIGMA[1],
            d_roll / GATE_SIGMA[2],
            np.maximum(mag, 0.0) / GATE_SIGMA[3],
        )
        d = np.sqrt(sum(np.asarray(t, np.float64) ** 2 for t in terms))
        return np.nan_to_num(d, nan=0.0).astype(np.float32)

    def _gate(self, idx: list[int], poses: list[_Pose], choice: dict[int, int]) -> list[float]:
        """The share of the source mouth per frame of the batch: 1 where its pose matches,
        0 where only the frame's own mouth can be used, eased in between (it falls ahead of a
        frame that needs the own mouth and rises at most 1/GATE_EASE a frame)."""
        lo, hi = GATE_RANGE
        mism = [
            float(self.mismatch(np.array([choice[i]], np.int64), pose)[0])
            for i, pose in zip(idx, poses, strict=True)
        ]
        raw = [float(np.clip((hi - d) / (hi - lo), 0.0, 1.0)) for d in mism]
        step = 1.0 / GATE_EASE
        # Falling ahead: no frame may be more than k steps above a frame k ahead of it.
        ahead = list(raw)
        for k in range(len(raw) - 2, -1, -1):
            if idx[k + 1] == idx[k] + 1:
                ahead[k] = min(ahead[k], ahead[k + 1] + step)
        out: list[float] = []
        for i, w, d in zip(idx, ahead, mism, strict=True):
            prev = self._shares.get(i - 1)
            if prev is not None:
                w = min(w, prev + step)
            w = round(w, 4)
            out.append(w)
            self._shares[i] = w
            self._mismatch[i] = d
        return out

    def _choose(self, idx: list[int], poses: list[_Pose]) -> dict[int, int]:
        """Candidate position per output index of this batch (pose-aware Viterbi)."""
        plan = self.plan
        index = self.index
        assert plan is not None and index is not None
        in_order = all(b > a for a, b in zip(idx, idx[1:], strict=False))
        start = 0 if self._last is None else self._last[0] + 1
        if not idx or not in_order or idx[0] < start:
            out = {i: int(plan.path[i]) for i in idx}
            self._chosen.update(out)
            return out
        # The head pose of each frame in the batch against each candidate's: yaw and pitch
        # as a soft preference, and steeply beyond the pose gate's first threshold.
        extra: dict[int, F32] = {}
        for i, pose in zip(idx, poses, strict=True):
            st = plan.states[i]
            fr = index.candidates[st]
            dy = (index.shape.yaw[fr] - pose.yaw) / POSE_SIGMA[0]
            dp = (index.shape.pitch[fr] - pose.pitch) / POSE_SIGMA[1]
            soft = np.nan_to_num(W_POSE * (dy**2 + dp**2), nan=0.0)
            over = np.maximum(self.mismatch(st, pose) - GATE_RANGE[0], 0.0)
            extra[i] = (soft + W_POSE_GATE * over**2).astype(np.float32)
        prev = self._last[1] if self._last is not None else None
        stop = idx[-1] + 1
        seq = plan.solve(start, stop, prev, extra)
        self._last = (stop - 1, int(seq[-1]))
        out = {i: int(seq[i - start]) for i in idx}
        self._chosen.update(out)
        return out

    def render(
        self,
        frame: RGBImage,
        lm_t: F32,
        pos: int,
        gap: float | None = None,
        out_index: int | None = None,
        share: float = 1.0,
    ) -> Patch:
        """The target frame with the mouth of candidate ``pos`` put in.

        The target's lower face is warped so its lips and jaw take the chosen mouth's
        geometry, moved part of the way to the wanted gap (template units, if given); the
        chosen mouth's crop is placed by the rigid points, its lips opened or closed by the
        same amount, colour-matched, and blended with a feathered ellipse.

        ``share`` below 1 (the pose gate): the geometry moves that far from the chosen
        mouth's towards the frame's own mouth opened to the wanted gap, the frame's own mouth
        is warped and drawn there (as the viseme engine does), and the chosen mouth, warped
        to the same geometry, is blended over it at that strength; at 0 it is left out.
        """
        return self._finish(self._draft(frame, lm_t, pos, gap, out_index, share))

    def _draft(
        self,
        frame: RGBImage,
        lm_t: F32,
        pos: int,
        gap: float | None,
        out_index: int | None,
        share: float,
    ) -> Patch | _Draft:
        """Everything of :meth:`render` that depends on this frame alone (frames of a batch
        are drafted on the render threads); :meth:`_finish` adds the colour, which is
        filtered over time, in frame order."""
        index = self.index
        assert index is not None
        a = self._align(pos, frame, lm_t)
        tgt_src = self._placed(pos, lm_t, a)
        tgt = tgt_src if gap is None else self._residual(tgt_src, lm_t, pos, gap)
        if share < 1.0:
            tgt, base_patch = self._own_mouth(frame, lm_t, tgt, gap, share, out_index)
            if share <= 0.0 or base_patch.mask is None:
                return base_patch
            warp_image, warp_region = base_patch.image, base_patch.mask
            wx1, wy1 = base_patch.x1, base_patch.y1
        else:
            warp = self.viseme.warp_lower_face(frame, lm_t, tgt, inner_lips=False)
            if isinstance(warp, Patch):
                return warp
            warp_image, warp_region, wx1, wy1 = warp.image, warp.region, warp.x1, warp.y1
        ph, pw = warp_image.shape[:2]
        # Only the mask ellipse's box needs the mouth.
        ex1, ey1, ex2, ey2 = ellipse_box(tgt, grow=1.02)
        bx1, by1 = max(0, int(ex1) - wx1), max(0, int(ey1) - wy1)
        bx2 = min(pw, int(np.ceil(ex2)) + 1 - wx1)
        by2 = min(ph, int(np.ceil(ey2)) + 1 - wy1)
        if bx2 - bx1 < 4 or by2 - by1 < 4:
            return Patch(wx1, wy1, warp_image, mask=warp_region)
        origin = (wx1 + bx1, wy1 + by1)
        size = (bx2 - bx1, by2 - by1)
        alpha, uv = _ellipse_alpha(tgt, origin, (size[1], size[0]))
        base = warp_image[by1:by2, bx1:bx2].astype(np.float32)
        src = self._mouth(pos, a, origin, size, _gap_map(tgt_src, tgt, origin, size))
        coef = _colour_field(src, base, alpha, uv, tgt, origin)
        return _Draft(
            wx1,
            wy1,
            warp_image,
            warp_region,
            (bx1, by1, bx2, by2),
            alpha,
            uv,
            base,
            src,
            coef,
            pos,
            out_index,
            share,
        )

    def _finish(self, d: Patch | _Draft) -> Patch:
        """The drafted frame with its colour (filtered over time: frames in order) applied
        and the mouth blended in."""
        if isinstance(d, Patch):
            return d
        src = d.src
        if d.coef is not None:
            coef = self._steady_colour(d.out_index, d.pos, d.coef)
            src = _apply_colour(src, d.uv, coef)
        bx1, by1, bx2, by2 = d.box
        a3 = d.alpha[..., None] * min(d.share, 1.0)
        out = d.base * (1.0 - a3) + src * a3
        image = d.image.copy()
        image[by1:by2, bx1:bx2] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        mask = d.region.copy()
        mask[by1:by2, bx1:bx2] = np.maximum(mask[by1:by2, bx1:bx2], d.alpha)
        return Patch(d.x1, d.y1, image, mask=mask)

    def _own_mouth(
        self,
        frame: RGBImage,
        lm_t: F32,
        tgt: F32,
        gap: float | None,
        share: float,
        out_index: int | None,
    ) -> tuple[F32, Patch]:
        """The pose gate's geometry (``share`` of the way from the frame's own mouth opened
        to the wanted gap, to the chosen mouth's ``tgt``) and the frame's own lower face
        warped and drawn to it by the viseme engine."""
        _, down, _ = face_axes(lm_t)
        width = float(np.linalg.norm(lm_t[54] - lm_t[48])) or 1.0
        gap_src = inner_gap(lm_t, down)
        want = inner_gap(tgt, down) if gap is None else max(0.0, gap * self._unit(lm_t))
        track = self.viseme.track
        spread = 0.0
        if track is not None and out_index is not None and len(track):
            spread = float(track.spread[min(max(out_index, 0), len(track) - 1)])
        own, _, _ = self.viseme.target_landmarks(lm_t, want / (VISEME_GAP_MAX * width), spread)
        w = float(np.clip(share, 0.0, 1.0))
        mixed = (w * tgt + (1.0 - w) * own).astype(np.float32)
        shown = inner_gap(mixed, down)
        # The warp never puts the inner lips closer than its floor (closer is drawn).
        floor = min(VISEME_GAP_FLOOR * width, gap_src)
        warp_tgt = open_mouth(mixed, down, floor - shown) if shown < floor else mixed
        seed = 0 if out_index is None else int(out_index)
        # The chosen mouth is blended over this at the same geometry, so the lips must land on
        # ``mixed`` exactly: no closing by the lips' own shape here (it moved the LatentSync
        # clip's eased frames off the pasted mouth and its offset to -2).
        own_mouth = self.viseme.render_to(
            frame, lm_t, warp_tgt, shown, gap_src, seed, own_lips=False
        )
        return mixed, own_mouth

    def _align(self, pos: int, frame: RGBImage, lm_t: F32) -> F64:
        """Source-frame pixels -> target-frame pixels for candidate ``pos``: the similarity
        of the two frames' rigid points, refined by registering the crop's nose base and
        the skin beside it onto the target's (landmarks jitter and lag a little; the nostrils
        do not). The refinement is a rotation and shift found by ECC (enhanced correlation
        coefficient) maximisation, sub-pixel and steadier from frame to frame than phase
        correlation; it is dropped when the two patches do not correlate or it moves too far."""
        assert self.index is not None
        crop = self.index.crops[pos]
        a = similarity(crop.landmarks[list(RIGID)], lm_t[list(RIGID)])
        x1, y1, x2, y2 = nose_box(lm_t)
        h, w = frame.shape[:2]
        bx1, by1 = max(0, int(x1)), max(0, int(y1))
        bx2, by2 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
        if bx2 - bx1 < 12 or by2 - by1 < 8:
            return a
        to_box = np.array([[1.0, 0.0, -bx1], [0.0, 1.0, -by1]])
        m = compose(to_box, compose(a, crop.to_source()))
        size = (bx2 - bx1, by2 - by1)
        mapped = cv2.warpAffine(
            crop.image(), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        grey_src = cv2.cvtColor(mapped, cv2.COLOR_RGB2GRAY).astype(np.float32)
        grey_tgt = cv2.cvtColor(
            np.ascontiguousarray(frame[by1:by2, bx1:bx2]), cv2.COLOR_RGB2GRAY
        ).astype(np.float32)
        # Find W with grey_src(W x) ~ grey_tgt(x); W^-1 then moves the mapped crop onto the
        # target.
        try:
            cc, warp = cv2.findTransformECC(
                grey_tgt,
                grey_src,
                np.eye(2, 3, dtype=np.float32),
                cv2.MOTION_EUCLIDEAN,
                REGISTER_CRITERIA,
                None,
            )
        except cv2.error:  # did not converge (flat or unrelated patches)
            return a
        inv = np.asarray(cv2.invertAffineTransform(np.asarray(warp)), np.float64)
        limit = REGISTER_MAX * float(np.linalg.norm(lm_t[45] - lm_t[36]))
        angle = abs(float(np.arctan2(inv[1, 0], inv[0, 0])))
        if cc < REGISTER_MIN_CC or np.hypot(*inv[:, 2]) > limit or angle > REGISTER_MAX_ANGLE:
            return a
        from_box = np.array([[1.0, 0.0, bx1], [0.0, 1.0, by1]])
        return compose(compose(from_box, compose(inv, to_box)), a)

    def _steady_colour(self, out_index: int | None, pos: int, coef: F64) -> F64:
        """The colour field filtered over time: while the source plays on (or holds, or steps
        a frame or two) the light on both faces changes slowly, so each frame's fit moves it
        only part of the way; after a cut, or frames out of order, it starts from the fit."""
        assert self.index is not None
        frame = int(self.index.candidates[pos])
        prev = self._colour
        if (
            out_index is not None
            and prev is not None
            and prev[0] == out_index - 1
            and abs(frame - prev[1]) <= 2
        ):
            coef = prev[2] + COLOUR_GAIN * (coef - prev[2])
        self._colour = None if out_index is None else (out_index, frame, coef)
        return coef

    def _placed(self, pos: int, lm_t: F32, a: F64) -> F32:
        """Target landmarks with candidate ``pos``'s lips put on the face by ``a``, and the
        jaw following its chin."""
        assert self.index is not None
        lm_c = self.index.crops[pos].landmarks
        tgt = lm_t.astype(np.float32).copy()
        tgt[48:68] = apply(a, lm_c[48:68])
        _, down, _ = face_axes(lm_t)
        chin = apply(a, lm_c[8:9])[0]
        d = float(np.dot(chin - lm_t[8], down))
        for k, w in JAW_W.items():
            tgt[k] += down * (d * w)
        return tgt

    def _unit(self, lm_t: F32) -> float:
        """Pixels per template unit on the face with landmarks ``lm_t``."""
        assert self.index is not None
        m = similarity(self.index.template, lm_t[list(RIGID)])
        return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))

    def _residual(self, tgt: F32, lm_t: F32, pos: int, gap: float) -> F32:
        """Move the placed lips (and jaw) part of the way to the wanted gap: closing is
        allowed all the way, opening up to half again what the mouth shows (its teeth and
        inside stretch with it; a closed mouth cannot be opened: there is nothing to show)."""
        assert self.index is not None
        frame = int(self.index.candidates[pos])
        have = float(self.index.shape.gap[frame])
        delta = (RESIDUAL[0] if gap < have else RESIDUAL[1]) * (gap - have)
        delta = float(np.clip(delta, -max(have, 0.0), OPEN_EXTRA * max(have, 0.0)))
        px = delta * self._unit(lm_t)
        if abs(px) < 0.3:
            return tgt
        _, down, _ = face_axes(lm_t)
        return open_mouth(tgt, down, px)

    def _mouth(
        self,
        pos: int,
        a: F64,
        origin: tuple[int, int],
        size: tuple[int, int],
        gap_map: tuple[F32, F32] | None = None,
    ) -> F32:
        """Candidate ``pos``'s crop mapped by ``a`` onto the target box at ``origin``, then
        by the lip-opening map ``gap_map`` (box pixel -> where to read in the mapped crop;
        see :func:`_gap_map`) when given. The two maps are composed and the crop resampled
        once, bicubic: each bilinear resampling at a sub-pixel offset averages neighbouring
        pixels, and two of them took a third of the mouth's fine texture (Laplacian
        variance) away."""
        assert self.index is not None
        crop = self.index.crops[pos]
        shift = np.array([[1.0, 0.0, -origin[0]], [0.0, 1.0, -origin[1]]])
        m = compose(shift, compose(a, crop.to_source()))
        if gap_map is None:
            src = cv2.warpAffine(
                crop.image(), m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
            )
            return np.asarray(src, np.float32)
        inv = np.asarray(cv2.invertAffineTransform(m), np.float32)
        mx, my = gap_map
        cx = inv[0, 0] * mx + inv[0, 1] * my + inv[0, 2]
        cy = inv[1, 0] * mx + inv[1, 1] * my + inv[1, 2]
        src = cv2.remap(
            crop.image(), cx, cy, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
        return np.asarray(src, np.float32)


def _roll_iod(landmarks: npt.ArrayLike) -> tuple[F64, F64]:
    """Roll (angle of the line between the eye centres, radians) and interocular distance
    (pixels) of each (68, 2) landmark set."""
    lm = np.asarray(landmarks, np.float64)
    eyes = lm[:, 42:48].mean(axis=1) - lm[:, 36:42].mean(axis=1)
    return np.arctan2(eyes[:, 1], eyes[:, 0]), np.hypot(eyes[:, 0], eyes[:, 1])


def _frame_size(source: SourceVideo) -> tuple[int, int]:
    """Displayed (width, height) of the source video (rotation applied, as decoded)."""
    from lipsync.media.decode import iter_frames

    for frame in iter_frames(source.path, pixel_format="luma"):
        h, w = frame.image.shape[:2]
        return int(w), int(h)
    return 0, 0


def _gap_map(
    placed: F32, tgt: F32, origin: tuple[int, int], size: tuple[int, int]
) -> tuple[F32, F32] | None:
    """The backward map (box pixel -> where to read, box pixels) that opens or closes lips
    sitting at ``placed`` to ``tgt`` in a box of ``size`` (width, height) at ``origin``: the
    upper lip and what is above it move with the upper inner lip, the lower lip and below
    with the lower one, the mouth's inside stretches or shrinks between them; the movement
    tapers towards the mouth corners and fades out towards the mask's rim. None: no move."""
    _, down, _ = face_axes(tgt)
    up_px = float(np.mean((tgt[61:64] - placed[61:64]) @ down))
    dn_px = float(np.mean((tgt[65:68] - placed[65:68]) @ down))
    if max(abs(up_px), abs(dn_px)) < 0.3:
        return None
    centre, across, _, a, up, dn = mouth_ellipse(placed)
    top = float(np.mean((placed[61:64] - centre) @ down))  # inner lips, along ``down``
    bot = float(np.mean((placed[65:68] - centre) @ down))
    if bot - top < 1.0:
        bot = top + 1.0
    w, h = size
    gx, gy = np.meshgrid(
        np.arange(w, dtype=np.float32) + origin[0] - centre[0],
        np.arange(h, dtype=np.float32) + origin[1] - centre[1],
    )
    u = (gx * across[0] + gy * across[1]) / (a / MASK_ACROSS * 0.5)
    v = gx * down[0] + gy * down[1]

    def shift(vv: F32) -> F32:
        t = np.clip((vv - top) / (bot - top), 0.0, 1.0)
        d = up_px + (dn_px - up_px) * t
        # Fade out beyond the lips towards the rim (nose above, chin below).
        fade_up = np.clip(1.0 - (top - vv) / max(up - abs(top), 1.0), 0.0, 1.0)
        fade_dn = np.clip(1.0 - (vv - bot) / max(dn - abs(bot), 1.0), 0.0, 1.0)
        fade = np.where(vv < top, fade_up, np.where(vv > bot, fade_dn, 1.0))
        taper = np.clip(1.0 - 0.85 * u * u, 0.0, 1.0)
        return (d * fade * taper).astype(np.float32)

    # Backward map (one fixed-point step): read where the pixel came from.
    d0 = shift(v)
    d1 = shift(v - d0)
    map_x = (gx - d1 * down[0] + centre[0] - origin[0]).astype(np.float32)
    map_y = (gy - d1 * down[1] + centre[1] - origin[1]).astype(np.float32)
    return map_x, map_y


def _ellipse_alpha(
    tgt: F32, origin: tuple[int, int], shape: tuple[int, int]
) -> tuple[F32, tuple[F32, F32]]:
    """The feathered mouth mask in patch coordinates, and the elliptic coordinates."""
    centre, across, down, a, up, dn = mouth_ellipse(tgt)
    h, w = shape
    xs = np.arange(w, dtype=np.float32) + origin[0] - centre[0]
    ys = np.arange(h, dtype=np.float32) + origin[1] - centre[1]
    gx, gy = np.meshgrid(xs, ys)
    u = (gx * across[0] + gy * across[1]) / a
    v = gx * down[0] + gy * down[1]
    v = np.where(v < 0, v / up, v / dn)
    r = np.sqrt(u * u + v * v)
    x = np.clip((r - ALPHA_CORE) / (1.0 - ALPHA_CORE), 0.0, 1.0)
    alpha = (1.0 - x * x * (3 - 2 * x)).astype(np.float32)
    return alpha, (u.astype(np.float32), v.astype(np.float32))


def _colour_field(
    src: F32, base: F32, alpha: F32, uv: tuple[F32, F32], tgt: F32, origin: tuple[int, int]
) -> F64 | None:
    """Log-gain per channel, linear across the face (3 x 3: constant, across, down), fitted
    on a ring of skin around the mouth (where the mask feathers) so the pasted mouth takes
    the target's colour and light; None when the ring is too small to fit."""
    ring = alpha * (1.0 - alpha)
    lips = np.zeros(alpha.shape, np.uint8)
    cv2.fillPoly(lips, [np.round(tgt[48:60] - np.asarray(origin, np.float32)).astype(np.int32)], 1)
    ring[lips > 0] = 0.0
    sel = ring > 0.05
    if int(sel.sum()) < 30:
        return None
    u, v = uv
    wts = ring[sel].astype(np.float64)
    x = np.stack([np.ones(int(sel.sum())), u[sel], v[sel]], axis=1).astype(np.float64)
    ls = np.log(src[sel].astype(np.float64) + 8.0)
    lb = np.log(base[sel].astype(np.float64) + 8.0)
    xw = x * wts[:, None]
    reg = np.diag([1e-3, 5.0, 5.0]) * wts.sum() * 1e-2
    coef: F64 = np.linalg.solve(x.T @ xw + reg, xw.T @ (lb - ls))
    return coef


def _apply_colour(src: F32, uv: tuple[F32, F32], coef: F64) -> F32:
    """``src`` with the log-gain field ``coef`` (see :func:`_colour_field`) applied."""
    u, v = uv
    field = np.stack([np.ones_like(u), u, v], axis=-1) @ coef.astype(np.float32)
    lo, hi = np.log(GAIN_RANGE[0]), np.log(GAIN_RANGE[1])
    gain = np.exp(np.clip(field, lo, hi))
    return ((src + 8.0) * gain - 8.0).astype(np.float32)
