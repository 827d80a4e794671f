"""The ``lipsync`` command line: ``run``, ``engines``, ``models``, ``probe``, ``evaluate``,
and ``remote run`` (the same job on a running service, through :mod:`lipsync.client`).

Argument parsing happens only in :func:`main`; importing this module does nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from lipsync.errors import InvalidOption, LipsyncError, OutputError
from lipsync.options import MediaLimits, OptionSpec, RunOptions, option_specs, public_specs

EXIT_INPUT_ERROR = 2
EXIT_INTERNAL = 1


def _argument_type(spec: OptionSpec) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            if spec.kind == "json":  # checked with the job (error [invalid_option]: PATH)
                return _json_argument(text)
            return spec.parse(text)
        except InvalidOption as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    convert.__name__ = spec.kind  # argparse names it in "invalid ... value"
    return convert


def _json_argument(text: str) -> Any:
    """A structured option's value: the JSON itself, or a file holding it
    (``--segments segments.json``); decoded here, checked with the job's options."""
    if not text.lstrip().startswith(("[", "{")):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


class _IntsAction(argparse.Action):
    """An integers option given as separate words or one comma-separated word."""

    def __init__(self, *args: Any, spec: OptionSpec, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        try:
            setattr(namespace, self.dest, self.spec.parse(" ".join(values)))
        except InvalidOption as exc:
            parser.error(f"argument {option_string}: {exc.message}")


#: How a value beyond the choices is written in --help (a local run takes any file path,
#: a push only a file's name in the server's models/).
_PATTERN_FORMS = {r"onnx:.+": "onnx:PATH"}


def _extra_form(spec: OptionSpec, public: bool) -> str | None:
    """The form of the values a flag takes beyond its choices (``onnx:PATH``), if any."""
    pattern = spec.meta.public_pattern if public else spec.meta.pattern
    if not pattern:
        return None
    return (None if public else _PATTERN_FORMS.get(pattern)) or spec.meta.example or "VALUE"


def _help(spec: OptionSpec, public: bool = False) -> str:
    text = spec.meta.help
    choices = spec.choice_map()
    extra = _extra_form(spec, public)
    if choices:
        text += ": " + "; ".join(f"{k} - {v}" if v else k for k, v in choices.items())
        if extra:
            text += f"; or {extra}"
    if spec.meta.engines:
        text += f" [read by {', '.join(spec.meta.engines)}]"
    if spec.shown_default() is not None:
        text += f" (default: {spec.shown_default()})"
    return text.replace("%", "%%")


def _metavar(spec: OptionSpec, public: bool = False) -> str:
    choices = list(spec.choice_map())
    extra = _extra_form(spec, public)
    if extra:
        choices.append(extra)
    return "{" + ",".join(choices) + "}" if choices else spec.kind.upper()


def add_option_arguments(
    parser: argparse.ArgumentParser, specs: Iterable[OptionSpec] | None = None
) -> None:
    """One flag per declared job option (:func:`lipsync.options.option_specs`, or ``specs``:
    a push's, whose values are judged as a push's).

    Flags not given are left out of the namespace, so :class:`RunOptions` keeps its defaults.
    """
    public = specs is not None
    groups: dict[str, Any] = {}
    for spec in option_specs() if specs is None else specs:
        if not spec.meta.cli:
            continue
        target: Any = parser
        if spec.meta.group:
            if spec.meta.group not in groups:
                groups[spec.meta.group] = parser.add_mutually_exclusive_group()
            target = groups[spec.meta.group]
        if spec.kind == "bool":
            target.add_argument(
                spec.flag,
                action="store_true",
                default=argparse.SUPPRESS,
                help=_help(spec, public),
            )
            continue
        if spec.kind == "ints":  # "--pads 0 10 0 0" as well as "--pads 0,10,0,0"
            target.add_argument(
                spec.flag,
                nargs="+",
                action=_IntsAction,
                spec=spec,
                default=argparse.SUPPRESS,
                metavar=spec.meta.metavar,
                help=_help(spec, public),
            )
            continue
        target.add_argument(
            spec.flag,
            type=_argument_type(spec),
            default=argparse.SUPPRESS,
            metavar=spec.meta.metavar or _metavar(spec, public),
            help=_help(spec, public),
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipsync", description="Re-animate the mouth in a face video to new speech."
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="lip-sync a video or portrait to a speech recording")
    run.add_argument("--video", type=Path, required=True, help="face video or still image")
    run.add_argument(
        "--audio",
        type=Path,
        required=True,
        action="append",
        help="speech (audio or video file); with --segments, give it once per audio input "
        "(the segments number them from 0)",
    )
    run.add_argument("--output", "-o", type=Path, required=True, help="output .mp4")
    add_option_arguments(run)
    run.add_argument(
        "--max-duration",
        type=float,
        default=MediaLimits.max_duration_s,
        metavar="S",
        help="refuse inputs longer than this many seconds "
        f"(default: {MediaLimits.max_duration_s:g})",
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    engines = sub.add_parser(
        "engines",
        help="list the engines: what each is, its weights (and whether they are in the models "
        "directory) and the options it reads",
    )
    engines.add_argument("--models-dir", type=Path)
    engines.add_argument("--json", action="store_true", help="print the list as JSON")

    models = sub.add_parser(
        "models",
        help="list the bundled models and the supported weights files: licences, what is present",
    )
    models.add_argument("--models-dir", type=Path)
    models.add_argument(
        "--json",
        action="store_true",
        help="print {commercial_only, bundled, files} as JSON (files: state, hash, licence)",
    )
    models_sub = models.add_subparsers(dest="models_command", metavar="{pull}")
    pull = models_sub.add_parser(
        "pull",
        help="fetch weights files into the models directory, verified against their SHA-256",
        description="Fetch weights files from their published locations (Hugging Face hub "
        "files at a pinned revision through huggingface_hub, which honours HF_ENDPOINT, "
        "HF_TOKEN and its cache; other files over HTTPS), check each one's SHA-256 and only "
        "then move it under its name in the models directory. An interrupted pull resumes. "
        "Files without an automatable download are listed with where to get them.",
    )
    pull.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="an engine (musetalk), an enhancer or file (gfpgan, GFPGANv1.4.onnx, "
        "musetalkV15/unet.pth), or all-commercial (every file whose licence allows "
        "commercial use)",
    )
    pull.add_argument("--models-dir", type=Path, default=argparse.SUPPRESS)
    pull.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be fetched, from where, its size and licence; fetch nothing",
    )
    pull.add_argument(
        "--accept-licence",
        action="store_true",
        help="accept licences that do not allow commercial use without asking (for scripts)",
    )
    pull.add_argument("--force", action="store_true", help="fetch again files already present")
    pull.add_argument("--no-progress", action="store_true", help="no progress bars")

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
    _add_remote(sub)
    return parser


def _add_remote(sub: Any) -> None:
    remote = sub.add_parser("remote", help="use a running lip-sync service over HTTP")
    remote_sub = remote.add_subparsers(dest="remote_command", required=True)
    rr = remote_sub.add_parser(
        "run",
        help="push a job to a service, wait for it and download the result",
        description="Push a job to a running service (lipsync.client), show its progress, "
        "wait and download the MP4. Needs the client extra (httpx).",
    )
    rr.add_argument("--server", required=True, help="the service's URL, e.g. http://host:8000")
    rr.add_argument("--api-key", help="X-API-Key (default: $LIPSYNC_API_KEY)")
    video = rr.add_mutually_exclusive_group(required=True)
    video.add_argument("--video", type=Path, help="face video or still image to upload")
    video.add_argument("--video-url", help="or an http(s) URL the service fetches it from")
    audio = rr.add_mutually_exclusive_group(required=True)
    audio.add_argument(
        "--audio",
        type=Path,
        action="append",
        help="speech (audio or video file) to upload; with --segments, once per audio input",
    )
    audio.add_argument(
        "--audio-url",
        action="append",
        help="or an http(s) URL the service fetches it from (as --audio, repeatable)",
    )
    rr.add_argument("--output", "-o", type=Path, required=True, help="output .mp4")
    add_option_arguments(rr, public_specs())
    rr.add_argument("--idempotency-key", help="Idempotency-Key header: a retried push is one job")
    rr.add_argument(
        "--webhook-url",
        help="http(s) URL the service POSTs the final status to, signed (X-Lipsync-Signature)",
    )
    rr.add_argument(
        "--timeout", type=float, help="give up waiting after this many seconds (job goes on)"
    )
    rr.add_argument(
        "--no-evaluate",
        action="store_true",
        help="the service does not measure the result (evaluate=false); by default it "
        "measures it after the result is ready, and this waits for the numbers after the "
        "download",
    )
    rr.add_argument("--json", action="store_true", help="print the final status as JSON")
    rr.add_argument("--no-progress", action="store_true", help="no progress bar")


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


def _engine_line(r: dict[str, object]) -> str:
    """``engine X``, and the way it drew when that was another (retrieval on a still ran
    the viseme warp: the summary says so, and why)."""
    info = r.get("engine_info")
    path = info.get("path") if isinstance(info, dict) else None
    if not path or path == r["engine"]:
        return f"engine {r['engine']}"
    reason = info.get("reason") if isinstance(info, dict) else None
    return f"engine {r['engine']} (drew with {path}{f': {reason}' if reason else ''})"


def _summary(result_dict: dict[str, object]) -> str:
    r = result_dict
    timings = r["timings"]
    assert isinstance(timings, dict)
    lines = [
        f"wrote {r['output']}",
        f"  {r['width']}x{r['height']} @ {float(r['fps']):g} fps, {r['frames']} frames, "  # type: ignore[arg-type]
        f"{float(r['duration_s']):.2f} s",  # type: ignore[arg-type]
        f"  frames with a face: {r['face_frames']}, without: {r['no_face_frames']}",
        f"  {_engine_line(r)}, enhancer {r['enhancer']}, sync mode {r['sync_mode']}",
        "  seconds per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()),
        f"  total {float(r['wall_s']):.2f} s, real-time factor {r['realtime_factor']}",  # type: ignore[arg-type]
    ]
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    import lipsync

    given = {s.name: getattr(args, s.name) for s in option_specs() if hasattr(args, s.name)}
    options = RunOptions(**given, limits=MediaLimits(max_duration_s=args.max_duration))
    bar = ProgressBar(sys.stderr, enabled=not args.no_progress and not args.json)
    try:
        audio = args.audio[0] if len(args.audio) == 1 else args.audio
        result = lipsync.run(args.video, audio, args.output, options, progress=bar)
    finally:
        bar.done()
    data = result.to_dict()
    print(json.dumps(data, indent=2) if args.json else _summary(data))
    return 0


def _cmd_engines(args: argparse.Namespace) -> int:
    from lipsync.enginespec import EngineContext
    from lipsync.models import default_models_dir
    from lipsync.registry import engine_specs

    models_dir = args.models_dir or default_models_dir()
    rows = []
    for spec in engine_specs():
        try:
            spec.check(EngineContext(models_dir=models_dir))
            missing = None
        except LipsyncError as exc:
            missing = exc.message
        reads = [s.name for s in option_specs() if spec.name in s.meta.engines]
        rows.append((spec, missing, reads))
    if args.json:
        data = [
            {
                "name": spec.name,
                "summary": spec.summary,
                "needs_weights": spec.needs_weights,
                "weights": [m.filename for m in spec.weights],
                "ready": missing is None,
                "missing": missing,
                "options": reads,
            }
            for spec, missing, reads in rows
        ]
        print(json.dumps(data, indent=2))
        return 0
    for spec, missing, reads in rows:
        files = (" or " if spec.alternatives else ", ").join(m.filename for m in spec.weights)
        state = "" if not spec.weights else " (present)" if missing is None else " (missing)"
        print(f"{spec.name}: {spec.summary}")
        print(f"  weights: {files or 'none'}{state}")
        print(f"  options: {', '.join('--' + n.replace('_', '-') for n in reads) or '-'}")
        if missing is not None:
            print(f"  {missing}")
    print(f"\nWeights are looked up in {models_dir}/; lipsync models lists every file.")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from lipsync.licences import commercial_only_from_env, format_bundled, report
    from lipsync.models import format_models_table, list_models
    from lipsync.options import default_models_dir

    models_dir = args.models_dir or default_models_dir()
    if getattr(args, "models_command", None) == "pull":
        return _cmd_models_pull(args, models_dir)
    statuses = list_models(models_dir)
    mode = commercial_only_from_env()
    if args.json:
        from dataclasses import asdict

        licences = report(models_dir, mode)
        files = [
            {**asdict(s), "state": s.state, "commercial_use": lic["commercial_use"]}
            for s, lic in zip(statuses, licences["optional"], strict=True)
        ]
        data = {"commercial_only": mode, "bundled": licences["bundled"], "files": files}
        print(json.dumps(data, indent=2, default=str))
        return 0
    print("Bundled models (installed with the packages or by scripts/bootstrap.sh):")
    print(format_bundled(models_dir))
    print()
    print(f"Optional weights in {models_dir}/:")
    print(format_models_table(statuses))
    print()
    print(
        f"commercial-only mode: {'on' if mode else 'off'} "
        "(LIPSYNC_COMMERCIAL_ONLY=1 or --commercial-only refuses components marked NO)"
    )
    return 0


def _ask_licence(model: Any) -> bool:
    """On a terminal: may this file, whose licence does not allow commercial use, be fetched?"""
    if not sys.stdin.isatty():
        return False
    answer = input(f"{model.filename}: accept this licence and fetch it? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _cmd_models_pull(args: argparse.Namespace, models_dir: Path) -> int:
    from lipsync.pull import Puller, plan_lines, resolve_names, summary_lines

    models = resolve_names(args.names)
    if args.dry_run:
        print("\n".join(plan_lines(models, models_dir)))
        return 0
    puller = Puller(
        Path(models_dir),
        accept_licence=args.accept_licence,
        force=args.force,
        confirm=_ask_licence,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    outcomes = []
    for model in models:
        outcome = puller.pull(model)
        outcomes.append(outcome)
        if outcome.state == "manual":
            print(f"{model.filename}: not fetched: {outcome.note}")
        elif not outcome.ok:
            print(f"error [{outcome.code}]: {outcome.note}", file=sys.stderr)
        else:
            print(f"{model.filename}: {outcome.state}: {outcome.note}")
    print()
    print("\n".join(summary_lines(outcomes, Path(models_dir))))
    return 0 if all(o.ok for o in outcomes) else EXIT_INPUT_ERROR


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


def _one_or_list(values: list[Any] | None) -> Any:
    """A repeated flag's values: None, the one value, or the list (several audio inputs)."""
    return values[0] if values and len(values) == 1 else values


def _cmd_remote(args: argparse.Namespace) -> int:
    from lipsync.client import Client

    options = {s.name: getattr(args, s.name) for s in public_specs() if hasattr(args, s.name)}
    api_key = args.api_key or os.environ.get("LIPSYNC_API_KEY") or None
    _output_folder(args.output)  # before the upload, not after the render (as run does)
    bar = ProgressBar(sys.stderr, enabled=not args.no_progress and not args.json)
    with Client(args.server, api_key=api_key) as client:
        job = client.submit(
            video=args.video,
            audio=_one_or_list(args.audio),
            video_url=args.video_url,
            audio_url=_one_or_list(args.audio_url),
            webhook_url=args.webhook_url,
            idempotency_key=args.idempotency_key,
            evaluate=False if args.no_evaluate else None,
            **options,
        )
        try:
            status = job.wait(progress=bar, timeout=args.timeout)
        except KeyboardInterrupt:
            _cancel_quietly(job)
            raise
        finally:
            bar.done()
        job.download(args.output)
        if not args.json:
            print(f"wrote {args.output} (task {job.task_id})")
            print(_remote_summary(status.result or {}))
        quality = status.quality
        if quality is not None and not quality.final:
            if not args.json:
                print("measuring the lip sync (the video is ready; Ctrl-C leaves it)...")
            try:
                quality = job.wait_quality(timeout=args.timeout)
            except KeyboardInterrupt:
                print("left the measurement running on the service", file=sys.stderr)
                return 0
            status = job.status()
    if args.json:
        print(json.dumps({**status.raw, "output": str(args.output)}, indent=2))
    elif quality is not None:
        print(_quality_summary(quality.state, quality.note, quality.metrics))
    return 0


def _output_folder(output: Path) -> None:
    """Make the output's folder now (``lipsync run`` does the same), so a folder that
    cannot be made fails before anything is uploaded."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        message = f"{output.parent}: cannot make the output folder ({exc.strerror})"
        raise OutputError(message) from None


def _remote_summary(result: dict[str, Any]) -> str:
    if "frames" not in result:
        return ""
    engine = {"engine": result.get("engine"), "engine_info": {
        "path": result.get("engine_path"), "reason": result.get("engine_note")}}  # fmt: skip
    return (
        f"  {result['frames']} frames, {float(result.get('duration_s', 0)):.2f} s, "
        f"{_engine_line(engine)}"
    )


def _quality_summary(state: str, note: str | None, metrics: dict[str, Any] | None) -> str:
    if state != "ready" or not metrics:
        return f"  lip sync not measured: {state}{f' ({note})' if note else ''}"
    parts = []
    if metrics.get("sync_offset_ms") is not None:
        parts.append(f"offset {float(metrics['sync_offset_ms']):+.0f} ms")
    if metrics.get("sync_score") is not None:
        parts.append(f"score {float(metrics['sync_score']):.2f}")
    if metrics.get("pause_closed_share") is not None:
        parts.append(f"closed in pauses {float(metrics['pause_closed_share']):.0%}")
    if metrics.get("face_found_rate") is not None:
        parts.append(f"face found {float(metrics['face_found_rate']):.0%}")
    return "  lip sync: " + (", ".join(parts) or "measured")


def _cancel_quietly(job: Any) -> None:
    """Ctrl-C while waiting: the job is not wanted any more."""
    try:
        job.cancel()
        print(f"canceled job {job.task_id}", file=sys.stderr)
    except Exception as exc:
        print(f"could not cancel job {job.task_id}: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "run": _cmd_run,
        "engines": _cmd_engines,
        "models": _cmd_models,
        "probe": _cmd_probe,
        "evaluate": _cmd_evaluate,
        "remote": _cmd_remote,
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
