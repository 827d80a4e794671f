"""Edited footage assembled from the shared real clips (``../shared/media``): cuts between
different people, two people side by side, a head that moves fast. The tests, the quality
benchmark and anyone judging a build by eye use the same videos; they are written to a
folder the caller names (never into the repo) and are not published.

``python -m benchmarks.edited OUT_DIR`` writes every one of them and prints what it wrote.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.common import SHARED_MEDIA

RGB = npt.NDArray[np.uint8]
FPS = 25

KATIE = "video_SadTalker_WDA_KatieHill_000.mp4"  # woman, 512x512, 25 fps, own speech
FACE2 = "video_videoretalking_face2.mp4"  # man in a tie, 844x844, 25 fps, own speech
FACE4 = "video_videoretalking_face4.mp4"  # woman, 700x700, 30 fps, own speech
MEAD = "video_dreamtalk_MEAD_M030_front_neutral.mp4"  # man, 256x256, no audio


@dataclass(frozen=True)
class Piece:
    """``seconds`` of clip ``name`` from ``start`` s, scaled to the shot's size."""

    name: str
    start: float
    seconds: float


@dataclass(frozen=True)
class Edited:
    """An assembled video and what it is made of: the first frame of every shot, and which
    clip each shot came from (a clip stands for one person)."""

    path: Path
    shot_starts: list[int]
    shot_people: list[str]
    frames: int


def clip_frames(name: str, start: float = 0.0, seconds: float | None = None) -> Iterator[RGB]:
    """RGB frames of a shared clip at 25 fps (nearest frame by time), from ``start`` s."""
    import av

    path = SHARED_MEDIA / name
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        rate = float(stream.average_rate or FPS)
    n_out = int(round((seconds if seconds is not None else len(frames) / rate - start) * FPS))
    for k in range(n_out):
        src = int(round((start + k / FPS) * rate))
        yield frames[min(max(src, 0), len(frames) - 1)]


def clip_audio(name: str, rate: int = 16000) -> npt.NDArray[np.float32]:
    """The clip's own speech, mono at ``rate``."""
    from lipsync.media.audio import load_audio, to_mono

    return to_mono(load_audio(SHARED_MEDIA / name, sample_rate=rate, channels=1)[0])


def _fit(frame: RGB, size: tuple[int, int]) -> RGB:
    """Scale (and centre-crop) a frame to ``size`` (width, height)."""
    w, h = size
    fh, fw = frame.shape[:2]
    s = max(w / fw, h / fh)
    scaled = cv2.resize(
        frame, (int(round(fw * s)), int(round(fh * s))), interpolation=cv2.INTER_AREA
    )
    y0 = (scaled.shape[0] - h) // 2
    x0 = (scaled.shape[1] - w) // 2
    return np.ascontiguousarray(scaled[y0 : y0 + h, x0 : x0 + w])


def write(
    path: Path,
    frames: Iterator[RGB],
    audio: npt.NDArray[np.float32] | None = None,
    audio_rate: int = 16000,
) -> int:
    """Write RGB frames (and mono audio) as H.264 + AAC at 25 fps; the frame count."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(path), "w") as c:
        vs = ast = None
        for frame in frames:
            if vs is None:
                vs = c.add_stream("libx264", rate=FPS)
                vs.width, vs.height = frame.shape[1], frame.shape[0]
                vs.pix_fmt = "yuv420p"
                vs.options = {"crf": "14", "preset": "veryfast"}
                if audio is not None:
                    ast = c.add_stream("aac", rate=audio_rate, layout="mono")
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = n, Fraction(1, FPS)
            for p in vs.encode(vf):
                c.mux(p)
            n += 1
        assert vs is not None, "no frames"
        for p in vs.encode():
            c.mux(p)
        if audio is not None and ast is not None:
            take = audio[: int(n / FPS * audio_rate)]
            chunk = 1024
            for k in range(0, len(take), chunk):
                af = av.AudioFrame.from_ndarray(
                    take[None, k : k + chunk].copy(), format="fltp", layout="mono"
                )
                af.sample_rate = audio_rate
                af.pts, af.time_base = k, Fraction(1, audio_rate)
                for p in ast.encode(af):
                    c.mux(p)
            for p in ast.encode():
                c.mux(p)
    return n


def cuts(path: Path, pieces: list[Piece], size: tuple[int, int] = (512, 512)) -> Edited:
    """Shots of different clips one after another (no audio track: an edited video that is
    to be dubbed)."""
    starts: list[int] = []
    total = 0

    def frames() -> Iterator[RGB]:
        nonlocal total
        for piece in pieces:
            starts.append(total)
            for f in clip_frames(piece.name, piece.start, piece.seconds):
                total += 1
                yield _fit(f, size)

    n = write(path, frames())
    return Edited(path, starts, [p.name for p in pieces], n)


def two_women(out: Path) -> Edited:
    """Woman A 5 s -> woman B 5 s -> woman A 3 s, 512x512."""
    return cuts(
        out / "cut_two_women.mp4",
        [Piece(KATIE, 0.0, 5.0), Piece(FACE4, 0.0, 5.0), Piece(KATIE, 5.0, 3.0)],
    )


def man_woman(out: Path) -> Edited:
    """Man (in a tie) 3 s -> woman 4 s -> man 2 s, 512x512."""
    return cuts(
        out / "cut_man_woman.mp4",
        [Piece(FACE2, 0.0, 3.0), Piece(KATIE, 1.0, 4.0), Piece(FACE2, 3.0, 2.0)],
    )


def portrait_cuts(out: Path) -> Edited:
    """Four shots in a 720x1280 portrait frame (a head that fills less of the frame):
    woman B -> man -> woman A -> man, 2 s each."""
    return cuts(
        out / "cut_portrait.mp4",
        [
            Piece(FACE4, 1.0, 2.0),
            Piece(FACE2, 0.0, 2.0),
            Piece(KATIE, 2.0, 2.0),
            Piece(FACE2, 2.5, 2.0),
        ],
        size=(720, 1280),
    )


def side_by_side(out: Path, speaker: str = FACE2, other: str = KATIE) -> Edited:
    """Two people side by side (``speaker`` left), each 512x512, with the speaker's own
    speech as the video's audio track: the other person's mouth moves to other words."""
    seconds = 5.0

    def frames() -> Iterator[RGB]:
        for a, b in zip(
            clip_frames(speaker, 0.0, seconds), clip_frames(other, 0.0, seconds), strict=True
        ):
            yield np.hstack([_fit(a, (512, 512)), _fit(b, (512, 512))])

    path = out / "side_by_side.mp4"
    n = write(path, frames(), clip_audio(speaker))
    return Edited(path, [0], [speaker], n)


def fast_pan(out: Path, name: str = KATIE) -> Edited:
    """A fast camera move over a talking head: a 384x384 window pans and zooms over the
    clip scaled to 640x640, up to ~22 px a frame, with motion blur along the move (what a
    quick head turn looks like to the face tracker)."""

    def frames() -> Iterator[RGB]:
        prev: tuple[float, float] | None = None
        for k, f in enumerate(clip_frames(name, 0.0, 6.0)):
            big = _fit(f, (640, 640))
            t = k / FPS
            cx = 320 + 110 * np.sin(2 * np.pi * t / 1.6)
            cy = 360 + 40 * np.sin(2 * np.pi * t / 1.1)
            half = 192 / (1.0 + 0.15 * np.sin(2 * np.pi * t / 2.3))
            x0, y0 = (
                int(np.clip(cx - half, 0, 640 - 2 * half)),
                int(np.clip(cy - half, 0, 640 - 2 * half)),
            )
            crop = big[y0 : y0 + int(2 * half), x0 : x0 + int(2 * half)]
            img = cv2.resize(crop, (384, 384), interpolation=cv2.INTER_AREA)
            if prev is not None:
                dx, dy = (x0 - prev[0]) * 384 / (2 * half), (y0 - prev[1]) * 384 / (2 * half)
                length = int(min(15, max(1, np.hypot(dx, dy) / 2)))
                if length > 1:
                    kernel = np.zeros((length, length), np.float32)
                    ang = np.arctan2(dy, dx)
                    c = (length - 1) / 2
                    for s in np.linspace(-c, c, 2 * length):
                        kernel[int(round(c + s * np.sin(ang))), int(round(c + s * np.cos(ang)))] = 1
                    img = cv2.filter2D(img, -1, kernel / kernel.sum())
            prev = (x0, y0)
            yield np.ascontiguousarray(img)

    path = out / "fast_pan.mp4"
    n = write(path, frames(), clip_audio(name))
    return Edited(path, [0], [name], n)


def widescreen(frame: RGB, height: int) -> RGB:
    """A frame in a 16:9 ``height``p picture: scaled to the height, centred, the sides
    filled with a blurred copy (as benchmarks.common.talking_video lays its input out)."""
    width = int(round(height * 16 / 9 / 2)) * 2
    side = cv2.resize(_fit(frame, (height, height)), (height, height))
    canvas = cv2.resize(cv2.GaussianBlur(side, (0, 0), 25), (width, height))
    x0 = (width - height) // 2
    canvas[:, x0 : x0 + height] = side
    return np.asarray(canvas, np.uint8)


#: The people the speed benchmark's edited footage cuts between, in turn.
CUT_PEOPLE = (FACE2, KATIE, FACE4)


def widescreen_cuts(out: Path, height: int, seconds: float, cuts: int) -> Edited:
    """A ``seconds`` long 16:9 video with ``cuts`` cuts between three people (the shared
    clips in turn, each shot played forward and backward as long as it lasts), for the
    speed benchmark's edited-footage case."""
    n_frames, edges = _cut_edges(seconds, cuts)
    starts = [int(e) for e in edges[:-1]]
    people = [CUT_PEOPLE[k % len(CUT_PEOPLE)] for k in range(cuts + 1)]

    def frames() -> Iterator[RGB]:
        clips = {n: _forth_and_back(n) for n in CUT_PEOPLE}
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            seq = clips[people[k]]
            for i in range(int(b - a)):
                yield widescreen(seq[i % len(seq)], height)

    path = out / f"cuts{cuts}_{height}p_{seconds:g}s.mp4"
    if not path.exists():
        write(path, frames())
    return Edited(path, starts, people, n_frames)


def _cut_edges(seconds: float, cuts: int) -> tuple[int, npt.NDArray[np.int64]]:
    """The frame count of :func:`widescreen_cuts`'s video and its shots' edges."""
    n_frames = int(round(seconds * FPS))
    return n_frames, np.linspace(0, n_frames, cuts + 2).round().astype(np.int64)


def _forth_and_back(name: str) -> list[RGB]:
    """The shared clip ``name`` fitted to 512x512, played forward then backward (a loop
    without a jump)."""
    base = [_fit(f, (512, 512)) for f in clip_frames(name)]
    return base + base[-2:0:-1]


def cut_shares(seconds: float, cuts: int) -> dict[str, float]:
    """Each person's share of the frames of :func:`widescreen_cuts`'s video."""
    n_frames, edges = _cut_edges(seconds, cuts)
    shares: dict[str, float] = dict.fromkeys(CUT_PEOPLE, 0.0)
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        shares[CUT_PEOPLE[k % len(CUT_PEOPLE)]] += float(b - a) / max(n_frames, 1)
    return shares


def widescreen_shot(out: Path, height: int, seconds: float, name: str) -> Path:
    """One uncut ``seconds`` long shot of the shared clip ``name`` laid out as
    :func:`widescreen_cuts` lays out each of its shots (the speed benchmark's baseline for
    the same people without cuts)."""
    path = out / f"shot_{Path(name).stem}_{height}p_{seconds:g}s.mp4"
    if not path.exists():
        seq = _forth_and_back(name)
        n_frames, _ = _cut_edges(seconds, 0)
        write(path, (widescreen(seq[i % len(seq)], height) for i in range(n_frames)))
    return path


OCCLUDERS = ("dark", "textured", "skin", "half", "full")


def occluder_mask(
    kind: str, lm: npt.NDArray[np.float32], shape: tuple[int, int], t: float
) -> npt.NDArray[np.bool_]:
    """Where the object of ``kind`` lies on a face with landmarks ``lm`` at time ``t`` (s
    into its span): a rounded bar over the lower lip and chin ("dark", "textured",
    "skin"), over one half of the mouth ("half") or the whole mouth ("full"), sliding a
    little sideways as a hand or a microphone does. "half" hides a little less than the
    right half of the lips."""
    h, w = shape
    mouth_w = float(np.linalg.norm(lm[54] - lm[48]))
    sway = 0.1 if kind == "half" else 0.25
    cx = float(lm[48:68, 0].mean()) + sway * mouth_w * np.sin(2 * np.pi * t / 1.5)
    cy = float(lm[48:68, 1].mean())
    chin = float(lm[8, 1])
    mask = np.zeros((h, w), np.uint8)
    if kind == "half":
        box = (cx + 0.12 * mouth_w, cy - 0.5 * mouth_w, cx + 0.9 * mouth_w, chin + 0.1 * mouth_w)
    elif kind == "full":
        box = (cx - 0.9 * mouth_w, cy - 0.45 * mouth_w, cx + 0.9 * mouth_w, chin + 0.1 * mouth_w)
    else:
        box = (cx - 0.75 * mouth_w, cy + 0.12 * mouth_w, cx + 0.75 * mouth_w, chin + 0.3 * mouth_w)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    r = max(2, int(0.15 * mouth_w))
    cv2.rectangle(mask, (x1 + r, y1), (x2 - r, y2), 1, -1)
    cv2.rectangle(mask, (x1, y1 + r), (x2, y2 - r), 1, -1)
    for px, py in ((x1 + r, y1 + r), (x2 - r, y1 + r), (x1 + r, y2 - r), (x2 - r, y2 - r)):
        cv2.circle(mask, (px, py), r, 1, -1)
    return mask.astype(bool)


def occluder_pixels(kind: str, shape: tuple[int, int], skin: npt.NDArray[np.float64]) -> RGB:
    """The object's look: flat near-black, a texture cut from another photo (scikit-image's
    astronaut: her suit and the flag), or flat-shaded skin of the face's own colour."""
    h, w = shape
    if kind == "textured":
        from skimage import data

        photo = np.ascontiguousarray(data.astronaut()[250:512, 150:450])
        return np.asarray(cv2.resize(photo, (w, h)), np.uint8)
    if kind == "skin":
        shade = np.linspace(1.08, 0.92, h)[:, None, None]
        return np.clip(np.broadcast_to(skin * 0.95, (h, w, 3)) * shade, 0, 255).astype(np.uint8)
    return np.full((h, w, 3), (24, 22, 26), np.uint8)


def occluded(
    out: Path, kind: str, name: str = KATIE, span: tuple[float, float] = (1.5, 3.0)
) -> tuple[Path, Path]:
    """The clip with an object of ``kind`` over the mouth during ``span`` seconds, and a
    video of the object's mask (white where the object is), both 25 fps, the clip's own
    sound on the first."""
    from lipsync.face.tracker import FaceTracker

    frames = list(clip_frames(name, 0.0, 5.0))
    tracker = FaceTracker()
    shown, masks = [], []
    for k, f in enumerate(frames):
        lm = tracker.update(f)
        t = k / FPS
        m = np.zeros(f.shape[:2], bool)
        img = f
        if lm is not None and span[0] <= t < span[1]:
            m = occluder_mask(kind, lm, f.shape[:2], t - span[0])
            # The cheek: halfway between the jaw line and the side of the nose, at the
            # nose's height (beside the jaw line itself lie hair and background).
            cx, cy = (int(v) for v in (lm[2] + lm[31]) / 2)
            skin = f[cy - 3 : cy + 3, cx - 5 : cx + 5]
            look = occluder_pixels(kind, f.shape[:2], skin.reshape(-1, 3).mean(axis=0))
            img = np.where(m[..., None], look, f).astype(np.uint8)
        shown.append(img)
        masks.append(np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=2))
    video, mask = out / f"occluded_{kind}.mp4", out / f"occluded_{kind}_mask.mp4"
    write(video, iter(shown), clip_audio(name))
    write(mask, iter(masks))
    return video, mask


BUILDERS: dict[str, Callable[[Path], Edited]] = {
    "two_women": two_women,
    "man_woman": man_woman,
    "portrait_cuts": portrait_cuts,
    "side_by_side": side_by_side,
    "fast_pan": fast_pan,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("names", nargs="*", default=list(BUILDERS))
    args = ap.parse_args()
    for name in args.names:
        e = BUILDERS[name](args.out)
        print(f"{e.path}: {e.frames} frames, shots at {e.shot_starts} ({', '.join(e.shot_people)})")


if __name__ == "__main__":
    main()
