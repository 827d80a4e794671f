"""Quality benchmark: every engine over pairs from ../shared/media, measured with
``lipsync evaluate``, beside the original videos with their own audio (natural level) and
with mismatched audio (chance level). Writes docs/QUALITY.md; contact sheets (mouth crops,
input vs output) go to benchmarks/out/quality/sheets/ for people to look at - never into the
repository, since they are frames of the shared media.

    python -m benchmarks.quality                      # all engines with their weights present
    python -m benchmarks.quality --engines viseme --smoke --out /tmp/q   # tiny, for the tests
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import OUT, ROOT, SHARED_MEDIA, machine

EN = {"audio_Real3DPortrait_Obama_5s.wav", "audio_SadTalker_RD_Radio31_000.wav"}
VIDEOS = {
    "video_videoretalking_face2.mp4": "audio_SadTalker_deyu_german.wav",
    "video_videoretalking_face4.mp4": "audio_dreamtalk_korean1.wav",
    "video_SadTalker_WDA_KatieHill_000.mp4": "audio_SadTalker_japanese.wav",
    "video_LatentSync_demo1.mp4": "audio_Real3DPortrait_Obama_5s.wav",
    "video_dreamtalk_MEAD_M030_front_neutral.mp4": "audio_SadTalker_RD_Radio31_000.wav",
}
PORTRAITS = ("image_SadTalker_people_0.png", "image_hallo_ref6.jpg")
ENGLISH_FOR_VIDEO = "audio_SadTalker_RD_Radio31_000.wav"
READING = (
    "Reading these numbers: the engines drive the mouth from the speech envelope, so their "
    "aperture/envelope r (about 0.7) is far above the natural level of real people speaking "
    "(0.2-0.34 here): the measure rewards sync, not naturalness. Compare engines with each "
    "other and with the chance level, and look at the contact sheets. The evaluator reads "
    "aperture 0 on ~40% of the MEAD clip's frames (input and outputs alike), so its rows are "
    "unreliable. Stills have no PSNR/flicker/articulation/sharpness columns (no reference "
    "video). The sync score "
    "is fitted per video, so compare it with the natural and chance rows below: a talker's "
    "own speech scores well above unrelated speech on average, but on 5-10 s clips one "
    "unrelated recording can come close; what it separates reliably is the same speech in "
    "and out of sync (last table)."
)


@dataclass(frozen=True)
class Pair:
    video: Path
    audio: Path

    @property
    def name(self) -> str:
        return f"{self.video.stem}+{self.audio.stem}"

    @property
    def english(self) -> bool:
        return self.audio.name in EN


def pairs(media: Path) -> list[Pair]:
    """Each video with other clips' speech (one English, one other language); each portrait
    with English speech."""
    out = []
    for video, foreign in VIDEOS.items():
        english = (
            ENGLISH_FOR_VIDEO
            if video != "video_dreamtalk_MEAD_M030_front_neutral.mp4"
            else "audio_Real3DPortrait_Obama_5s.wav"
        )
        for audio in dict.fromkeys((english, foreign)):
            out.append(Pair(media / video, media / audio))
    for image in PORTRAITS:
        out.append(Pair(media / image, media / "audio_Real3DPortrait_Obama_5s.wav"))
    return [p for p in out if p.video.exists() and p.audio.exists()]


def measures(report: dict[str, Any]) -> dict[str, float | None]:
    ref = report.get("reference_metrics") or {}
    vis = report.get("visemes") or {}
    return {
        "face": report["face_found_rate"],
        "r0": report["sync"]["r_at_zero"],
        "best_r": report["sync"]["best_r"],
        "lag": report["sync"]["best_lag"],
        "offset": report["sync"].get("offset_frames"),
        "score": report["sync"].get("score"),
        "closed": report["pauses"]["closed_share"],
        "contrast": vis.get("contrast"),
        "psnr": ref.get("psnr_outside_lower_face"),
        "ssim": ref.get("ssim_outside_lower_face"),
        "flicker": ref.get("mouth_flicker"),
        "ref_flicker": ref.get("reference_mouth_flicker"),
        "articulation": ref.get("articulation_ratio"),
        "sharpness": ref.get("sharpness_ratio"),
        "lip_moved": (ref.get("lip_colour") or {}).get("share"),
        "outside": (ref.get("outside_change") or {}).get("share"),
        "occluder": (ref.get("occlusion") or {}).get("share"),
        "lse_d": (report.get("lse") or {}).get("lse_d"),
        "lse_c": (report.get("lse") or {}).get("lse_c"),
    }


COLUMNS = (
    "face",
    "r0",
    "best_r",
    "lag",
    "offset",
    "score",
    "closed",
    "contrast",
    "psnr",
    "ssim",
    "flicker",
    "ref_flicker",
    "articulation",
    "sharpness",
    "lip_moved",
    "outside",
    "occluder",
    "lse_d",
    "lse_c",
)
HEADERS = (
    "face found",
    "r at lag 0",
    "best r",
    "best lag",
    "A/V offset",
    "sync score",
    "closed in pauses",
    "viseme contrast (en)",
    "PSNR out dB",
    "SSIM out",
    "mouth flicker",
    "input's flicker",
    "articulation",
    "sharpness",
    "lip colour moved",
    "changed outside",
    "changed non-skin",
    "LSE-D",
    "LSE-C",
)


def _fmt(v: float | None, key: str) -> str:
    if v is None:
        return "-"
    if key in ("lag", "offset"):
        return f"{v:+.0f}"
    if key in ("face", "closed"):
        return f"{v:.0%}"
    if key in ("lip_moved", "outside", "occluder"):
        return f"{v:.1%}"
    if key in ("psnr", "flicker", "ref_flicker"):
        return f"{v:.1f}"
    if key in ("articulation", "sharpness"):
        return f"{v:.2f}"
    return f"{v:.3f}"


def _mean(rows: list[dict[str, float | None]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.fmean(vals) if vals else None  # type: ignore[arg-type]


def table(rows: list[tuple[str, dict[str, float | None]]], with_mean: bool = True) -> list[str]:
    lines = ["| clip | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(k), k) for k in COLUMNS) + " |")
    if with_mean and rows:
        ms = [m for _, m in rows]
        lines.append("| **mean** | " + " | ".join(_fmt(_mean(ms, k), k) for k in COLUMNS) + " |")
    return lines


Rows = list[tuple[str, dict[str, float | None]]]
ARTICULATION_RANGE = (0.85, 1.3)
SHARPNESS_MIN = 0.8
CLOSED_MIN = 0.85
PSNR_MIN = 40.0
OFFSET_MAX = 1
BASELINE = "viseme"  # the mean sync score is judged against this engine's


@dataclass(frozen=True)
class Judged:
    """One engine's cell of a judgement row: what it shows and whether the target holds
    (None: the target can't be judged, e.g. no baseline engine in the run)."""

    text: str
    met: bool | None


def _values(rows: list[dict[str, float | None]], key: str) -> list[float]:
    return [v for v in (m.get(key) for m in rows) if v is not None]


def _every(rows: list[dict[str, float | None]], key: str) -> list[float] | None:
    """The values of ``key`` on every pair, or None when a pair has none."""
    got = _values(rows, key)
    return got if got and len(got) == len(rows) else None


def _articulation(rows: list[dict[str, float | None]], _: dict[str, Any]) -> Judged:
    vals = _values(rows, "articulation")
    if not vals:
        return Judged("-", False)
    lo, hi = ARTICULATION_RANGE
    text = f"{min(vals):.2f} .. {max(vals):.2f}"
    every = _every(rows, "articulation")
    if every is None:
        text += f" ({len(vals)} of {len(rows)} pairs)"
    return Judged(text, every is not None and all(lo <= v <= hi for v in every))


def _offset(rows: list[dict[str, float | None]], _: dict[str, Any]) -> Judged:
    vals = _values(rows, "offset")
    if not vals:
        return Judged("-", False)
    worst = max(vals, key=abs)
    every = _every(rows, "offset")
    text = f"{worst:+.0f}" + ("" if every is not None else f" ({len(vals)} of {len(rows)} pairs)")
    return Judged(text, every is not None and all(abs(v) <= OFFSET_MAX for v in every))


def _score(rows: list[dict[str, float | None]], ctx: dict[str, Any]) -> Judged:
    mean = _mean(rows, "score")
    base = ctx.get("baseline_score")
    if mean is None:
        return Judged("-", False)
    return Judged(f"{mean:.3f}", None if base is None else mean >= base - 1e-9)


def _closed(rows: list[dict[str, float | None]], _: dict[str, Any]) -> Judged:
    mean = _mean(rows, "closed")
    if mean is None:
        return Judged("- (no pauses)", None)
    return Judged(f"{mean:.0%}", mean >= CLOSED_MIN)


def _psnr(rows: list[dict[str, float | None]], _: dict[str, Any]) -> Judged:
    vals = _values(rows, "psnr")
    if not vals:
        return Judged("-", False)
    return Judged(f"{min(vals):.1f} dB", _every(rows, "psnr") is not None and min(vals) >= PSNR_MIN)


def _sharpness(rows: list[dict[str, float | None]], _: dict[str, Any]) -> Judged:
    vals = _values(rows, "sharpness")
    if not vals:
        return Judged("-", False)
    every = _every(rows, "sharpness")
    text = f"{min(vals):.2f}" + (
        "" if every is not None else f" ({len(vals)} of {len(rows)} pairs)"
    )
    return Judged(text, every is not None and min(vals) >= SHARPNESS_MIN)


CRITERIA = (
    (
        "articulation ratio on every video pair (min .. max)",
        f"{ARTICULATION_RANGE[0]:g} .. {ARTICULATION_RANGE[1]:g}",
        _articulation,
    ),
    ("calibrated A/V offset on every pair (worst)", f"within +-{OFFSET_MAX} frame", _offset),
    ("mean sync score", f"at least `{BASELINE}`'s", _score),
    ("closed in pauses (mean over pairs with pauses)", f">= {CLOSED_MIN:.0%}", _closed),
    ("PSNR outside the lower face (worst pair)", f">= {PSNR_MIN:g} dB", _psnr),
    ("mouth sharpness ratio on every pair (min)", f">= {SHARPNESS_MIN:g}", _sharpness),
)


def judgement(results: dict[str, Rows], default_engine: str) -> list[str]:
    """Issue 13's rows for every engine over the video pairs that all of them ran (stills
    are left out: every engine draws them with the viseme warp), the rows each engine meets,
    which engine meets the most and which one is the configured default."""
    engines = [e for e, rows in results.items() if rows]
    if not engines:
        return []
    common = set.intersection(*({n for n, _ in results[e] if "video_" in n} for e in engines))
    if not common:
        return []
    rows = {e: [m for n, m in results[e] if n in common] for e in engines}
    ctx: dict[str, Any] = {
        "baseline_score": _mean(rows[BASELINE], "score") if BASELINE in rows else None
    }
    cells = {e: [judge(rows[e], ctx) for _, _, judge in CRITERIA] for e in engines}
    lines = [
        "| criterion | target | " + " | ".join(f"`{e}`" for e in engines) + " |",
        "|---|---|" + "---|" * len(engines),
    ]
    for i, (label, target, _) in enumerate(CRITERIA):
        shown = []
        for e in engines:
            c = cells[e][i]
            shown.append(f"{c.text} ({'-' if c.met is None else 'yes' if c.met else 'no'})")
        lines.append(f"| {label} | {target} | " + " | ".join(shown) + " |")
    met = {e: sum(c.met is True for c in cells[e]) for e in engines}
    judged = {e: sum(c.met is not None for c in cells[e]) for e in engines}
    lines.append(
        "| **rows met** | all | "
        + " | ".join(f"**{met[e]} of {judged[e]}**" for e in engines)
        + " |"
    )
    best = max(met.values())
    winners = [e for e in engines if met[e] == best]
    lead = (
        f"Most rows met: `{winners[0]}` ({best})"
        if len(winners) == 1
        else "Most rows met: " + ", ".join(f"`{e}`" for e in winners) + f" (tied at {best})"
    )
    agree = (
        "it is the one with the most rows met"
        if default_engine in winners
        else "it is not the one with the most rows met"
    )
    lines += [
        "",
        f"{lead}, over {len(common)} video pairs. The default engine should be the one with "
        f"the most rows met; the configured default (`RunOptions().engine`) is "
        f"`{default_engine}`: {agree}.",
    ]
    return lines


SHIFTS = (-12, -8, -4, 4, 8, 12, 25)


def ranking(media: Path) -> list[str]:
    """Each original clip with its own speech and with that speech shifted: the offset
    ``lipsync evaluate`` reads and its sync score (what the own-vs-shifted ranking uses)."""
    from lipsync.evaluate.mouth import measure_mouth
    from lipsync.evaluate.sync import measure_sync
    from lipsync.media.audio import load_audio, to_mono
    from lipsync.media.probe import probe
    from tests.media_factory import shift_speech

    head = ["| clip | own: offset / score |"] + [f" speech {s:+d} fr |" for s in SHIFTS]
    lines = ["".join(head), "|---" * (len(SHIFTS) + 2) + "|"]
    ok = total = 0
    for video in VIDEOS:
        path = media / video
        info = probe(path) if path.exists() else None
        if info is None or info.audio is None or info.video is None:
            continue
        fps = info.video.fps
        track = measure_mouth(path, fps=fps)
        samples, _ = load_audio(path, sample_rate=16000, channels=1)
        speech = to_mono(samples)
        own = measure_sync(track.aperture, track.pixels, speech, fps).calibrated
        if own is None:
            continue
        cells = [f"{own.offset_frames:+d} / {own.score:.2f}"]
        for s in SHIFTS:
            got = measure_sync(track.aperture, track.pixels, shift_speech(speech, s, fps), fps)
            cal = got.calibrated
            if cal is None:
                cells.append("-")
                continue
            total += 1
            ok += cal.score < own.score
            cells.append(f"{cal.offset_frames:+d} / {cal.score:.2f}")
        lines.append(f"| {video} ({fps:g} fps) | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Own speech scored above the shifted copy in {ok} of {total} cases. "
        f"Expected offset for speech shifted by +k frames (late): own offset - k.",
    ]
    return lines


def contact_sheet(pair: Pair, output: Path, dest: Path, n: int = 6) -> None:
    """Mouth-region crops, input (top) vs output (bottom), a few frames across the clip."""
    import cv2
    import numpy as np

    from lipsync.face.tracker import FaceTracker
    from lipsync.media.decode import iter_frames, read_image

    outs = [f.image for f in iter_frames(output)]
    if not outs:
        return
    picks = np.linspace(0, len(outs) - 1, n).astype(int)
    if pair.video.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        src = read_image(pair.video)
        ins = [src] * len(outs)
    else:
        frames = [f.image for f in iter_frames(pair.video)]
        ins = [frames[i % len(frames)] for i in range(len(outs))]
    tiles = []
    for i in picks:
        lm = FaceTracker().update(ins[i])
        if lm is None:
            continue
        x1, y1 = (lm[48:68].min(axis=0) - 0.6 * np.ptp(lm[48:68, 0])).astype(int)
        x2, y2 = (lm[48:68].max(axis=0) + 0.6 * np.ptp(lm[48:68, 0])).astype(int)
        x1, y1 = max(0, x1), max(0, y1)
        col = [cv2.resize(img[y1:y2, x1:x2], (192, 144)) for img in (ins[i], outs[i])]
        tiles.append(np.vstack(col))
    if tiles:
        dest.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest), cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR))


def run(engines: list[str], out: Path, doc: Path | None, smoke: bool) -> str:
    import lipsync
    from lipsync.errors import LipsyncError
    from lipsync.evaluate import evaluate

    media = SHARED_MEDIA
    todo = pairs(media)
    if smoke:
        todo = todo[:1]
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[str, dict[str, float | None]]]] = {}
    rtf: dict[str, list[float]] = {}
    for engine in engines:
        rows = []
        for pair in todo:
            dest = out / f"{engine}__{pair.name}.mp4"
            t0 = time.perf_counter()
            try:
                result = lipsync.run(
                    pair.video, pair.audio, dest, engine=engine, models_dir=ROOT / "models"
                )
            except LipsyncError as exc:
                print(f"{engine} {pair.name}: {exc}", flush=True)
                continue
            rtf.setdefault(engine, []).append(result.realtime_factor)
            is_video = pair.video.suffix == ".mp4"
            report = evaluate(
                dest,
                pair.audio,
                reference=pair.video if is_video else None,
                visemes=pair.english,
                lse=True,
            )
            m = measures(report.to_dict())
            rows.append((pair.name, m))
            contact_sheet(pair, dest, out / "sheets" / f"{engine}__{pair.name}.png")
            print(
                f"{engine} {pair.name}: {json.dumps(m)} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        results[engine] = rows
    # Natural level (own audio) and chance level (mismatched audio) on the originals.
    natural, chance = [], []
    for video in VIDEOS:
        vpath = media / video
        if not vpath.exists() or smoke:
            continue
        from lipsync.media.probe import probe

        if probe(vpath).audio is not None:
            natural.append((video, measures(evaluate(vpath, vpath, visemes=False).to_dict())))
        other = media / VIDEOS[video]
        chance.append(
            (f"{video}+{other.name}", measures(evaluate(vpath, other, visemes=False).to_dict()))
        )
    rank = [] if smoke else ranking(media)
    info = machine()
    lines = [
        "# Quality",
        "",
        "Produced by `python -m benchmarks.quality` (`make bench`) on the clips in "
        "`../shared/media` (not redistributed; see its SOURCES.md), measured with "
        "`lipsync evaluate`, which reads the mouth with its own face model (dlib's CNN "
        "detector on sampled frames: every 2 s, after a cut, when the face is lost; dlib's "
        "5-point frame on every frame, which the box follows in between; an image-based "
        "inner-lip gap), not the engines' 68 landmarks. Machine: "
        f"{info['cores']} cores, {info['cpu']}, GPU: {info['gpu']}.",
        "",
        "Columns: share of frames with a face; Pearson r between mouth aperture and the speech "
        "envelope at lag 0 and at the best lag in -5..+5 frames (+ = video late); the "
        "calibrated A/V offset (frames, + = video late) and sync score (held-out r of a "
        "per-video audio-to-mouth regression at offset 0; see lipsync/evaluate/sync.py); share of "
        "frames inside pauses (>= 200 ms of silence) with the mouth closed; viseme contrast "
        "(aperture on open vowels minus on p/b/m, English speech only, PocketSphinx phones); "
        "PSNR (every frame) and SSIM (about 20 evenly spread frames) outside the lower face "
        "against the input; mouth-region flicker (mean "
        "frame-to-frame change) beside the input's own; the articulation ratio (the output's "
        "90th-percentile aperture over its speech frames, by silero voice activity of the "
        "speech it was made with, divided by the input's own over the input's speech frames: "
        "voice activity of its own audio track, or all its face frames when it has none, as "
        "for the MEAD clip; 1 = opens as far as the person does); the mouth sharpness ratio "
        "(variance of the Laplacian of the grey image in a lip box 1.2 eye distances wide, "
        "from 0.1 to 1.0 eye distances below the nose base, placed with the input's 5 points, "
        "frames with a face in both, output / input compared between frames of equal mouth "
        "opening (5 aperture classes); below 1 = a blurrier mouth); the share of frames whose "
        "lip colour moved (CIELAB a*b* distance between the lip pixels of output and input "
        "over 12: foreign or recoloured lips), that changed outside the input's own padded "
        "lower face (a 16 px block, scaled to the frame, changed by more than 15 levels: a "
        "mouth pasted elsewhere) and that changed non-skin pixels of the lower face (over 2% "
        "of it: a mouth painted over an occluder); "
        "LSE-D/LSE-C when syncnet_v2.model is present (it is not on the machine that produced "
        "this file).",
        "",
        READING,
        "",
    ]
    for engine, rows in results.items():
        mean_rtf = statistics.fmean(rtf[engine]) if rtf.get(engine) else float("nan")
        lines += [
            f"## Engine `{engine}`",
            "",
            f"Mean real-time factor over these clips: {mean_rtf:.2f}.",
            "",
            *table(rows),
            "",
        ]
    from lipsync.options import RunOptions

    judged = judgement(results, RunOptions().engine)
    if judged:
        lines += [
            "## Judgement: issue 13's rows on the same video pairs",
            "",
            "Each engine over the video pairs every engine here ran (stills are left out: "
            "every engine draws them with the viseme warp). A cell is the measure and "
            "whether its target holds.",
            "",
            *judged,
            "",
        ]
    if natural:
        lines += [
            "## Natural level: the original videos with their own audio",
            "",
            *table(natural),
            "",
        ]
    if chance:
        lines += [
            "## Chance level: the original videos with another clip's audio",
            "",
            *table(chance),
            "",
        ]
    if rank:
        lines += [
            "## Own vs shifted speech: offset / sync score read by `lipsync evaluate`",
            "",
            *rank,
            "",
        ]
    text = "\n".join(lines) + "\n"
    (out / "QUALITY.md").write_text(text)
    if doc is not None:
        from benchmarks.speed import keep_other_sections

        doc.parent.mkdir(parents=True, exist_ok=True)
        if doc.is_file():
            # Sections other generators write (edited footage, landmark models) stay.
            text = keep_other_sections(text, doc.read_text())
        doc.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--engines",
        default=None,
        help="comma list (default: every engine whose weights are present)",
    )
    parser.add_argument("--out", type=Path, default=OUT / "quality")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "QUALITY.md")
    parser.add_argument("--smoke", action="store_true", help="one pair, no doc update")
    args = parser.parse_args(argv)
    if not SHARED_MEDIA.is_dir():
        print(f"{SHARED_MEDIA} is missing: the quality benchmark needs the shared clips")
        return 0
    if args.engines:
        engines = args.engines.split(",")
    else:
        from lipsync.engines import ENGINES

        engines = [n for n, s in ENGINES.items() if not s.needs_weights]
    print(run(engines, args.out, None if args.smoke else args.doc, args.smoke))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
