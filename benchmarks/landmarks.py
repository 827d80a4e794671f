"""The default engine with each landmark model, end to end, in one run: every video pair and
still of ``benchmarks.quality`` made by ``retrieval`` once with dlib's 68-point model
(``dlib68``, not for commercial use) and once with MediaPipe's face mesh (``mediapipe``,
Apache-2.0), the two alternated per pair (which goes first alternates too), each output
measured by ``lipsync evaluate`` against its input. Prints the per-pair table, issue 31's
rows for both models and the wall-time ratio; ``--doc`` writes them into docs/QUALITY.md
between the ``landmarks-e2e`` markers.

    python -m benchmarks.landmarks                  # every pair, docs/QUALITY.md updated
    python -m benchmarks.landmarks --smoke --out /tmp/lm   # one pair, no doc update
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import quality
from benchmarks.common import OUT, ROOT, SHARED_MEDIA, machine
from benchmarks.quality import Judged, Pair, Rows, measures, pairs, table

MODELS = ("dlib68", "mediapipe")
BEGIN, END = "<!-- landmarks-e2e:begin -->", "<!-- landmarks-e2e:end -->"
ENGINE = "retrieval"
#: Issue 31's rows: the single-shot quality table's (benchmarks.quality) but the sync score,
#: which is judged against another engine's.
CRITERIA = tuple(row for row in quality.CRITERIA if row[2] is not quality._score)


def one(pair: Pair, model: str, out: Path) -> tuple[dict[str, float | None], float]:
    """Make ``pair`` with ``model`` and measure it: (measures, wall seconds of the run)."""
    import lipsync
    from lipsync.evaluate import evaluate

    dest = out / f"{model}__{pair.name}.mp4"
    t0 = time.perf_counter()
    lipsync.run(
        pair.video, pair.audio, dest, engine=ENGINE, landmarks=model, models_dir=ROOT / "models"
    )
    wall = time.perf_counter() - t0
    is_video = pair.video.suffix == ".mp4"
    report = evaluate(
        dest, pair.audio, reference=pair.video if is_video else None, visemes=pair.english
    )
    return measures(report.to_dict()), wall


def judgement(results: dict[str, Rows]) -> list[str]:
    rows = {m: [r for n, r in results[m] if "video_" in n] for m in MODELS}
    cells = {m: [judge(rows[m], {}) for _, _, judge in CRITERIA] for m in MODELS}
    lines = [
        "| criterion (issue 31) | target | " + " | ".join(f"`{m}`" for m in MODELS) + " |",
        "|---|---|" + "---|" * len(MODELS),
    ]

    def shown(c: Judged) -> str:
        return f"{c.text} ({'-' if c.met is None else 'yes' if c.met else 'no'})"

    for i, (label, target, _) in enumerate(CRITERIA):
        lines.append(
            f"| {label} | {target} | " + " | ".join(shown(cells[m][i]) for m in MODELS) + " |"
        )
    met = {m: sum(c.met is True for c in cells[m]) for m in MODELS}
    judged = {m: sum(c.met is not None for c in cells[m]) for m in MODELS}
    lines.append(
        "| **rows met** | all | "
        + " | ".join(f"**{met[m]} of {judged[m]}**" for m in MODELS)
        + " |"
    )
    return lines


def run(out: Path, smoke: bool) -> tuple[str, dict[str, Any]]:
    todo = pairs(SHARED_MEDIA)
    if smoke:
        todo = todo[:1]
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Rows] = {m: [] for m in MODELS}
    walls: dict[str, list[float]] = {m: [] for m in MODELS}
    for i, pair in enumerate(todo):
        order = MODELS if i % 2 == 0 else MODELS[::-1]
        for model in order:
            m, wall = one(pair, model, out)
            results[model].append((pair.name, m))
            walls[model].append(wall)
            print(f"{model} {pair.name}: {json.dumps(m)} (run {wall:.1f} s)", flush=True)
    ratios = [b / a for a, b in zip(walls["dlib68"], walls["mediapipe"], strict=True)]
    info = machine()
    summary = {
        "pairs": len(todo),
        "wall_s": {m: [round(w, 2) for w in walls[m]] for m in MODELS},
        "median_wall_ratio_mediapipe_over_dlib68": round(statistics.median(ratios), 3),
    }
    lines = [
        BEGIN,
        f"Produced by `python -m benchmarks.landmarks`: the `{ENGINE}` engine with each "
        "landmark model on every pair of the tables above, the two models alternated per "
        "pair, each output measured by `lipsync evaluate --reference` (its own face model). "
        f"Machine: {info['cores']} cores, {info['cpu']}, GPU: {info['gpu']}.",
        "",
    ]
    for model in MODELS:
        lines += [f"`--landmarks {model}`:", "", *table(results[model]), ""]
    lines += [
        *judgement(results),
        "",
        "Speed, same run: `lipsync run` wall time, `mediapipe` over `dlib68` per pair, median "
        f"**{summary['median_wall_ratio_mediapipe_over_dlib68']:.2f}x** "
        f"(per pair: {', '.join(f'{r:.2f}' for r in ratios)}).",
        END,
    ]
    return "\n".join(lines) + "\n", summary


def write_doc(doc: Path, section: str) -> None:
    text = doc.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        doc.write_text(head + section.rstrip("\n") + tail)
    else:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} section")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT / "landmarks")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "QUALITY.md")
    parser.add_argument("--smoke", action="store_true", help="one pair, no doc update")
    args = parser.parse_args(argv)
    if not SHARED_MEDIA.is_dir():
        print(f"{SHARED_MEDIA} is missing: this benchmark needs the shared clips")
        return 0
    section, summary = run(args.out, args.smoke)
    print(section)
    print(json.dumps(summary))
    if not args.smoke:
        write_doc(args.doc, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
