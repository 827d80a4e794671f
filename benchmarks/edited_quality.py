"""Quality on edited footage: videos assembled from the shared clips (cuts between people,
two people side by side, a fast camera move, objects over the mouth), rendered by the
default engine and measured by ``lipsync evaluate`` against their input: the whole video
for misplaced or foreign mouths (lip colour against the same input frame, the largest
change outside the input's own lower face, changes on what is not the person's skin), and
each person on their own shots for articulation and sync.

    python -m benchmarks.edited_quality            # writes its section of docs/QUALITY.md
    python -m benchmarks.edited_quality --out DIR  # where the videos go (not the repo)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import edited
from benchmarks.common import OUT, ROOT, SHARED_MEDIA, machine

SPEECH = ("audio_SadTalker_deyu_german.wav", "audio_SadTalker_japanese.wav")
SECTION = "## Edited footage: assembled multi-shot videos"
TARGETS = {
    "lip colour moved > 12 (share of frames)": "< 3%",
    "frames with a block outside the input's lower faces > 15": "0",
    "articulation per person": "0.85 .. 1.3",
    "best-lag sync r per person": ">= 0.35",
}


def speech_for(seconds: float, out: Path) -> Path:
    """German then Japanese speech, cut to ``seconds`` (a dub that changes language)."""
    from lipsync.media.audio import load_audio, to_mono
    from tests.media_factory import write_wav

    parts = [
        to_mono(load_audio(SHARED_MEDIA / n, sample_rate=16000, channels=1)[0]) for n in SPEECH
    ]
    audio = np.concatenate(parts)[: int(seconds * 16000)]
    return write_wav(out, audio.astype(np.float32), 16000)


@dataclass
class Row:
    name: str
    frames: int
    shots: int
    people: str
    chosen: str
    kept: dict[str, int]
    lip_colour: Any
    outside: Any
    occluder: Any
    per_person: list[tuple[int, float | None, float | None, int | None]]
    wall_s: float


def person_clip(
    video: Path, output: Path, speech: Path, frames: list[int], out: Path
) -> tuple[Path, Path, Path]:
    """The frames of one person (their shots) cut out of the input and the output, with
    the speech of those frames, as three files."""
    from lipsync.media.audio import load_audio, to_mono
    from lipsync.media.decode import iter_frames
    from tests.media_factory import write_wav

    keep = set(frames)
    ins = [f.image for f in iter_frames(video) if f.index in keep]
    outs = [f.image for f in iter_frames(output) if f.index in keep]
    audio = to_mono(load_audio(speech, sample_rate=16000, channels=1)[0])
    hop = 16000 // edited.FPS
    pieces = [audio[i * hop : (i + 1) * hop] for i in sorted(keep)]
    pieces = [np.pad(p, (0, hop - len(p))) for p in pieces]
    out.mkdir(parents=True, exist_ok=True)
    a, b = out / "in.mp4", out / "out.mp4"
    edited.write(a, iter(ins))
    edited.write(b, iter(outs))
    wav = write_wav(out / "speech.wav", np.concatenate(pieces).astype(np.float32), 16000)
    return a, b, wav


def crop_video(src: Path, box: tuple[int, int, int, int], dst: Path) -> Path:
    """``src`` cut to ``box`` (x1, y1, x2, y2), for measuring one face of several:
    ``lipsync evaluate`` follows the largest face of a frame."""
    from lipsync.media.decode import iter_frames

    x1, y1, x2, y2 = box
    edited.write(dst, (np.ascontiguousarray(f.image[y1:y2, x1:x2]) for f in iter_frames(src)))
    return dst


def measure(
    name: str, video: Path, out_dir: Path, face_box: tuple[int, int, int, int] | None = None
) -> Row:
    import lipsync
    from lipsync.evaluate import evaluate

    out_dir.mkdir(parents=True, exist_ok=True)
    n_frames = sum(1 for _ in _frames(video))
    speech = speech_for(n_frames / edited.FPS, out_dir / "speech.wav")
    output = out_dir / "out.mp4"
    t0 = time.perf_counter()
    result = lipsync.run(video, speech, output, sync_mode="silence")
    wall = time.perf_counter() - t0
    if face_box is not None:  # measure the chosen face's part of the picture
        video = crop_video(video, face_box, out_dir / "in_face.mp4")
        output = crop_video(output, face_box, out_dir / "out_face.mp4")
    report = evaluate(output, speech, reference=video, lse=False, visemes=False)
    ref = report.reference_metrics
    assert ref is not None
    per_person = []
    person_of_shot = {sf["shot"]: sf["person"] for sf in result.shot_faces}
    for person in result.people:
        pid = person["id"]
        rep = report
        if len(result.people) > 1:
            frames = [
                i
                for k, shot in enumerate(result.shots)
                if person_of_shot.get(k) == pid
                for i in range(shot["start"], shot["end"])
            ]
            a, b, wav = person_clip(video, output, speech, frames, out_dir / f"p{pid}")
            rep = evaluate(b, wav, reference=a, lse=False, visemes=False)
        cal = rep.sync.calibrated
        art = rep.reference_metrics.articulation_ratio if rep.reference_metrics else None
        per_person.append((pid, art, rep.sync.best_r, cal.offset_frames if cal else None))
    return Row(
        name,
        result.frames,
        len(result.shots),
        ", ".join(f"{p['id']}: {p['rendered']}" for p in result.people),
        ", ".join(sf["chosen_by"] for sf in result.shot_faces),
        dict(result.frames_kept_original.get("reasons", {})),
        getattr(ref, "lip_colour", None),
        getattr(ref, "outside_change", None),
        getattr(ref, "occlusion", None),
        per_person,
        wall,
    )


def _frames(video: Path) -> Any:
    from lipsync.media.decode import iter_frames

    return iter_frames(video, pixel_format="luma")


def _flag(f: Any, pct: bool = False) -> str:
    if f is None:
        return "-"
    share = f.share if f.share is not None else 0.0
    worst = ", ".join(str(i) for i, _ in f.worst[:3])
    if pct:
        return f"{share * 100:.1f}% ({f.flagged}/{f.frames}; worst {worst})"
    return f"{f.flagged} frames, max {f.max} (worst {worst})"


def markdown(rows: list[Row], info: dict[str, str]) -> str:
    lines = [
        SECTION,
        "",
        "Produced by `python -m benchmarks.edited_quality` on videos that `benchmarks.edited` "
        "assembles from the shared clips (not redistributed): cuts between different people "
        "(512x512 and a 720x1280 portrait frame, 3-4 shots), two people side by side (the "
        "left one's own sound track), a fast pan and zoom with motion blur, and an object "
        "over the mouth. Each is dubbed with German then Japanese speech by the default "
        "engine (`--sync-mode silence`) and measured by `lipsync evaluate --reference` "
        f"with its own face model. Machine: {info['cores']} cores, {info['cpu']}.",
        "",
        "- **lip colour**: per frame, median CIELAB a*b* of each frame's own lip pixels, output "
        "against the same input frame; share of frames that moved by more than 12 (another "
        "person's lips read as 12-35).",
        "- **outside**: per frame, the largest mean absolute change of a block wholly outside "
        "the input frame's own lower faces; frames above 15 (a mouth pasted on a forehead, "
        "a tie or a beard reads 20-80).",
        "- **per person**: that person's shots cut out of input, output and speech and "
        "measured on their own: articulation ratio, best-lag aperture/speech r, calibrated "
        "offset (frames).",
        "- Contact sheets: `python -m benchmarks.sheets OUT --reference IN --around CUT,...` "
        "draws input over output for the frames around each cut; they were looked at frame "
        "by frame for every cut here.",
        "",
        "| video | frames | shots | face chosen per shot | people (how drawn) | kept as they were "
        "| lip colour moved > 12 | outside > 15 | per person: articulation / best r / offset "
        "| s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = "; ".join(
            f"{pid}: {_n(a)} / {_n(b)} / {o if o is not None else '-'}"
            for pid, a, b, o in r.per_person
        )
        kept = ", ".join(f"{k} {v}" for k, v in r.kept.items()) or "none"
        lines.append(
            f"| {r.name} | {r.frames} | {r.shots} | {r.chosen} | {r.people} | {kept} | "
            f"{_flag(r.lip_colour, pct=True)} | {_flag(r.outside)} | {per} | {r.wall_s:.1f} |"
        )
    lines += ["", "Targets: " + "; ".join(f"{k} {v}" for k, v in TARGETS.items()) + "."]
    return "\n".join(lines) + "\n"


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def write_section(doc: Path, section: str) -> None:
    """Replace (or append) this section of ``doc``, keeping the rest."""
    text = doc.read_text() if doc.is_file() else "# Quality\n"
    start = text.find(SECTION)
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT / "edited")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "QUALITY.md")
    ap.add_argument("--only", default="", help="comma-separated video names")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    videos = {
        "two women (A, B, A)": lambda: edited.two_women(args.out).path,
        "man, woman, man": lambda: edited.man_woman(args.out).path,
        "portrait, 4 shots": lambda: edited.portrait_cuts(args.out).path,
        "side by side (the speaker's half measured)": lambda: edited.side_by_side(args.out).path,
        "fast pan": lambda: edited.fast_pan(args.out).path,
        "dark object over the mouth": lambda: edited.occluded(args.out, "dark")[0],
    }
    only = [s for s in args.only.split(",") if s]
    rows = []
    for k, (name, build) in enumerate(videos.items()):
        if only and name not in only:
            continue
        box = (0, 0, 512, 512) if name.startswith("side by side") else None
        row = measure(name, build(), args.out / f"v{k}", box)
        print(row, flush=True)
        rows.append(row)
    section = markdown(rows, machine())
    if not only:
        write_section(args.doc, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
