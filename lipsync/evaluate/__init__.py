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

The report and its table live in :mod:`.report`. Nothing heavy is imported or loaded until
:func:`evaluate` runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lipsync.evaluate.report import METHOD, EvalReport, format_report

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from lipsync.evaluate.mouth import MouthTrack
    from lipsync.evaluate.pauses import VoiceActivity
    from lipsync.evaluate.reference import ReferenceResult
    from lipsync.evaluate.syncnet import LseResult
    from lipsync.evaluate.visemes import VisemeResult

__all__ = ["METHOD", "EvalReport", "evaluate", "format_report"]

SYNCNET_FILE = "syncnet_v2.model"
VOICE_BASIS = "voice activity of its audio track"


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass
class _Stopwatch:
    """Seconds per step of :func:`evaluate`, for the report's ``timings``."""

    start: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def lap(self, name: str) -> Iterator[None]:
        t = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - t

    def rounded(self) -> dict[str, float]:
        self.timings["total"] = time.monotonic() - self.start
        return {k: round(v, 3) for k, v in self.timings.items()}


@dataclass(frozen=True)
class _Inputs:
    """The checked inputs of one evaluation."""

    video: Path
    audio: Path  # the speech: the video itself when no audio was given
    reference: Path | None
    fps: float  # the video's
    ref_fps: float  # the reference's (the video's when it has no video stream info)
    ref_has_audio: bool
    mono: npt.NDArray[np.float32]  # the speech, 16 kHz mono


def _open_inputs(
    video: str | Path, audio: str | Path | None, reference: str | Path | None
) -> _Inputs:
    """Probe the inputs (refusing stills, a video without speech, silence) and load the
    speech."""
    from lipsync.errors import UnsupportedMedia
    from lipsync.media.audio import check_not_silent, load_audio, to_mono
    from lipsync.media.probe import probe

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
    fps = vinfo.video.fps
    ref_path = Path(reference) if reference is not None else None
    ref_fps, ref_has_audio = fps, False
    if ref_path is not None:
        rinfo = probe(ref_path, kind="video")
        if rinfo.is_image:
            raise UnsupportedMedia(f"{ref_path.name}: the reference must be a video")
        ref_fps = rinfo.video.fps if rinfo.video else fps
        ref_has_audio = rinfo.audio is not None
    samples, _ = load_audio(audio, sample_rate=16000, channels=1)
    mono = to_mono(samples)
    check_not_silent(mono, 16000, audio.name)
    return _Inputs(video, audio, ref_path, fps, ref_fps, ref_has_audio, mono)


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


def _reference_speech(
    inp: _Inputs, ref: Path, ref_track: MouthTrack, vad: VoiceActivity
) -> tuple[npt.NDArray[np.bool_] | None, str]:
    """The reference's speech frames and how they were chosen: by the evaluated speech's
    voice activity when that speech is the reference's own file, else by its own track."""
    from lipsync.evaluate.pauses import speech_frames

    ref_speech: npt.NDArray[np.bool_] | None
    if ref.resolve() == inp.audio.resolve():
        ref_speech, basis = speech_frames(vad, inp.ref_fps, len(ref_track)), VOICE_BASIS
    else:
        ref_speech, basis = _input_speech(ref, inp.ref_has_audio, inp.ref_fps, ref_track)
    if ref_speech is not None and not ref_speech.any():
        ref_speech, basis = None, "all face frames (no voice activity in its audio track)"
    return ref_speech, basis


def _reference_metrics(
    inp: _Inputs, ref: Path, track: MouthTrack, vad: VoiceActivity
) -> ReferenceResult:
    """The output compared with the input ``ref`` it was made from (:mod:`.reference`)."""
    from lipsync.evaluate.mouth import measure_mouth
    from lipsync.evaluate.pauses import speech_frames
    from lipsync.evaluate.reference import compare_with_reference

    ref_track = measure_mouth(ref, fps=inp.ref_fps)
    ref_speech, basis = _reference_speech(inp, ref, ref_track, vad)
    return compare_with_reference(
        inp.video,
        ref,
        track,
        ref_track,
        out_speech=speech_frames(vad, inp.fps, len(track)),
        ref_speech=ref_speech,
        ref_speech_basis=basis,
    )


def _visemes(inp: _Inputs, track: MouthTrack) -> VisemeResult:
    from lipsync.evaluate.visemes import recognise_phones, viseme_contrast

    return viseme_contrast(track.aperture, recognise_phones(inp.mono), inp.fps)


def _lse(
    inp: _Inputs,
    track: MouthTrack,
    models_dir: str | Path | None,
    requested: bool,
    clock: _Stopwatch,
) -> tuple[LseResult | None, str | None]:
    """LSE-D / LSE-C when requested and the SyncNet weights are there, else None and why."""
    from lipsync.options import default_models_dir

    weights = Path(models_dir if models_dir is not None else default_models_dir()) / SYNCNET_FILE
    if not requested:
        return None, "not requested"
    if not weights.is_file():
        return None, (
            f"{SYNCNET_FILE} not found in {weights.parent}/: put the SyncNet v2 "
            "checkpoint there to get LSE-D / LSE-C (see models/README.md)"
        )
    if track.face_rate < 0.5:
        return None, f"a face was found in only {track.face_rate:.0%} of the frames"
    from lipsync.evaluate.syncnet import load_syncnet, score_lse

    with clock.lap("lse"):
        result = score_lse(load_syncnet(weights), inp.video, inp.mono, track)
    if result is None:
        return None, "the video is too short for SyncNet's 5-frame windows"
    return result, None


def _aperture_stats(track: MouthTrack) -> tuple[float | None, float | None, float | None]:
    """Mean, 10th and 90th percentile of the aperture over the frames with a face."""
    import numpy as np

    have = track.aperture[track.found]
    if not have.size:
        return None, None, None
    return (
        _round(float(np.mean(have))),
        _round(float(np.percentile(have, 10))),
        _round(float(np.percentile(have, 90))),
    )


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
    from lipsync.evaluate.mouth import measure_mouth
    from lipsync.evaluate.pauses import closed_in_pauses, voice_activity
    from lipsync.evaluate.sync import measure_sync

    clock = _Stopwatch()
    with clock.lap("probe_audio"):
        inp = _open_inputs(video, audio, reference)
    with clock.lap("mouth"):
        track = measure_mouth(inp.video, fps=inp.fps)
    with clock.lap("sync_pauses"):
        sync = measure_sync(track.aperture, track.pixels, inp.mono, inp.fps)
        vad = voice_activity(inp.mono)
        pauses = closed_in_pauses(track.aperture, inp.mono, inp.fps, activity=vad)
    vis = None
    if visemes:
        with clock.lap("visemes"):
            vis = _visemes(inp, track)
    ref_metrics = None
    if inp.reference is not None:
        with clock.lap("reference"):
            ref_metrics = _reference_metrics(inp, inp.reference, track, vad)
    lse_result, lse_note = _lse(inp, track, models_dir, lse, clock)
    mean, p10, p90 = _aperture_stats(track)
    return EvalReport(
        video=str(inp.video),
        audio=str(inp.audio),
        reference=None if inp.reference is None else str(inp.reference),
        frames=len(track),
        fps=inp.fps,
        duration_s=round(len(track) / inp.fps, 3) if inp.fps else 0.0,
        face_found_rate=round(track.face_rate, 4),
        aperture_mean=mean,
        aperture_p10=p10,
        aperture_p90=p90,
        sync=sync,
        pauses=pauses,
        visemes=vis,
        reference_metrics=ref_metrics,
        lse=lse_result,
        lse_note=lse_note,
        timings=clock.rounded(),
    )
