"""``lipsync evaluate``'s numbers for a finished job's video (its ``result.quality``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from service.errors import public_message
from service.settings import Settings

log = logging.getLogger("lipsync.worker")

EVALUATE_SHARE = 0.9  # of the job's progress bar: the pipeline; the rest is the evaluation


def measure_quality(
    video: Path, audio: Path, settings: Settings, source: Path | None = None
) -> dict[str, Any]:
    """``lipsync evaluate``'s numbers for a finished output (``quality``), or why there are
    none (``quality_note``): a measurement problem never fails the job. Running past the
    job's time limit does: the limit is the whole job's budget, evaluation included.

    ``source`` is the job's input: when it is a video (not a still) it is the reference, for
    the articulation and mouth sharpness ratios (None for stills)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from lipsync.errors import LipsyncError
    from lipsync.evaluate import evaluate
    from lipsync.media.probe import probe

    t0 = time.monotonic()
    reference = None
    if source is not None:
        try:
            if not probe(source, settings.media_limits, kind="video").is_image:
                reference = source
        except LipsyncError:  # measured without the input, then
            log.warning("probing %s for the evaluation failed", source.name, exc_info=True)
    try:
        report = evaluate(
            video, audio, reference=reference, models_dir=settings.models_dir, visemes=False
        )
    except SoftTimeLimitExceeded:
        raise
    except LipsyncError as exc:
        return {"quality": None, "quality_note": public_message(exc.message, settings)}
    except Exception as exc:
        log.warning("evaluating %s failed", video.name, exc_info=True)
        return {"quality": None, "quality_note": f"evaluation failed ({type(exc).__name__})"}
    cal = report.sync.calibrated
    ref = report.reference_metrics
    return {
        "quality": {
            "face_found_rate": report.face_found_rate,
            "sync_offset_frames": None if cal is None else cal.offset_frames,
            "sync_offset_ms": None if cal is None else cal.offset_ms,
            "sync_score": None if cal is None else cal.score,
            "sync_confidence": None if cal is None else cal.confidence,
            "envelope_r_at_zero": report.sync.r_at_zero,
            "pause_frames": report.pauses.pause_frames,
            "pause_closed_share": report.pauses.closed_share,
            "lse_d": None if report.lse is None else report.lse.lse_d,
            "lse_c": None if report.lse is None else report.lse.lse_c,
            "lse_note": report.lse_note,
            # With a video input: the output's speech-time opening and lip-box sharpness
            # over the input's own (None for stills, or with too few frames).
            "articulation_ratio": None if ref is None else ref.articulation_ratio,
            "sharpness_ratio": None if ref is None else ref.sharpness_ratio,
            "seconds": round(time.monotonic() - t0, 3),
        }
    }
