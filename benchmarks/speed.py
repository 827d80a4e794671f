"""Speed and memory benchmark: seconds per stage, frames per second, real-time factor and
peak RSS per engine and resolution, plus peak RSS for a long input against a short one.

    python -m benchmarks.speed                       # full run, writes docs/BENCHMARKS.md
    python -m benchmarks.speed --smoke --out /tmp/b  # tiny inputs (what the test suite runs)

Each case runs in a fresh child process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    OUT,
    ROOT,
    SHARED_MEDIA,
    big_photo,
    machine,
    random_wav2lip_weights,
    speech,
    talking_video,
)

STAGES = (
    "decode",
    "shots",
    "detect",
    "identity",
    "audio_features",
    "engine",
    "enhance",
    "composite",
    "convert",
    "encode",
)


@dataclass(frozen=True)
class Case:
    engine: str
    height: int
    seconds: float
    device: str = "cpu"
    enhancer: str = "none"
    photo_mp: float = 0.0  # > 0: a still photo of this many megapixels instead of a video
    cuts: int = 0  # > 0: edited footage, this many cuts between three people
    person: str = ""  # a shared clip: one shot of that person in the edited footage's layout

    @property
    def name(self) -> str:
        if self.cuts:
            return f"{self.engine}-{self.height}p-{self.seconds:g}s-cuts{self.cuts}-{self.device}"
        if self.person:
            who = Path(self.person).stem
            return f"{self.engine}-{self.height}p-{self.seconds:g}s-{who}-{self.device}"
        if self.photo_mp:
            return f"{self.engine}-photo{self.photo_mp:g}mp-{self.seconds:g}s-{self.device}"
        return f"{self.engine}-{self.height}p-{self.seconds:g}s-{self.device}"


def run_one(case: dict[str, Any]) -> dict[str, Any]:
    """Runs in the child: one pipeline run, its result and this process's peak RSS."""
    import lipsync

    t0 = time.perf_counter()
    result = lipsync.run(
        case["video"],
        case["audio"],
        case["output"],
        engine=case["engine"],
        enhancer=case["enhancer"],
        device=case["device"],
        models_dir=Path(case["models_dir"]),
    )
    wall = time.perf_counter() - t0
    data = result.to_dict()
    data["wall_total_s"] = wall
    data["peak_rss_mb"] = peak_rss_mb()
    return data


def peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(case: Case, out: Path, models_dir: Path) -> dict[str, Any]:
    if case.photo_mp:
        video = big_photo(case.photo_mp, out / f"photo_{case.photo_mp:g}mp.jpg")
    elif case.cuts:
        from benchmarks.edited import widescreen_cuts

        video = widescreen_cuts(out, case.height, case.seconds, case.cuts).path
    elif case.person:
        from benchmarks.edited import widescreen_shot

        video = widescreen_shot(out, case.height, case.seconds, case.person)
    else:
        video = talking_video(
            case.height, case.seconds, out / f"in_{case.height}p_{case.seconds:g}s.mp4"
        )
    audio = speech(case.seconds, out / f"speech_{case.seconds:g}s.wav")
    spec = {
        "engine": case.engine,
        "enhancer": case.enhancer,
        "device": case.device,
        "video": str(video),
        "audio": str(audio),
        "models_dir": str(models_dir),
        "output": str(out / f"out_{case.name}.mp4"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed", "--one", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def _median_run(case: Case, out: Path, models_dir: Path, repeat: int) -> dict[str, Any]:
    """``repeat`` runs of ``case``; the one with the median wall time (an error if all failed)."""
    return _median_of([_child(case, out, models_dir) for _ in range(max(1, repeat))])


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (an error if all failed)."""
    good = sorted((x for x in runs if "error" not in x), key=_wall)
    return good[len(good) // 2] if good else runs[0]


def _alternated(
    cases: list[Case], out: Path, models_dir: Path, repeat: int
) -> list[tuple[Case, dict[str, Any]]]:
    """Each case ``repeat`` times, the cases taking turns (so a slow minute of a shared
    machine falls on all of them); per case the run with the median wall time."""
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in cases}
    for _ in range(max(1, repeat)):
        for c in cases:
            r = _child(c, out, models_dir)
            print(f"edited {c.name}: {r.get('wall_s', r.get('error'))}", flush=True)
            runs[c.name].append(r)
    return [(c, _median_of(runs[c.name])) for c in cases]


def _wall(r: dict[str, Any]) -> float:
    return float(r.get("wall_s", 0.0))


def _row(case: Case, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {case.engine} | {case.height}p | {case.device} | error: {r['error']} |"
    frames = r["frames"]
    t = r["timings"]
    cells = []
    for s in STAGES:
        sec = t.get(s, 0.0)
        cells.append(f"{sec:.2f} ({frames / sec:.0f})" if sec > 0 else "-")
    return (
        f"| {case.engine} | {case.height}p | {case.device} | {frames} | "
        + " | ".join(cells)
        + f" | {r['wall_s']:.1f} | **{r['realtime_factor']:.2f}** | {r['peak_rss_mb']:.0f} |"
    )


def markdown(
    results: list[tuple[Case, dict[str, Any]]],
    memory: list[tuple[Case, dict[str, Any]]],
    info: dict[str, str],
    seconds: float,
    repeat: int = 1,
    photos: list[tuple[Case, dict[str, Any]]] | None = None,
    edits: list[tuple[Case, dict[str, Any]]] | None = None,
) -> str:
    head = (
        "| engine | input | device | frames | "
        + " | ".join(STAGES)
        + " | total s | RTF | peak RSS MB |"
    )
    sep = "|" + "---|" * (len(STAGES) + 7)
    lines = [
        "# Benchmarks",
        "",
        "Produced by `python -m benchmarks.speed` (see `make bench`). Machine: "
        f"{info['cores']} cores, {info['cpu']}, {info['memory']} RAM, GPU: {info['gpu']}, "
        f"Python {info['python']}.",
        "",
        f"## Seconds per stage ({seconds:g} s inputs at 25 fps)",
        "",
        "Each cell is seconds (frames per second). RTF = processing seconds per second of "
        "video (lower is faster); it includes probing, face detection/tracking over the whole "
        "input and model loading. Wav2Lip engines run random-initialised weights in the "
        "published layouts (the speed does not depend on the values). `convert` is the "
        "I420<->RGB conversion of frames that have a face; `decode` covers both passes "
        "(analysis on luma, render on I420)."
        + (f" Each row is the median-wall run of {repeat}." if repeat > 1 else ""),
        "",
        head,
        sep,
        *[_row(c, r) for c, r in results],
    ]
    if memory:
        lines += [
            "",
            f"## Peak memory against input length (720p, {memory[0][0].engine})",
            "",
            "| input | frames | peak RSS MB |",
            "|---|---|---|",
        ]
        for c, r in memory:
            if "error" not in r:
                lines.append(f"| {c.seconds:g} s | {r['frames']} | {r['peak_rss_mb']:.0f} |")
        ok = [r for _, r in memory if "error" not in r]
        if len(ok) == 2:
            growth = (ok[1]["peak_rss_mb"] / ok[0]["peak_rss_mb"] - 1) * 100
            lines += ["", f"Growth from the short to the long input: {growth:+.1f}%."]
    if photos:
        lines += [
            "",
            "## Large photos",
            "",
            "A JPEG portrait of a phone photo's size with speech; the face is rendered at the "
            "working scale (a face about 400 px wide) and blended back at full resolution.",
            "",
            "| engine | photo | speech | frames | total s | peak RSS MB |",
            "|---|---|---|---|---|---|",
        ]
        for c, r in photos:
            if "error" in r:
                lines.append(
                    f"| {c.engine} | {c.photo_mp:g} MP | {c.seconds:g} s | error: {r['error']} |"
                )
                continue
            lines.append(
                f"| {c.engine} | {c.photo_mp:g} MP | {c.seconds:g} s | {r['frames']} | "
                f"{r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} |"
            )
    if edits:
        lines += edited_section(edits)
    lines += targets(results, memory, photos)
    return "\n".join(lines) + "\n"


TARGET_CUTS_RATIO = 1.15  # edited footage (6 cuts) against one shot of the same length


def edited_section(edits: list[tuple[Case, dict[str, Any]]]) -> list[str]:
    """Edited footage against one shot of the same length and size, in the same run: the
    default single shot (one person) and one shot of each person the edited video cuts
    between."""
    lines = [
        "",
        "## Edited footage",
        "",
        "A video cut between three people (the shared clips in turn, each shot in the same "
        "16:9 layout as the inputs above) against single shots of the same length, in the "
        "same run, the cases taking turns: the default single shot above, and one uncut shot "
        "of each of the three people in the edited video's own layout. `shots` is the cut "
        "detector, `identity` the face embeddings that group the shots into people (two per "
        "shot), `source_analysis` the retrieval index (one per person).",
        "",
        "| input | frames | shots | detect | identity | source_analysis | engine | encode "
        "| total s | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, r in edits:
        if "error" in r:
            lines.append(f"| {c.name} | error: {r['error']} |")
            continue
        t = r["timings"]
        cells = [
            f"{t.get(k, 0.0):.2f}"
            for k in ("shots", "detect", "identity", "source_analysis", "engine", "encode")
        ]
        if c.cuts:
            what = f"{c.cuts} cuts"
        elif c.person:
            what = f"one shot of {Path(c.person).stem}"
        else:
            what = "one shot (the default input)"
        lines.append(
            f"| {c.height}p {c.seconds:g} s, {what} | {r['frames']} | "
            + " | ".join(cells)
            + f" | {r['wall_s']:.1f} | {r['realtime_factor']:.2f} |"
        )
    ok = {c: r for c, r in edits if "error" not in r}
    cut = [(c, r) for c, r in ok.items() if c.cuts]
    plain = [r for c, r in ok.items() if not c.cuts and not c.person]
    alone = {c.person: r["wall_s"] for c, r in ok.items() if c.person}
    if cut and plain:
        ratio = cut[0][1]["wall_s"] / plain[0]["wall_s"]
        verdict = "met" if ratio <= TARGET_CUTS_RATIO else "**missed**"
        lines += [
            "",
            f"Edited footage takes {ratio:.2f}x the default single shot's time "
            f"(target <= {TARGET_CUTS_RATIO}x): {verdict}.",
        ]
    if cut and alone:
        from benchmarks.edited import cut_shares

        (c_cut, r_cut), *_ = cut
        shares = cut_shares(c_cut.seconds, c_cut.cuts)
        if set(alone) == set(shares):
            mean = sum(shares[p] * alone[p] for p in shares)
            ratio = r_cut["wall_s"] / mean
            verdict = "met" if ratio <= TARGET_CUTS_RATIO else "**missed**"
            lines += [
                "",
                f"Against uncut shots of the same {len(alone)} people ({mean:.1f} s: their "
                "times weighted by each one's share of the cut video's frames) it takes "
                f"{ratio:.2f}x: {verdict}. This isolates what the cuts cost from what the "
                "people cost (faces of other sizes and textures cost the engine and x264 "
                "more or less per frame).",
            ]
    return lines


# The project's targets on a 2-core CPU (issue "Measure it"): engine -> (device, RTF at 720p).
TARGET_RTF = {
    ("viseme", "cpu"): 0.5,
    ("retrieval", "cpu"): 0.6,
    ("wav2lip", "cpu"): 1.5,
    ("wav2lip-onnx", "cpu"): 1.5,
    ("wav2lip", "cuda"): 0.1,
    ("wav2lip-onnx", "cuda"): 0.1,
}
TARGET_RSS_MB = 1536.0
TARGET_GROWTH = 10.0
TARGET_RTF_1080 = {("retrieval", "cpu"): 1.2}  # the default engine at 1080p (issue 13)
TARGET_PHOTO_S = 30.0  # a 12 MP photo with 10 s of speech, seconds


def targets(
    results: list[tuple[Case, dict[str, Any]]],
    memory: list[tuple[Case, dict[str, Any]]],
    photos: list[tuple[Case, dict[str, Any]]] | None = None,
) -> list[str]:
    """A generated section: each target, the measured number, and the stage that bounds it."""
    lines = [
        "",
        "## Targets",
        "",
        "| target | measured | met | largest stage |",
        "|---|---|---|---|",
    ]
    for case, r in results:
        goal = (TARGET_RTF if case.height == 720 else TARGET_RTF_1080).get(
            (case.engine, case.device)
        )
        if goal is None or case.height not in (720, 1080) or "error" in r:
            continue
        stage, sec = max(r["timings"].items(), key=lambda kv: kv[1])
        share = sec / r["wall_s"] * 100
        rtf = r["realtime_factor"]
        met = "yes" if rtf <= goal else f"no, by {rtf - goal:.2f}"
        lines.append(
            f"| {case.engine} {case.device} RTF <= {goal:g} at {case.height}p | {rtf:.2f} | {met} "
            f"| {stage} {sec:.1f} s ({share:.0f}% of the run) |"
        )
    worst = max((r["peak_rss_mb"] for _, r in results if "error" not in r), default=0.0)
    lines.append(
        f"| peak RSS <= {TARGET_RSS_MB:.0f} MB | {worst:.0f} MB (largest case) | "
        f"{'yes' if worst <= TARGET_RSS_MB else 'no'} | - |"
    )
    ok = [r for _, r in memory if "error" not in r]
    if len(ok) == 2:
        growth = (ok[1]["peak_rss_mb"] / ok[0]["peak_rss_mb"] - 1) * 100
        lines.append(
            f"| long input within {TARGET_GROWTH:g}% of short | {growth:+.1f}% | "
            f"{'yes' if growth <= TARGET_GROWTH else 'no'} | - |"
        )
    for case, r in photos or []:
        if case.engine != "retrieval" or "error" in r:
            continue
        wall = r["wall_s"]
        lines.append(
            f"| {case.photo_mp:g} MP photo + {case.seconds:g} s of speech in under "
            f"{TARGET_PHOTO_S:g} s ({case.engine}) | {wall:.1f} s | "
            f"{'yes' if wall < TARGET_PHOTO_S else 'no'} | - |"
        )
    if not any(c.device == "cuda" for c, _ in results):
        lines.append(
            "| wav2lip cuda RTF <= 0.1 at 720p | not measured: no GPU on this machine | - | - |"
        )
    return lines


def _sections(doc: str) -> dict[str, str]:
    """A markdown document's ``## `` sections by heading (each with its heading line)."""
    out: dict[str, str] = {}
    heading = ""
    for line in doc.splitlines(keepends=True):
        if line.startswith("## "):
            heading = line.strip()
        if heading:
            out[heading] = out.get(heading, "") + line
    return out


def keep_other_sections(new: str, old: str) -> str:
    """``new`` followed by the sections of the document it replaces that it does not write
    itself (e.g. "MuseTalk 1.5 networks on CPU", written by ``benchmarks.musetalk_cpu``)."""
    written = _sections(new)
    kept = [text for heading, text in _sections(old).items() if heading not in written]
    return new.rstrip("\n") + "\n" + "".join("\n" + text.rstrip("\n") + "\n" for text in kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--engines", default="viseme,retrieval,wav2lip,wav2lip-onnx")
    parser.add_argument("--heights", default="720,1080")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=300.0,
        help="length of the memory-growth input (0 to skip)",
    )
    parser.add_argument(
        "--memory-engine",
        default=None,
        help="engine of the memory-growth runs (default: the default engine)",
    )
    parser.add_argument(
        "--photo-mp",
        type=float,
        default=12.0,
        help="megapixels of the large-photo case (0 to skip)",
    )
    parser.add_argument("--photo-seconds", type=float, default=10.0)
    parser.add_argument(
        "--cuts",
        type=int,
        default=6,
        help="cuts in the edited-footage case, run against one shot (0 to skip; needs the "
        "shared clips)",
    )
    parser.add_argument("--cuts-seconds", type=float, default=60.0)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--out", type=Path, default=OUT / "speed")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, no doc update")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per case; the run with the median wall time is reported",
    )
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    if args.smoke:
        args.heights, args.seconds, args.long_seconds = "240", 1.0, 2.0
        args.engines = "viseme,wav2lip-onnx"
    devices = ["cpu"]
    if "cuda" in args.devices.split(","):
        import torch

        if torch.cuda.is_available():
            devices.append("cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    models_dir = random_wav2lip_weights(args.out / "models")
    results = []
    for height in (int(h) for h in args.heights.split(",")):
        for engine in args.engines.split(","):
            for device in devices if engine != "viseme" else ["cpu"]:
                case = Case(engine, height, args.seconds, device)
                r = _median_run(case, args.out, models_dir, args.repeat)
                print(_row(case, r), flush=True)
                results.append((case, r))
    from lipsync.options import RunOptions

    photos: list[tuple[Case, dict[str, Any]]] = []
    if args.photo_mp and not args.smoke:
        for engine in dict.fromkeys([RunOptions().engine, "viseme"]):
            case = Case(engine, 0, args.photo_seconds, photo_mp=args.photo_mp)
            r = _median_run(case, args.out, models_dir, args.repeat)
            print(f"photo {case.name}: {r.get('wall_s', r.get('error'))}", flush=True)
            photos.append((case, r))
    edits: list[tuple[Case, dict[str, Any]]] = []
    if args.cuts and not args.smoke and (SHARED_MEDIA / "video_videoretalking_face4.mp4").exists():
        from benchmarks.edited import CUT_PEOPLE

        engine, secs = RunOptions().engine, args.cuts_seconds
        cases = [Case(engine, 720, secs), Case(engine, 720, secs, cuts=args.cuts)]
        cases += [Case(engine, 720, secs, person=p) for p in CUT_PEOPLE]
        edits = _alternated(cases, args.out, models_dir, args.repeat)
    memory: list[tuple[Case, dict[str, Any]]] = []
    if args.long_seconds:
        mem_h = 240 if args.smoke else 720
        mem_engine = args.memory_engine or ("viseme" if args.smoke else RunOptions().engine)
        for secs in (args.seconds, args.long_seconds):
            case = Case(mem_engine, mem_h, secs)
            r = _child(case, args.out, models_dir)
            print(f"memory {case.name}: {r.get('peak_rss_mb', r.get('error'))}", flush=True)
            memory.append((case, r))
    doc = markdown(results, memory, machine(), args.seconds, args.repeat, photos, edits)
    if args.smoke:
        (args.out / "BENCHMARKS.md").write_text(doc)
    else:
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        if args.doc.is_file():
            doc = keep_other_sections(doc, args.doc.read_text())
        args.doc.write_text(doc)
    print(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
