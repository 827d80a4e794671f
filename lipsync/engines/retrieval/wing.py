"""The ``retrieval`` engine's declaration (read without importing the engine)."""

from __future__ import annotations

from lipsync.enginespec import EngineSpec

ENGINE = EngineSpec(
    name="retrieval",
    factory="lipsync.engines.retrieval.engine:RetrievalEngine",
    summary="weight-free, photoreal: the person's own mouths from the input video",
    about="For videos: the person's own mouths, taken from the input's frames. The video's "
    "mouths are indexed by shape (pose-normalised openness, width, rounding, teeth) and "
    "appearance; the new speech's target shapes (calibrated on the video's own speech when "
    "it has any) choose a source mouth per frame by Viterbi (shape match vs continuity); "
    "the wanted opening follows the vowel's openness (open vowels wide, close vowels and "
    "p/b/m near shut); each chosen mouth is aligned by landmarks and registered on the nose "
    "and the skin beside it (ECC), colour-matched (filtered over time) and blended with a "
    "feathered lower-face mask, resampled once (bicubic) so teeth and lip texture stay "
    "sharp. A source mouth is used only where its head pose (yaw, pitch, roll and how much "
    "it would be magnified) is close to the frame's: where none is, the frame's own mouth "
    "is warped to the wanted shape instead, eased over 3 frames "
    '(`Result.engine_info["pose_gate"]`, also in `lipsync run --json`, counts the frames of '
    "each kind). Falls back to `viseme` for stills and videos with too little mouth variety "
    "(the result says why). Comparison with `viseme`: [docs/QUALITY.md](docs/QUALITY.md).",
)
