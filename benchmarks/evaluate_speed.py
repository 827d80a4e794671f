"""How long the measurement takes against the lip-sync it measures, same job, same machine.

    python -m benchmarks.evaluate_speed              # 720p, 20 s, 3 rounds; writes its
                                                     # section of docs/BENCHMARKS.md
    python -m benchmarks.evaluate_speed --rounds 5 --json /tmp/ev.json
    python -m benchmarks.evaluate_speed --smoke --doc /tmp/B.md   # tiny, one round

Each round runs, one after the other and each as a user runs it (a subprocess: imports,
models, the work, the file): ``lipsync run`` on a 720p talking-head video and English
speech, then ``lipsync evaluate --reference`` on its output as the CLI runs it, then the
same measurement kept in one process (``processes=1`` through the Python API: the way it
ran before the later frames went to a second process), for comparison in the same run.
The ratio judged is the evaluation's wall time over ``lipsync run``'s, per round; medians
are published.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import OUT, ROOT, machine, speech, talking_video

BEGIN, END = "<!-- evaluate-speed:begin -->", "<!-- evaluate-speed:end -->"
LIPSYNC = [sys.executable, "-m", "lipsync.cli"]
TARGET_RATIO = 0.5
_ONE_PROCESS = (
    "import sys; from lipsync.evaluate import evaluate; "
    "evaluate(sys.argv[1], sys.argv[2], reference=sys.argv[3], processes=1)"
)


@dataclass
class Round:
    run_s: float
    evaluate_s: float
    one_process_s: float

    @property
    def ratio(self) -> float:
        return self.evaluate_s / self.run_s

    @property
    def one_process_ratio(self) -> float:
        return self.one_process_s / self.run_s


def _timed(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def one_round(video: Path, audio: Path, out: Path) -> Round:
    result = out / "out.mp4"
    run_s = _timed(
        [
            *LIPSYNC,
            "run",
            "--video",
            str(video),
            "--audio",
            str(audio),
            "-o",
            str(result),
            "--no-progress",
        ],
        ROOT,
    )
    evaluate_s = _timed(
        [
            *LIPSYNC,
            "evaluate",
            "--video",
            str(result),
            "--audio",
            str(audio),
            "--reference",
            str(video),
            "--json",
        ],
        ROOT,
    )
    one_s = _timed([sys.executable, "-c", _ONE_PROCESS, str(result), str(audio), str(video)], ROOT)
    return Round(run_s, evaluate_s, one_s)


def section(rounds: list[Round], height: int, seconds: float) -> str:
    lines = [
        BEGIN,
        "",
        f"## The measurement against the lip-sync it measures ({height}p, {seconds:g} s, "
        "retrieval)",
        "",
        "Written by `python -m benchmarks.evaluate_speed`. Per round, one after the other: "
        "`lipsync run` on a talking-head video and English speech, `lipsync evaluate "
        "--reference` on its output (the CLI: its later frames measured by a second process "
        "at the same time), and the same measurement kept in one process (`processes=1`, "
        "as it ran before), each a subprocess with its imports and models. "
        f"Machine: {machine_line()}.",
        "",
        "| round | `lipsync run` s | `lipsync evaluate --reference` s (ratio) "
        "| one process s (ratio) |",
        "|---|---|---|---|",
    ]
    for i, r in enumerate(rounds, 1):
        lines.append(
            f"| {i} | {r.run_s:.2f} | {r.evaluate_s:.2f} ({r.ratio:.2f}) "
            f"| {r.one_process_s:.2f} ({r.one_process_ratio:.2f}) |"
        )
    med = statistics.median(r.ratio for r in rounds)
    med_one = statistics.median(r.one_process_ratio for r in rounds)
    verdict = "met" if med <= TARGET_RATIO else "**missed**"
    lines += [
        "",
        f"Median ratio to `lipsync run`: `lipsync evaluate` **{med:.2f}** (target <= "
        f"{TARGET_RATIO}: {verdict}); in one process {med_one:.2f}.",
        "",
        END,
    ]
    return "\n".join(lines)


def machine_line() -> str:
    m = machine()
    return f"{m['cores']} cores, {m['cpu']}, {m['memory']}, GPU {m['gpu']}, Python {m['python']}"


def write_section(doc: Path, text: str) -> None:
    old = doc.read_text() if doc.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    doc.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT / "evaluate_speed")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write the rounds here")
    parser.add_argument("--smoke", action="store_true", help="240p, 2 s, one round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.height, args.seconds, args.rounds = 240, 2.0, 1
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.height}p-{args.seconds:g}s"
    video = talking_video(args.height, args.seconds, args.out / f"input-{tag}.mp4")
    audio = speech(args.seconds, args.out / f"speech-{args.seconds:g}s.wav")
    rounds = []
    for i in range(args.rounds):
        r = one_round(video, audio, args.out)
        rounds.append(r)
        print(
            f"round {i + 1}: run {r.run_s:.2f} s, evaluate {r.evaluate_s:.2f} s "
            f"({r.ratio:.2f}), one process {r.one_process_s:.2f} s ({r.one_process_ratio:.2f})",
            flush=True,
        )
    text = section(rounds, args.height, args.seconds)
    print(text)
    write_section(args.doc, text)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rounds], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
