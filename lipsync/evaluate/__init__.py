"""``lipsync evaluate``: measure a finished lip-synced video, independently of the engine
that made it.

:func:`evaluate` returns an :class:`EvalReport`:

* face found rate (CNN face detector + 5-point face frame; see :mod:`.mouth` for why the
  engines' 68-point landmarks are not used);
* mouth aperture per frame against the speech envelope: Pearson r at lags -5..+5 frames and
  the best lag (:mod:`.sync`);
* the audio/video offset and a sync score from a per-video calibrated audio -> mouth
  regression, held out, searched over -25..+25 frames (:func:`.sync.calibrated_sync`): what
  ranks a video's own speech above the same speech shifted;
* share of pause frames (silence >= 200 ms) with the mouth closed (:mod:`.pauses`);
* viseme contrast for English speech: aperture on open vowels minus on p/b/m, phones from
  PocketSphinx (:mod:`.visemes`);
* with a reference (the input video): PSNR / SSIM outside the lower face and mouth-region
  flicker beside the reference's own; the **articulation ratio** (the output's 90th-percentile
  aperture over its speech frames / the input's own over the input's speech frames, speech by
  the same voice activity as the pauses); the **mouth sharpness ratio** (variance of the
  Laplacian in the lip box, output / input, compared at equal mouth opening) (:mod:`.reference`);
* LSE-D / LSE-C from SyncNet when ``syncnet_v2.model`` is in the models directory
  (:mod:`.syncnet`); otherwise ``lse`` is None and ``lse_note`` says why.

Nothing heavy is imported or loaded until :func:`evaluate` runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from lipsync.evaluate.mouth import MouthTrack
    from lipsync.evaluate.pauses import PauseResult
    from lipsync.evaluate.reference import ReferenceResult
    from lipsync.evaluate.sync import SyncResult
    from lipsync.evaluate.syncnet import LseResult
    from lipsync.evaluate.visemes import VisemeResult

__all__ = ["EvalReport", "evaluate", "format_report"]

SYNCNET_FILE = "syncnet_v2.model"
METHOD = {
    "face_box": "dlib CNN face detector (mmod_human_face_detector.dat)",
    "face_frame": "dlib 5-point model (eye corners, nose base; no mouth points)",
    "aperture": "inner-lip gap read from lip redness / darkness down the mouth centre, "
    "over the face height",
    "envelope": "RMS of 800-3000 Hz speech per frame",
    "offset": "per-video ridge regression, 24-band log-mel (+-2 frames) -> aperture and 6 "
    "principal components of the mouth patch, 5-fold held-out r at lags -25..+25",
    "voice_activity": "silero-vad",
    "articulation": "output's 90th-percentile aperture over its speech frames (face found, "
    "voice activity of the evaluated speech) / the input's over its speech frames (voice "
    "activity of its own audio track; all its face frames when it has none); "
    "none under 10 frames",
    "sharpness": "variance of the 3x3 Laplacian of the grey image in the lip box (1.2 eye "
    "distances wide, 0.1-1.0 eye distances below the nose base, placed with the reference's "
    "5 points), frames with a face in both, output / input compared within 5 aperture "
    "classes (quantile bins of both videos' apertures; geometric means, weighted by count)",
    "phones": "PocketSphinx en-us all-phone",
}


@dataclass
class EvalReport:
    video: str
    audio: str
    reference: str | None
    frames: int
    fps: float
    duration_s: float
    face_found_rate: float
    aperture_mean: float | None
    aperture_p10: float | None
    aperture_p90: float | None
    sync: SyncResult
    pauses: PauseResult
    visemes: VisemeResult | None
    reference_metrics: ReferenceResult | None
    lse: LseResult | None
    lse_note: str | None
    timings: dict[str, float] = field(default_factory=dict)
    method: dict[str, str] = field(default_factory=lambda: dict(METHOD))

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "audio": self.audio,
            "reference": self.reference,
            "frames": self.frames,
            "fps": self.fps,
            "duration_s": self.duration_s,
            "face_found_rate": self.face_found_rate,
            "aperture": {
                "mean": self.aperture_mean,
                "p10": self.aperture_p10,
                "p90": self.aperture_p90,
            },
            "sync": self.sync.to_dict(),
            "pauses": self.pauses.to_dict(),
            "visemes": None if self.visemes is None else self.visemes.to_dict(),
            "reference_metrics": None
            if self.reference_metrics is None
            else self.reference_metrics.to_dict(),
            "lse": None if self.lse is None else self.lse.to_dict(),
            "lse_note": self.lse_note,
            "timings": dict(self.timings),
            "method": dict(self.method),
        }


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


VOICE_BASIS = "voice activity of its audio track"


def _input_speech(
    path: Path, has_audio: bool, fps: float, track: MouthTrack
) -> tuple[npt.NDArray[np.bool_] | None, str]:
    """The input's speech frames (by voice activity of its own audio track) and how they were
    chosen; None (every face frame) when it has no usable audio track."""
    from lipsync.errors import LipsyncError
    from lipsync.evaluate.pauses import speech_frames, voice_activity
    from lipsync.media.audio import load_audio, to_mono

    if not has_audio:
        return None, "all face frames (the input has no audio track)"
    try:
        samples, _ = load_audio(path, sample_rate=16000, channels=1)
    except LipsyncError:
        return None, "all face frames (its audio track could not be read)"
    vad = voice_activity(to_mono(samples))
    return speech_frames(vad, fps, len(track)), VOICE_BASIS


def evaluate(
    video: str | Path,
    audio: str | Path | None = None,
    reference: str | Path | None = None,
    models_dir: str | Path | None = None,
    *,
    visemes: bool = True,
    lse: bool = True,
) -> EvalReport:
    """Measure ``video`` (a lip-synced output) against the speech in ``audio`` (default:
    the video's own audio track, i.e. what a viewer hears with the picture).

    ``reference`` is the input the video was made from (for what must not change);
    ``models_dir`` is where ``syncnet_v2.model`` is looked for (default: ./models or
    ``$LIPSYNC_MODELS_DIR``). Input problems raise :class:`lipsync.errors.LipsyncError`
    subclasses.
    """
    import numpy as np

    from lipsync.errors import UnsupportedMedia
    from lipsync.evaluate.mouth import measure_mouth
    from lipsync.evaluate.pauses import closed_in_pauses, speech_frames, voice_activity
    from lipsync.evaluate.sync import measure_sync
    from lipsync.media.audio import check_not_silent, load_audio, to_mono
    from lipsync.media.probe import probe
    from lipsync.options import default_models_dir

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    video = Path(video)
    vinfo = probe(video, kind="video")
    if vinfo.is_image or vinfo.video is None:
        raise UnsupportedMedia(f"{video.name}: evaluate needs a video, not a still image")
    if audio is None:
        if vinfo.audio is None:
            raise UnsupportedMedia(
                f"{video.name} has no audio track: give the speech it should follow (--audio)"
            )
        audio = video
    audio = Path(audio)
    probe(audio, kind="audio")
    ref_path = Path(reference) if reference is not None else None
    if ref_path is not None:
        rinfo = probe(ref_path, kind="video")
        if rinfo.is_image:
            raise UnsupportedMedia(f"{ref_path.name}: the reference must be a video")
    samples, _ = load_audio(audio, sample_rate=16000, channels=1)
    mono = to_mono(samples)
    check_not_silent(mono, 16000, audio.name)
    fps = vinfo.video.fps
    timings["probe_audio"] = time.monotonic() - t0

    t = time.monotonic()
    track = measure_mouth(video, fps=fps)
    timings["mouth"] = time.monotonic() - t
    ap = track.aperture
    found = track.found

    t = time.monotonic()
    sync = measure_sync(ap, track.pixels, mono, fps)
    vad = voice_activity(mono)
    pauses = closed_in_pauses(ap, mono, fps, activity=vad)
    timings["sync_pauses"] = time.monotonic() - t

    vis = None
    if visemes:
        from lipsync.evaluate.visemes import recognise_phones, viseme_contrast

        t = time.monotonic()
        vis = viseme_contrast(ap, recognise_phones(mono), fps)
        timings["visemes"] = time.monotonic() - t

    ref_metrics = None
    if ref_path is not None:
        from lipsync.evaluate.reference import compare_with_reference

        t = time.monotonic()
        ref_fps = rinfo.video.fps if rinfo.video else fps
        ref_track = measure_mouth(ref_path, fps=ref_fps)
        ref_speech: npt.NDArray[np.bool_] | None
        if ref_path.resolve() == audio.resolve():
            ref_speech, basis = speech_frames(vad, ref_fps, len(ref_track)), VOICE_BASIS
        else:
            ref_speech, basis = _input_speech(ref_path, rinfo.audio is not None, ref_fps, ref_track)
        if ref_speech is not None and not ref_speech.any():
            ref_speech, basis = None, "all face frames (no voice activity in its audio track)"
        ref_metrics = compare_with_reference(
            video,
            ref_path,
            track,
            ref_track,
            out_speech=speech_frames(vad, fps, len(track)),
            ref_speech=ref_speech,
            ref_speech_basis=basis,
        )
        timings["reference"] = time.monotonic() - t

    lse_result = None
    lse_note: str | None = None
    weights = Path(models_dir if models_dir is not None else default_models_dir()) / SYNCNET_FILE
    if not lse:
        lse_note = "not requested"
    elif not weights.is_file():
        lse_note = (
            f"{SYNCNET_FILE} not found in {weights.parent}/: put the SyncNet v2 "
            "checkpoint there to get LSE-D / LSE-C (see models/README.md)"
        )
    elif track.face_rate < 0.5:
        lse_note = f"a face was found in only {track.face_rate:.0%} of the frames"
    else:
        from lipsync.evaluate.syncnet import load_syncnet, score_lse

        t = time.monotonic()
        lse_result = score_lse(load_syncnet(weights), video, mono, track)
        timings["lse"] = time.monotonic() - t
        if lse_result is None:
            lse_note = "the video is too short for SyncNet's 5-frame windows"
    timings["total"] = time.monotonic() - t0

    have = ap[found]
    return EvalReport(
        video=str(video),
        audio=str(audio),
        reference=None if ref_path is None else str(ref_path),
        frames=len(track),
        fps=fps,
        duration_s=round(len(track) / fps, 3) if fps else 0.0,
        face_found_rate=round(track.face_rate, 4),
        aperture_mean=_round(float(np.mean(have))) if have.size else None,
        aperture_p10=_round(float(np.percentile(have, 10))) if have.size else None,
        aperture_p90=_round(float(np.percentile(have, 90))) if have.size else None,
        sync=sync,
        pauses=pauses,
        visemes=vis,
        reference_metrics=ref_metrics,
        lse=lse_result,
        lse_note=lse_note,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def format_report(data: dict[str, Any]) -> str:
    """A readable two-column table of :meth:`EvalReport.to_dict`."""
    sync = data["sync"]
    pauses = data["pauses"]
    rows: list[tuple[str, str]] = [
        (
            "video",
            f"{data['video']} ({data['frames']} frames @ {data['fps']:g} fps, "
            f"{data['duration_s']:.2f} s)",
        ),
        ("audio", data["audio"]),
        ("face found rate", f"{data['face_found_rate']:.1%}"),
        (
            "aperture mean / p10 / p90",
            " / ".join(_fmt(data["aperture"][k]) for k in ("mean", "p10", "p90"))
            + " (share of face height)",
        ),
        (
            "A/V offset",
            "-"
            if sync.get("offset_frames") is None
            else f"{sync['offset_frames']:+d} frames ({sync['offset_ms']:+.0f} ms; "
            "+ = video late, - = audio late)",
        ),
        (
            "sync score / confidence",
            "- (too few face frames with speech)"
            if sync.get("calibrated") is None
            else f"{_fmt(sync['score'])} / {_fmt(sync['calibrated']['confidence'])}"
            "  (held-out r at lag 0; peak - median over -25..+25)",
        ),
        ("aperture/envelope r lag 0", _fmt(sync["r_at_zero"])),
        (
            "aperture/envelope best lag / r",
            f"{_fmt(sync['best_lag'])} frames / {_fmt(sync['best_r'])}  (+ = video late)",
        ),
        ("r by lag -5..+5", " ".join(_fmt(v, 2) for v in sync["r_by_lag"].values())),
        (
            "pause frames / closed",
            f"{pauses['pause_frames']} / "
            + (f"{pauses['closed_share']:.1%}" if pauses["closed_share"] is not None else "-"),
        ),
    ]
    vis = data.get("visemes")
    if vis is not None:
        rows.append(
            (
                "viseme contrast (en)",
                f"{_fmt(vis['contrast'])}  (open vowels {_fmt(vis['open_vowel_aperture'])}"
                f" over {vis['open_vowel_frames']} frames, p/b/m "
                f"{_fmt(vis['bilabial_aperture'])} over {vis['bilabial_frames']})",
            )
        )
    ref = data.get("reference_metrics")
    if ref is not None:
        rows += [
            ("reference", str(data["reference"])),
            (
                "PSNR outside lower face",
                f"{_fmt(ref['psnr_outside_lower_face'], 2)} dB over "
                f"{ref['frames_compared']} frames",
            ),
            ("SSIM outside lower face", _fmt(ref["ssim_outside_lower_face"], 4)),
            (
                "mouth flicker (ref)",
                f"{_fmt(ref['mouth_flicker'], 2)} ({_fmt(ref['reference_mouth_flicker'], 2)})",
            ),
            (
                "articulation ratio",
                f"- ({ref.get('articulation_note')})"
                if ref.get("articulation_ratio") is None
                else f"{_fmt(ref['articulation_ratio'])}  (speech p90 aperture "
                f"{_fmt(ref['output_speech_p90'])} over {ref['output_speech_frames']} frames / "
                f"input's {_fmt(ref['input_speech_p90'])} over {ref['input_speech_frames']}, "
                f"{ref['input_speech_basis']})",
            ),
            (
                "mouth sharpness ratio",
                f"- ({ref.get('sharpness_note')})"
                if ref.get("sharpness_ratio") is None
                else f"{_fmt(ref['sharpness_ratio'])}  (Laplacian variance in the lip box "
                f"{_fmt(ref['output_mouth_sharpness'], 1)} / input's "
                f"{_fmt(ref['input_mouth_sharpness'], 1)} over {ref['sharpness_frames']} frames)",
            ),
        ]
    lse = data.get("lse")
    if lse is not None:
        rows += [
            ("LSE-D / LSE-C", f"{lse['lse_d']:.3f} / {lse['lse_c']:.3f}"),
            ("SyncNet offset", f"{lse['av_offset']} frames"),
        ]
    else:
        rows.append(("LSE-D / LSE-C", f"- ({data.get('lse_note')})"))
    rows.append(("seconds", _fmt(data["timings"].get("total"), 1)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
