"""The choice of a source mouth per output frame, for the ``retrieval`` engine.

:func:`make_plan` prices every candidate mouth against every output frame's wanted shape
(lip gap and width from :mod:`lipsync.engines.retrieval.calibrate`, the opening read
from the pixels, the mouth's sharpness), keeps a few states per frame (the best matches
and the continuations of the previous frame's states), and runs a backward pass
(cost-to-go) over them. The result, a :class:`Plan`, is a value: the engine later solves
the frames batch by batch with :meth:`Plan.solve`, adding the head pose of the frames
being rendered (:mod:`lipsync.engines.retrieval.pose`) as extra per-frame costs; frames
that come out of order take :attr:`Plan.path`, the best path without the pose term.

Continuity is priced by :class:`Transitions`: playing the source forward is free, holding
or stepping back costs a little, a jump costs more the more the two mouths look different.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.engines.retrieval.index import MouthIndex
from lipsync.engines.retrieval.tuning import DEFAULT_TUNING, RetrievalTuning

F32 = npt.NDArray[np.float32]
FA = npt.NDArray[np.floating[Any]]  # float32 or float64
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Transitions:
    """The cost of showing one candidate right after another (see :meth:`__call__`)."""

    frames: I64  # source frame of each candidate position (ascending)
    hold: F32  # per output frame: the cost of showing the same mouth again
    thumbs: F32  # (K, D) lip thumbnails scaled so squared distances are mean squares
    thumb_sq: F32  # (K,) their squared norms
    tuning: RetrievalTuning

    def __call__(self, a: I64, b: I64, t: int) -> F32:
        """Cost of showing candidate ``b[j]`` at output frame ``t`` right after ``a[i]``."""
        tn = self.tuning
        fa = self.frames[a][:, None]
        fb = self.frames[b][None, :]
        step = fb - fa
        # Positions are consecutive only when the frames are too (cand is ascending).
        pos_step = b[None, :] - a[:, None]
        ta, tb = self.thumbs[a], self.thumbs[b]
        look = np.maximum(
            self.thumb_sq[a][:, None] + self.thumb_sq[b][None, :] - 2.0 * (ta @ tb.T), 0.0
        )
        cost = tn.c_jump + tn.w_jump_look * look
        cost = np.where((step == 1) & (pos_step == 1), tn.c_next, cost)
        cost = np.where(
            (step == 2) & (pos_step <= 2), tn.c_skip + 0.5 * tn.w_jump_look * look, cost
        )
        cost = np.where(step == 0, self.hold[t], cost)
        cost = np.where((step == -1) & (pos_step == -1), tn.c_back, cost)
        return cost.astype(np.float32)


@dataclass(frozen=True)
class Plan:
    """Candidate states, their costs and the cost-to-go over the output frames."""

    transition: Transitions
    states: list[I64]  # per output frame: candidate positions considered (ascending)
    unary: list[F32]  # per output frame: each state's shape cost
    value: list[F32]  # per output frame: each state's best cost of the frames after it
    path: I64  # the best path without the pose term (used when frames come out of order)

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
class _ShapeCost:
    """What the shape cost of every candidate against a wanted (gap, width) needs: the
    candidates' gaps, widths and pixel openings with their spreads, this clip's relation
    of pixel opening to gap, the gap range, and the sharpness penalty."""

    cg: F32
    cw: F32
    co: F32
    sg: float
    sw: float
    so: float
    slope: float
    icpt: float
    g_lo: float
    g_hi: float
    quality: F32
    tuning: RetrievalTuning

    def __call__(self, gap: np.floating[Any], width: np.floating[Any]) -> FA:
        """The shape cost of every candidate for one output frame."""
        t = self.tuning
        err = (self.cg - gap) / self.sg
        # Near-closed targets: a mouth that is open when it should be shut is the worst
        # error (pauses, p/b/m), so it counts double.
        g_lo, g_hi = self.g_lo, self.g_hi
        closed = float(
            np.clip((g_lo + 0.3 * (g_hi - g_lo) - gap) / max(g_hi - g_lo, 1e-3) * 4.0, 0.0, 1.0)
        )
        err = np.where(err > 0, err * (1.0 + closed), err)
        o_err = (self.co - (self.icpt + self.slope * gap)) / self.so
        o_err = np.where(o_err > 0, o_err * (1.0 + closed), o_err)
        wid = t.w_width * ((self.cw - width) / self.sw) ** 2
        out: FA = err**2 + t.w_opening * o_err**2 + wid + self.quality
        return out


def _shape_cost(index: MouthIndex, tuning: RetrievalTuning) -> _ShapeCost:
    cand = index.candidates
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
    quality = (tuning.w_blur * np.clip(-resid, 0.0, 1.0)).astype(np.float32)
    return _ShapeCost(cg, cw, co, sg, sw, so, slope, icpt, g_lo, g_hi, quality, tuning)


def _states(
    cost: _ShapeCost, gap: F32, width: F32, k_all: int, tuning: RetrievalTuning
) -> tuple[list[I64], list[F32]]:
    """The states of each output frame (the best :attr:`RetrievalTuning.top_k` matches
    and the continuations of the previous frame's states, at most
    :attr:`RetrievalTuning.max_states`) and their shape costs."""
    states: list[I64] = []
    unary: list[F32] = []
    prev: I64 | None = None
    for t in range(len(gap)):
        u_all = cost(gap[t], width[t])
        top = np.argpartition(u_all, min(tuning.top_k, k_all - 1))[: tuning.top_k]
        if prev is not None:
            cont = np.concatenate([prev + d for d in tuning.continue_steps])
            cont = cont[(cont >= 0) & (cont < k_all)]
            top = np.unique(np.concatenate([top, cont]))
            if len(top) > tuning.max_states:
                top = top[np.argsort(u_all[top])[: tuning.max_states]]
        top = np.sort(top).astype(np.int64)
        states.append(top)
        unary.append(u_all[top].astype(np.float32))
        prev = top
    return states, unary


def _cost_to_go(trans: Transitions, states: list[I64], unary: list[F32]) -> list[F32]:
    """Backward pass: value[t][i] = best cost of frames t+1.. given state i at t."""
    n = len(states)
    value: list[F32] = [np.zeros(0, np.float32)] * n
    if n:
        value[n - 1] = np.zeros(len(states[n - 1]), np.float32)
    for t in range(n - 2, -1, -1):
        tr = trans(states[t], states[t + 1], t + 1)
        nxt = unary[t + 1] + value[t + 1]
        value[t] = (tr + nxt[None, :]).min(axis=1).astype(np.float32)
    return value


def _global_path(trans: Transitions, states: list[I64], unary: list[F32], value: list[F32]) -> I64:
    """The best path without the pose term (used when frames come out of order)."""
    n = len(states)
    out = np.zeros(n, np.int64)
    if n == 0:
        return out
    i = int(np.argmin(unary[0] + value[0]))
    out[0] = states[0][i]
    for t in range(1, n):
        tr = trans(states[t - 1][i : i + 1], states[t], t)[0]
        i = int(np.argmin(tr + unary[t] + value[t]))
        out[t] = states[t][i]
    return out


def make_plan(
    index: MouthIndex,
    gap: F32,
    width: F32,
    speech: F32,
    tuning: RetrievalTuning = DEFAULT_TUNING,
) -> Plan:
    """The plan for output frames with wanted lip ``gap`` and ``width`` (template units)
    and voice activity ``speech`` (0..1, for the cost of holding a mouth)."""
    c_hold = tuning.c_hold
    hold = (c_hold[0] + (c_hold[1] - c_hold[0]) * np.clip(speech, 0, 1)).astype(np.float32)
    dim = max(index.thumbs.shape[1], 1)
    thumbs = (index.thumbs / np.sqrt(dim)).astype(np.float32)
    trans = Transitions(index.candidates, hold, thumbs, (thumbs**2).sum(axis=1), tuning)
    states, unary = _states(_shape_cost(index, tuning), gap, width, len(index.candidates), tuning)
    value = _cost_to_go(trans, states, unary)
    return Plan(trans, states, unary, value, _global_path(trans, states, unary, value))
