"""Every tuning constant of the ``retrieval`` engine, in one frozen, typed value.

:class:`RetrievalTuning` holds what used to be ~40 module constants; the engine takes one
(:data:`DEFAULT_TUNING`, the values the engine was measured with, unless told otherwise),
and every stage (index, calibration, choice, pose gate, rendering) reads its numbers from
it. An experiment changes one field with :func:`dataclasses.replace`, e.g.
``replace(DEFAULT_TUNING, w_opening=0.5)``, without touching module state.

Units: "template units" are the pose- and scale-normalised frame of
:mod:`lipsync.engines.retrieval.geometry` (interocular distance 1); "cost" is the
dimensionless unit of the Viterbi choice, where one standard deviation of lip-gap
mismatch costs 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RetrievalTuning:
    """The ``retrieval`` engine's tuning; see each field's docstring for its meaning and
    unit. Frozen: derive variants with :func:`dataclasses.replace`."""

    # -- when to fall back to the viseme warp ------------------------------------------------
    min_candidates: int = 25
    """Fewest usable face frames (and stored mouth crops) for the retrieval path; fewer and
    the viseme warp is used. Unit: frames."""
    min_gap_range: float = 0.10
    """Least spread of the person's lip gap (95th minus 5th percentile over the candidates)
    for the retrieval path: less and there is too little mouth variety. Template units."""
    max_closed_gap: float = 0.10
    """The most closed mouth in the video must be at least this closed (its lip gap at most
    this), or the video never shows a closed mouth to re-use. Template units."""

    # -- speech -> wanted mouth shape ----------------------------------------------------------
    n_quantiles: int = 101
    """How many quantiles describe the person's distribution of lip gaps over their own
    speech; the new speech's drive is mapped through them by rank. Unit: count."""
    articulation: float = 1.15
    """Scale of the person's openings above their closed gap (smoothing and the choice
    among real mouths take some of the range away). At 1.05 the articulation ratio read
    0.90-1.05 on the shared pairs and the mean sync score 0.737, below the viseme
    engine's 0.748; at 1.15 (with the full :attr:`residual`) 0.95-1.13 and 0.768. Unit:
    factor."""
    min_speech_frames: int = 25
    """Fewest talking frames for rank mapping (in the new speech) and for calibration (in
    the person's own); fewer and the fixed curve of :attr:`gamma` is used. Unit: frames."""
    gamma: float = 1.3
    """Exponent of the fixed curve (too little speech to rank): above 1 keeps small
    openings nearer shut. Unit: exponent."""
    min_regression_r2: float = 0.3
    """The calibration ridge regression is used only when its blocked cross-validated R²
    reaches this (and beats the quantile map by 0.1). Unit: R²."""
    target_sigma: float = 0.6
    """Gaussian smoothing of the wanted openings over time (closures kept: the minimum of
    the smoothed and raw values); it removes loudness flicker. Unit: frames (sigma)."""
    vowel_emphasis: float = 1.0
    """How much the vowel's openness (first-formant height, 0..1) scales the drive before it
    is ranked: x max(0, 1 + vowel_emphasis * (height - 0.5)). 5.0 decoupled the mouth from
    the speech's loudness. Unit: factor per unit of height."""

    # -- the choice of a source mouth per frame (Viterbi) --------------------------------------
    top_k: int = 12
    """Best-matching candidate mouths considered per output frame. Unit: count."""
    max_states: int = 28
    """Most states per output frame, with the continuations of the previous frame's states
    added to the :attr:`top_k`. Unit: count."""
    continue_steps: tuple[int, ...] = (0, 1, 2)
    """Source steps from each state kept as candidates of the next frame (hold, play on,
    skip one). Unit: candidate positions."""
    w_width: float = 0.25
    """Weight of the mouth-width mismatch against the lip-gap mismatch. Unit: cost per
    squared standard deviation."""
    w_opening: float = 2.0
    """Weight of the mismatch of the opening read from the pixels (what a viewer sees; the
    landmarks miss a slightly parted mouth). At 0.5 the sync score on face4 read 0.43.
    Unit: cost per squared standard deviation."""
    w_blur: float = 0.5
    """Cost of a mouth e times blurrier than others as open (Laplacian energy against the
    clip's own relation to the gap). Unit: cost per unit of log sharpness."""
    w_pose: float = 0.6
    """Weight of the soft head-pose mismatch (yaw, pitch) in the choice. Unit: cost per
    squared :attr:`pose_sigma`."""
    pose_sigma: tuple[float, float] = (0.05, 0.04)
    """Yaw and pitch differences that cost :attr:`w_pose`. Units: yaw as a share of the
    jaw width, pitch in template units."""
    w_pose_gate: float = 20.0
    """Weight of the squared pose-gate mismatch beyond :attr:`gate_range`'s first value: a
    mouth the gate would fade out is taken only when no close pose fits. Unit: cost per
    squared gate unit."""
    c_next: float = 0.0
    """Cost of playing the source forward one frame. Unit: cost."""
    c_skip: float = 0.25
    """Cost of skipping one source frame (plus half the look difference). Unit: cost."""
    c_hold: tuple[float, float] = (0.2, 2.0)
    """Cost of showing the same mouth again: in silence, in speech (a frozen mouth);
    interpolated by the voice activity. Unit: cost."""
    c_back: float = 1.2
    """Cost of stepping back one source frame. Unit: cost."""
    c_jump: float = 4.0
    """Cost of a cut to another part of the video, before the look difference. Unit:
    cost."""
    w_jump_look: float = 6.0
    """Weight of the difference in look (squared distance of the normalised lip
    thumbnails) of the two mouths of a cut. Unit: cost per unit of squared distance."""

    # -- the pose gate -------------------------------------------------------------------------
    gate_sigma: tuple[float, float, float, float] = (0.05, 0.06, 0.15, float(np.log(1.4)))
    """Units of the pose-gate mismatch: yaw (share of the jaw width), pitch (template
    units; looser than :attr:`pose_sigma` as a smile lifts it), roll (radians) and the log
    of the crop's magnification (a mouth blown up from a smaller face is blurred)."""
    gate_range: tuple[float, float] = (1.5, 3.0)
    """Mismatch (root of the summed squares of the gate's terms) up to which the source
    mouth is used in full, and from which only the frame's own mouth. Unit: gate units."""
    gate_ease: int = 3
    """The switch between the source mouth and the frame's own eases over this many frames:
    the share changes by at most 1/gate_ease a frame. Unit: frames."""

    # -- rendering -----------------------------------------------------------------------------
    residual: tuple[float, float] = (1.0, 1.0)
    """Share of the remaining lip-gap error the chosen mouth is warped by: (closing,
    opening). The full share makes the lips follow the speech exactly where the video
    has no mouth that opens just as far (opening 0.8 left the mouth a little behind the
    speech: mean sync score 0.737 against 0.744). Unit: share."""
    open_extra: float = 1.0
    """The chosen mouth may be opened by at most this share of its own gap (a closed mouth
    is never torn open). Unit: share."""
    register_max: float = 0.12
    """Largest registration shift trusted (ECC of the nose base). Unit: interocular
    distances."""
    register_max_angle: float = 0.1
    """Largest registration rotation trusted. Unit: radians."""
    register_min_cc: float = 0.5
    """Least correlation of the registered patches for the registration to be used. Unit:
    correlation coefficient."""
    register_iterations: int = 50
    """Most ECC iterations of the registration. Unit: iterations."""
    register_eps: float = 1e-4
    """ECC convergence threshold (change of the correlation). Unit: correlation."""
    alpha_core: float = 0.55
    """Share of the mask ellipse's radius kept at full strength before it feathers out.
    Unit: share of the radius."""
    gain_range: tuple[float, float] = (0.6, 1.6)
    """Range of the per-channel colour gain fitted on the skin ring. Unit: factor."""
    colour_gain: float = 0.15
    """Share of a new colour fit taken per frame while a source run plays on. Unit:
    share."""
    jaw_weights: tuple[tuple[int, float], ...] = (
        (8, 1.0),
        (7, 0.9),
        (9, 0.9),
        (6, 0.68),
        (10, 0.68),
        (5, 0.39),
        (11, 0.39),
        (4, 0.13),
        (12, 0.13),
    )
    """Jaw landmark -> share of the chin's displacement it follows (the viseme engine's
    jaw weights, relative to the chin). Unit: share."""

    # -- the mouth index -----------------------------------------------------------------------
    mask_across: float = 0.74
    """Mouth mask ellipse's half-axis across. Unit: mouth widths."""
    mask_up: float = 0.9
    """Mouth mask ellipse's half-axis up. Unit: share of the distance from the mouth's
    centre to the nose base."""
    mask_down: float = 0.62
    """Mouth mask ellipse's half-axis down. Unit: share of the distance from the mouth's
    centre to the chin."""
    crop_margin: float = 1.2
    """Stored crops cover the mask ellipse enlarged by this. Unit: factor."""
    max_mouth_px: float = 200.0
    """Crops of larger mouths are stored downscaled to this mouth width. Unit: pixels."""
    raw_budget_bytes: int = 160 * 1024 * 1024
    """Above this total size the crops are stored JPEG-coded. Unit: bytes."""
    jpeg_quality: int = 94
    """JPEG quality of coded crops. Unit: OpenCV quality, 0..100."""
    thumb: tuple[int, int] = (24, 16)
    """Size (width, height) of the appearance thumbnail of the lips. Unit: pixels."""
    candidate_cap: int = 1500
    """Most candidate mouths stored; longer videos keep runs chosen to cover the mouth
    shapes. Unit: frames."""
    candidate_run: int = 6
    """Length of the runs of consecutive frames kept when the candidates are capped. Unit:
    frames."""


#: The values the engine was measured with (docs/QUALITY.md).
DEFAULT_TUNING = RetrievalTuning()
