"""The report of ``lipsync evaluate``: :class:`EvalReport`, what each measure is
(:data:`METHOD`), and :func:`format_report`, its readable two-column table.

Imports nothing heavy: the result types are only named for type checking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lipsync.evaluate.pauses import PauseResult
    from lipsync.evaluate.reference import ReferenceResult
    from lipsync.evaluate.sync import SyncResult
    from lipsync.evaluate.syncnet import LseResult
    from lipsync.evaluate.visemes import VisemeResult

__all__ = ["METHOD", "EvalReport", "format_report"]

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
    "lip_colour": "per frame pair, median CIELAB a*b* of the lip pixels (those of the "
    "mouth patch's lip area redder than midway between the skin above the lip and the "
    "area's 97th percentile of a*; dark pixels left out) of the output and of the input, both at "
    "the input's 5 points; share of frames whose distance exceeds 12",
    "outside_change": "per frame pair, the largest mean absolute difference (0-255) of any "
    "block (16 px at 720p) wholly outside the input's own padded lower face (5 points: 0.45 "
    "eye distances above the nose base to 1.8 below, up to 2.9 wide); every block where the "
    "input shows no face; share of frames above 15",
    "occlusion": "per frame pair, the share of the input's face outline below the nose that "
    "changed by more than 12 grey levels on pixels that are not this person's skin or lips "
    "in the input (a*b* Gaussian of the input's cheeks, forehead and lips, squared Mahalanobis "
    "distance over 18; areas wholly inside the mouth left out); share of frames above 2%",
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


Rows = list[tuple[str, str]]


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def format_report(data: dict[str, Any]) -> str:
    """A readable two-column table of :meth:`EvalReport.to_dict`."""
    rows = _video_rows(data) + _sync_rows(data["sync"], data["pauses"])
    rows += _viseme_rows(data.get("visemes"))
    ref = data.get("reference_metrics")
    if ref is not None:
        rows += _reference_rows(str(data["reference"]), ref)
    rows += _lse_rows(data.get("lse"), data.get("lse_note"))
    rows.append(("seconds", _fmt(data["timings"].get("total"), 1)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _video_rows(data: dict[str, Any]) -> Rows:
    """The video, the speech, how often a face was found and how far the mouth opened."""
    return [
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
    ]


def _sync_rows(sync: dict[str, Any], pauses: dict[str, Any]) -> Rows:
    """Offset, sync score, aperture/envelope correlation and the closed mouth in pauses."""
    return [
        (
            "A/V offset",
            "-"
            if sync.get("offset_frames") is None
            else f"{sync['offset_frames']:+d} frames ({sync['offset_ms']:+.0f} ms; "
            "+ = video late, - = audio late)"
            + (
                ""
                if sync.get("offset_reliable")
                else f"  rough: read from {sync['calibrated']['seconds_used']:g} s of "
                "speech (too little to be sure to a frame)"
            ),
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


def _viseme_rows(vis: dict[str, Any] | None) -> Rows:
    if vis is None:
        return []
    return [
        (
            "viseme contrast (en)",
            f"{_fmt(vis['contrast'])}  (open vowels {_fmt(vis['open_vowel_aperture'])}"
            f" over {vis['open_vowel_frames']} frames, p/b/m "
            f"{_fmt(vis['bilabial_aperture'])} over {vis['bilabial_frames']})",
        )
    ]


def _reference_rows(reference: str, ref: dict[str, Any]) -> Rows:
    """What must not change, flicker, articulation and sharpness against the input."""
    return [
        ("reference", reference),
        (
            "PSNR outside lower face",
            f"{_fmt(ref['psnr_outside_lower_face'], 2)} dB over {ref['frames_compared']} frames",
        ),
        ("SSIM outside lower face", _fmt(ref["ssim_outside_lower_face"], 4)),
        (
            "mouth flicker (ref)",
            f"{_fmt(ref['mouth_flicker'], 2)} ({_fmt(ref['reference_mouth_flicker'], 2)})",
        ),
        ("articulation ratio", _articulation_text(ref)),
        ("mouth sharpness ratio", _sharpness_text(ref)),
        ("lip colour moved", _flags_text(ref.get("lip_colour"), "a*b* distance")),
        ("changed outside lower face", _flags_text(ref.get("outside_change"), "block change")),
        ("changed non-skin (occluder)", _flags_text(ref.get("occlusion"), "share of face")),
    ]


def _flags_text(flags: dict[str, Any] | None, what: str) -> str:
    """'2.0% of 500 frames over 12 (max 13.7; worst frames 91: 13.7, 1: 13.2)'."""
    if flags is None or not flags.get("frames"):
        return "- (no frames to compare)"
    worst = ", ".join(f"{w['frame']}: {_fmt(w['value'], 3)}" for w in flags["worst"][:3])
    return (
        f"{flags['share']:.1%} of {flags['frames']} frames, {flags['flagged']} over "
        f"{flags['threshold']:g} ({what} max {_fmt(flags['max'], 3)}; worst frames {worst})"
    )


def _articulation_text(ref: dict[str, Any]) -> str:
    if ref.get("articulation_ratio") is None:
        return f"- ({ref.get('articulation_note')})"
    return (
        f"{_fmt(ref['articulation_ratio'])}  (speech p90 aperture "
        f"{_fmt(ref['output_speech_p90'])} over {ref['output_speech_frames']} frames / "
        f"input's {_fmt(ref['input_speech_p90'])} over {ref['input_speech_frames']}, "
        f"{ref['input_speech_basis']})"
    )


def _sharpness_text(ref: dict[str, Any]) -> str:
    if ref.get("sharpness_ratio") is None:
        return f"- ({ref.get('sharpness_note')})"
    return (
        f"{_fmt(ref['sharpness_ratio'])}  (Laplacian variance in the lip box "
        f"{_fmt(ref['output_mouth_sharpness'], 1)} / input's "
        f"{_fmt(ref['input_mouth_sharpness'], 1)} over {ref['sharpness_frames']} frames)"
    )


def _lse_rows(lse: dict[str, Any] | None, note: str | None) -> Rows:
    if lse is None:
        return [("LSE-D / LSE-C", f"- ({note})")]
    return [
        ("LSE-D / LSE-C", f"{lse['lse_d']:.3f} / {lse['lse_c']:.3f}"),
        ("SyncNet offset", f"{lse['av_offset']} frames"),
    ]
