"""The ``lipsync`` command line: ``run``, ``models``, ``probe``, ``evaluate``.

Argument parsing happens only in :func:`main`; importing this module does nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from lipsync.errors import InvalidOption, LipsyncError
from lipsync.options import (
    DETECTORS,
    MAX_MAX_SIZE,
    MIN_MAX_SIZE,
    SYNC_MODES,
    MediaLimits,
    RunOptions,
)

EXIT_INPUT_ERROR = 2
EXIT_INTERNAL = 1


def _face_point(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("face point is X,Y in pixels, e.g. 320,200") from None
    return x, y


def build_parser() -> argparse.ArgumentParser:
    from lipsync.engines import ENGINES

    parser = argparse.ArgumentParser(
        prog="lipsync", description="Re-animate the mouth in a face video to new speech."
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="lip-sync a video or portrait to a speech recording")
    run.add_argument("--video", type=Path, required=True, help="face video or still image")
    run.add_argument("--audio", type=Path, required=True, help="speech (audio or video file)")
    run.add_argument("--output", "-o", type=Path, required=True, help="output .mp4")
    run.add_argument(
        "--engine",
        default=RunOptions.engine,
        choices=sorted(ENGINES),
        help="generator (default: %(default)s; it re-uses the video's own mouths and falls "
        "back to the viseme warp for stills and videos with too little mouth movement)",
    )
    run.add_argument("--checkpoint", type=Path, help="weights file for engines that need one")
    run.add_argument("--enhancer", default="classical", help="none | classical | onnx:PATH")
    run.add_argument("--sync-mode", default="loop", choices=SYNC_MODES)
    run.add_argument("--fps", type=float, default=25.0, help="frame rate for still images")
    run.add_argument(
        "--pads",
        type=int,
        nargs=4,
        default=(0, 10, 0, 0),
        metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
        help="face box padding (px)",
    )
    run.add_argument(
        "--box",
        type=int,
        nargs=4,
        metavar=("Y1", "Y2", "X1", "X2"),
        help="fixed face box for every frame, no detection (as Wav2Lip's --box)",
    )
    pick = run.add_mutually_exclusive_group()
    pick.add_argument("--face-index", type=int, help="n-th face from the left (0-based)")
    pick.add_argument("--face-point", type=_face_point, help="X,Y inside the wanted face")
    run.add_argument(
        "--detector",
        default="dlib",
        choices=DETECTORS,
        help="face detector: dlib (built in) or s3fd (needs models/s3fd.pth)",
    )
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--blend", type=float, default=1.0, help="0..1 strength of the new mouth")
    run.add_argument("--crf", type=int, default=12, help="x264 quality (lower is better)")
    run.add_argument(
        "--max-size",
        type=int,
        metavar="N",
        help="scale the output so its longer side is at most N pixels "
        f"({MIN_MAX_SIZE}..{MAX_MAX_SIZE}; default: the input's resolution)",
    )
    run.add_argument("--models-dir", type=Path, help="where weights live (default ./models)")
    run.add_argument(
        "--max-duration",
        type=float,
        default=MediaLimits.max_duration_s,
        help="refuse inputs longer than this many seconds",
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    models = sub.add_parser("models", help="list supported weights files and what is present")
    models.add_argument("--models-dir", type=Path)
    models.add_argument("--json", action="store_true")

    probe = sub.add_parser("probe", help="inspect a media file the way a job would")
    probe.add_argument("path", type=Path)

    ev = sub.add_parser("evaluate", help="measure how well a video's mouth follows its speech")
    ev.add_argument("--video", type=Path, required=True, help="the lip-synced video to measure")
    ev.add_argument(
        "--audio",
        type=Path,
        help="the speech it should follow (default: the video's own audio track)",
    )
    ev.add_argument(
        "--reference", type=Path, help="the input video it was made from (what must not change)"
    )
    ev.add_argument(
        "--models-dir", type=Path, help="where syncnet_v2.model is looked for (default ./models)"
    )
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


class ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.t0 = time.monotonic()
        self._last = -1

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        pct = int(fraction * 100)
        if pct == self._last:
            return
        self._last = pct
        filled = pct * 30 // 100
        elapsed = time.monotonic() - self.t0
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {pct:3d}% {stage:<8} {elapsed:6.1f}s"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _summary(result_dict: dict[str, object]) -> str:
    r = result_dict
    timings = r["timings"]
    assert isinstance(timings, dict)
    lines = [
        f"wrote {r['output']}",
        f"  {r['width']}x{r['height']} @ {float(r['fps']):g} fps, {r['frames']} frames, "  # type: ignore[arg-type]
        f"{float(r['duration_s']):.2f} s",  # type: ignore[arg-type]
        f"  frames with a face: {r['face_frames']}, without: {r['no_face_frames']}",
        f"  engine {r['engine']}, enhancer {r['enhancer']}, sync mode {r['sync_mode']}",
        "  seconds per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()),
        f"  total {float(r['wall_s']):.2f} s, real-time factor {r['realtime_factor']}",  # type: ignore[arg-type]
    ]
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    import lipsync

    kwargs = {}
    if args.models_dir is not None:
        kwargs["models_dir"] = args.models_dir
    options = RunOptions(
        engine=args.engine,
        checkpoint=args.checkpoint,
        enhancer=args.enhancer,
        sync_mode=args.sync_mode,
        fps=args.fps,
        pads=tuple(args.pads),
        box=tuple(args.box) if args.box else None,
        face_index=args.face_index,
        face_point=args.face_point,
        detector=args.detector,
        device=args.device,
        batch_size=args.batch_size,
        blend=args.blend,
        crf=args.crf,
        max_size=args.max_size,
        limits=MediaLimits(max_duration_s=args.max_duration),
        **kwargs,
    )
    bar = ProgressBar(sys.stderr, enabled=not args.no_progress and not args.json)
    try:
        result = lipsync.run(args.video, args.audio, args.output, options, progress=bar)
    finally:
        bar.done()
    data = result.to_dict()
    print(json.dumps(data, indent=2) if args.json else _summary(data))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from lipsync.models import format_models_table, list_models
    from lipsync.options import default_models_dir

    statuses = list_models(args.models_dir or default_models_dir())
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(s) for s in statuses], indent=2, default=str))
    else:
        print(format_models_table(statuses))
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from lipsync.media.probe import probe

    print(json.dumps(probe(args.path).to_dict(), indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lipsync.evaluate import evaluate, format_report

    report = evaluate(args.video, args.audio, reference=args.reference, models_dir=args.models_dir)
    data = report.to_dict()
    print(json.dumps(data, indent=2) if args.json else format_report(data))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "run": _cmd_run,
        "models": _cmd_models,
        "probe": _cmd_probe,
        "evaluate": _cmd_evaluate,
    }
    try:
        return handlers[args.command](args)
    except LipsyncError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as exc:
        # Option values that slipped past argparse (e.g. RunOptions validation).
        err = InvalidOption(str(exc))
        print(f"error [{err.code}]: {err.message}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except Exception as exc:  # a bug: say so in one line, details only with --verbose
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(
            f"error [internal_error]: {type(exc).__name__}: {exc} "
            "(run with --verbose for details; please report this)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
