"""Speech -> wanted mouth shape for one person, for the ``retrieval`` engine.

The new speech's opening and spreading per output frame (:func:`lipsync.audio.visemes.analyse`)
are mapped onto this person's range of mouth shapes. When the video has its own speech,
the mapping is calibrated on the person's own audio/video pairs: a quantile map from
speech opening to this person's lip gap, and a small ridge regression over audio features
that is used only when blocked cross-validation shows it predicts better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lipsync.audio.visemes import MouthTrack
from lipsync.engines.retrieval.index import MouthIndex
from lipsync.engines.retrieval.tuning import DEFAULT_TUNING, RetrievalTuning

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


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
    When the video shows several people, each person's drive is ranked among the frames
    that show them (their own lines), so each speaks with their whole range however loud
    the other people's lines are.
    """

    kind: str  # "default" | "quantile" | "regression": what the drive is
    g_closed: float
    g_open: float
    width_coef: F64  # width = c0 + c1 * gap + c2 * spread
    speech_gaps: F64  # tuning.n_quantiles quantiles of the person's gap while they speak
    reg_coef: F64 | None = None
    mu: F64 | None = None
    sd: F64 | None = None
    cv_r2: dict[str, float] | None = None
    tuning: RetrievalTuning = DEFAULT_TUNING

    def drive(self, track: MouthTrack, feats: F32) -> F64:
        raw: F64 = track.open.astype(np.float64)
        if self.kind == "regression" and self.reg_coef is not None:
            assert self.mu is not None and self.sd is not None
            raw = _ridge_predict((feats - self.mu) / self.sd, self.reg_coef)
        emphasis = self.tuning.vowel_emphasis
        if emphasis and track.height is not None:
            # Open vowels open the jaw further than close vowels and consonants do.
            factor = 1.0 + emphasis * (track.height.astype(np.float64) - 0.5)
            raw = raw * np.maximum(factor, 0.0)
        return raw

    def predict(
        self, track: MouthTrack, feats: F32, lines: npt.NDArray[np.bool_] | None = None
    ) -> tuple[F32, F32]:
        """Lip gap and mouth width per frame; ``lines``: the frames that show this
        person (ranked among themselves when they hold enough speech)."""
        open_ = track.open.astype(np.float64)
        pause = (open_ < 0.03) & (track.speech < 0.5)
        talking = (track.speech >= 0.5) & ~pause
        qs = np.linspace(0.0, 1.0, len(self.speech_gaps))
        t = self.tuning
        if lines is not None and int((talking & lines).sum()) >= t.min_speech_frames:
            talking = talking & lines
        if int(talking.sum()) >= t.min_speech_frames:
            drive = self.drive(track, feats)
            u = _ranks(drive, drive[talking])
        else:
            u = np.clip(open_, 0.0, 1.0) ** t.gamma
        gap = np.interp(u, qs, self.speech_gaps)
        gap = self.g_closed + t.articulation * (gap - self.g_closed)
        gap = np.where(pause, self.g_closed, gap)
        gap = np.clip(gap, self.g_closed, self.g_open)
        c = self.width_coef
        width = c[0] + c[1] * gap + c[2] * track.spread
        return gap.astype(np.float32), width.astype(np.float32)


def fit_shape_model(
    index: MouthIndex,
    own: tuple[MouthTrack, F32] | None,
    frame_times: F64,
    fps: float,
    tuning: RetrievalTuning = DEFAULT_TUNING,
) -> ShapeModel:
    """This person's mapping from speech to mouth shape (see :class:`ShapeModel`)."""
    ok = np.isfinite(index.shape.gap)
    cand = index.candidates
    g_all = index.shape.gap[cand] if len(cand) else index.shape.gap[ok]
    g_closed = float(np.percentile(g_all, 2))
    g_open = float(np.max(g_all))
    qs = np.linspace(0, 100, tuning.n_quantiles)
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
        tuning=tuning,
    )
    if own is None:
        return model
    track, feats = own
    # Source frame f sits at frame_times[f] on the own track's frame grid.
    t0 = float(frame_times[0]) if len(frame_times) else 0.0
    row = np.clip(np.round((frame_times - t0) * fps).astype(int), 0, len(track) - 1)
    speech = (track.speech[row] > 0.5) & ok
    if speech.sum() < tuning.min_speech_frames:
        return model
    model.speech_gaps = np.percentile(gap[speech], qs)
    # Width with the speech's spreading, on the person's own pairs.
    sp = track.spread[row].astype(np.float64)
    xw2 = np.stack([np.ones(speech.sum()), gap[speech], sp[speech]], axis=1)
    cw2, *_ = np.linalg.lstsq(xw2, width[speech], rcond=None)
    if cw2[2] > 0:  # spreading must widen; otherwise keep the default
        model.width_coef = cw2
    o = track.open[row].astype(np.float64)
    model.kind = "quantile"
    _cross_validate(model, o[speech], feats[row][speech].astype(np.float64), gap[speech])
    return model


def _cross_validate(model: ShapeModel, o: F64, x: F64, y: F64) -> None:
    """Blocked cross-validation on the person's own speech frames: the speech opening
    ``o`` (through the person's quantile map) against ridge regressions over the speech
    features ``x``, predicting the lip gaps ``y``. Records the scores in ``model`` and
    switches it to the best regression when that predicts clearly better."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mu) / sd
    folds = np.array_split(np.arange(len(y)), 5)
    scores: dict[str, float] = {}
    pred_q = np.zeros_like(y)
    for f in folds:
        tr = np.setdiff1d(np.arange(len(y)), f)
        pred_q[f] = np.interp(o[f], *_quantile_map(o[tr], y[tr]))
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
    if best > max(scores["quantile"], 0.0) + 0.1 and best > model.tuning.min_regression_r2:
        model.kind = "regression"
        model.reg_coef, model.mu, model.sd = _ridge(xs, y, best_alpha), mu, sd
