"""``python -m worker.evaluate_child ARGS_JSON``: one measurement (``lipsync evaluate`` of a
job's result) in a process of its own.

The quality task runs the measurement here rather than in its pool process because a
measurement must stop within a second of a cancel or a stop, and its face model runs long
native calls that hold the interpreter lock for seconds at a time: nothing in the process
that runs them (no thread, no signal handler) can act until they return. A child process
can be killed at once, and the memory the measurement used goes back with it.

``ARGS_JSON``: ``{"result", "audio", "source", "models_dir", "out", "started", limits...}``;
the child creates the file ``started`` as it calls ``lipsync evaluate`` itself (its imports
and the probe of the input are behind it: the measurement proper is under way), writes
``{"metrics": {...}}`` or ``{"error": {"code", "message"}}`` to ``out`` (never to stdout,
which libraries may print on) and exits 0. It dies with its parent (PDEATHSIG).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("lipsync.worker")


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """``lipsync evaluate``'s numbers for ``args["result"]``; ``source`` (the job's input)
    is the reference when it is a video (the articulation and sharpness ratios)."""
    from lipsync.errors import LipsyncError
    from lipsync.evaluate import evaluate
    from lipsync.media.probe import probe
    from lipsync.options import MediaLimits

    t0 = time.monotonic()
    source = Path(args["source"])
    limits = MediaLimits(**args.get("limits", {}))
    reference = None
    try:
        if not probe(source, limits, kind="video").is_image:
            reference = source
    except LipsyncError:  # measured without the input, then
        log.warning("probing %s for the evaluation failed", source.name, exc_info=True)
    if args.get("started"):
        Path(args["started"]).touch()
    report = evaluate(
        args["result"],
        args["audio"],
        reference=reference,
        models_dir=args.get("models_dir"),
        visemes=False,
    )
    cal = report.sync.calibrated
    ref = report.reference_metrics
    return {
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


def main(argv: list[str]) -> int:
    from lipsync.evaluate.cancel import die_with_parent

    die_with_parent()
    logging.basicConfig(level=logging.WARNING)
    args = json.loads(argv[1])
    out = Path(args["out"])
    try:
        answer: dict[str, Any] = {"metrics": measure(args)}
    except Exception as exc:
        from lipsync.errors import LipsyncError

        if isinstance(exc, LipsyncError):
            answer = {"error": {"code": exc.code, "message": exc.message}}
        else:
            log.warning("the evaluation failed", exc_info=True)
            answer = {"error": {"code": "internal_error", "message": type(exc).__name__}}
    partial = out.with_suffix(".part")
    partial.write_text(json.dumps(answer))
    partial.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
