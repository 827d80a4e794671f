"""The ``viseme`` engine's declaration (read without importing the engine)."""

from __future__ import annotations

from lipsync.enginespec import EngineSpec

ENGINE = EngineSpec(
    name="viseme",
    factory="lipsync.engines.viseme.engine:VisemeEngine",
    summary="weight-free: mouth shapes from the speech, landmark-driven warp",
    about="For stills (and the fallback of `retrieval`): mouth shapes from the speech itself "
    "(voice activity with silero-vad's bundled model, formant-band energies for opening and "
    "rounding, closure dips for p/b/m, coarticulation smoothing); the person's own lower "
    "face is re-shaped by a landmark-driven thin-plate warp (lips, corners and jaw move "
    "together), squeezed lips are sealed, and an opened mouth gets a shaded interior "
    "(cavity, teeth, tongue).",
)
