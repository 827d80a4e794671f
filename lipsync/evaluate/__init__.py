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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from lipsync.evaluate.cancel import Background, CancelPoll
from lipsync.evaluate.report import METHOD, EvalReport, format_report

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from lipsync.evaluate.mouth import MouthTrack
    from lipsync.evaluate.pauses import VoiceActivity
    from lipsync.evaluate.reference import JointPass, ReferenceResult
    from lipsync.evaluate.syncnet import LseResult
    from lipsync.evaluate.visemes import Phone

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
    frames: int  # the video's frame count as probed (0: unknown)


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
    frames = vinfo.video.frames or 0
    return _Inputs(video, audio, ref_path, fps, ref_fps, ref_has_audio, mono, frames)


@dataclass(frozen=True)
class _AudioSide:
    """What only needs the sound, worked out beside the video pass."""

    vad: VoiceActivity  # of the evaluated speech
    phones: list[Phone] | None  # PocketSphinx's, when visemes were asked for
    ref_vad: VoiceActivity | None  # of the reference's own audio track, when usable
    ref_basis: str  # how the reference's speech frames are chosen


def _reference_activity(inp: _Inputs, vad: VoiceActivity) -> tuple[VoiceActivity | None, str]:
    """Voice activity of the reference's own audio track and how its speech frames are
    chosen: the evaluated speech's when that speech is the reference's own file; None
    (every face frame) when it has no usable audio track."""
    from lipsync.errors import LipsyncError
    from lipsync.evaluate.pauses import voice_activity
    from lipsync.media.audio import load_audio, to_mono

    ref = inp.reference
    if ref is None:
        return None, ""
    if ref.resolve() == inp.audio.resolve():
        return vad, VOICE_BASIS
    if not inp.ref_has_audio:
        return None, "all face frames (the input has no audio track)"
    try:
        samples, _ = load_audio(ref, sample_rate=16000, channels=1)
    except LipsyncError:
        return None, "all face frames (its audio track could not be read)"
    return voice_activity(to_mono(samples)), VOICE_BASIS


def _audio_side(inp: _Inputs, visemes: bool) -> _AudioSide:
    from lipsync.evaluate.pauses import voice_activity
    from lipsync.evaluate.visemes import recognise_phones

    vad = voice_activity(inp.mono)
    ref_vad, basis = _reference_activity(inp, vad)
    phones = recognise_phones(inp.mono) if visemes else None
    # What the sync step needs (scipy.signal alone imports in 0.6 s), imported here, beside
    # the video pass, rather than after it.
    import lipsync.evaluate.sync  # noqa: F401

    return _AudioSide(vad, phones, ref_vad, basis)


def _reference_metrics(inp: _Inputs, joint: JointPass, side: _AudioSide) -> ReferenceResult:
    """The output compared with the input it was made from (:mod:`.reference`); the
    reference's speech frames by its voice activity (:func:`_reference_activity`)."""
    from lipsync.evaluate.pauses import speech_frames

    ref_speech: npt.NDArray[np.bool_] | None = None
    basis = side.ref_basis
    if side.ref_vad is not None:
        ref_speech = speech_frames(side.ref_vad, inp.ref_fps, len(joint.ref))
        if not ref_speech.any():
            ref_speech, basis = None, "all face frames (no voice activity in its audio track)"
    return joint.result(
        out_speech=speech_frames(side.vad, inp.fps, len(joint.out)),
        ref_speech=ref_speech,
        ref_speech_basis=basis,
    )


def _lse(
    inp: _Inputs,
    track: MouthTrack,
    models_dir: str | Path | None,
    requested: bool,
    clock: _Stopwatch,
    should_cancel: Callable[[], bool] | None = None,
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
        result = score_lse(
            load_syncnet(weights), inp.video, inp.mono, track, should_cancel=should_cancel
        )
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
    should_cancel: Callable[[], bool] | None = None,
    processes: int | None = None,
) -> EvalReport:
    """Measure ``video`` (a lip-synced output) against the speech in ``audio`` (default:
    the video's own audio track, i.e. what a viewer hears with the picture).

    ``reference`` is the input the video was made from (for what must not change);
    ``models_dir`` is where ``syncnet_v2.model`` is looked for (default: ./models or
    ``$LIPSYNC_MODELS_DIR``). ``should_cancel`` is polled as the work goes (each frame,
    between steps; at least every 0.5 s of work) and its True raises
    :class:`lipsync.errors.Canceled`. ``processes``: 1 keeps a comparison with
    ``reference`` in this process; None lets a long one measure its later frames in a
    second process at the same time (:mod:`.halves`). Input problems raise
    :class:`lipsync.errors.LipsyncError` subclasses.
    """
    from lipsync.evaluate.halves import split_at
    from lipsync.evaluate.mouth import measure_mouth
    from lipsync.evaluate.reference import measure_with_reference
    from lipsync.evaluate.visemes import recognise_phones

    poll = CancelPoll(should_cancel)
    clock = _Stopwatch()
    poll(force=True)
    with clock.lap("probe_audio"):
        inp = _open_inputs(video, audio, reference)
    # The sound's side (voice activity, phones) runs on a thread beside the video pass;
    # the phones, whose recogniser holds the interpreter lock for its whole call, go to
    # the comparison's second process when there is one (it ends before this one).
    split = inp.reference is not None and split_at(inp.frames, processes) is not None
    phones_beside = visemes and split
    sound = Background(
        lambda: _audio_side(inp, visemes and not phones_beside), name="evaluate-audio"
    )
    joint = None
    with clock.lap("mouth"):
        if inp.reference is None:
            track = measure_mouth(inp.video, fps=inp.fps, should_cancel=should_cancel)
        else:  # both mouths and the comparison in one pass
            joint = measure_with_reference(
                inp.video,
                inp.reference,
                fps=inp.fps,
                ref_fps=inp.ref_fps,
                frames=inp.frames,
                should_cancel=should_cancel,
                processes=processes,
                also=partial(recognise_phones, inp.mono) if phones_beside else None,
            )
            track = joint.out
    with clock.lap("audio_wait"):
        side = sound.wait(poll)
    # Imported only now (by the sound's side, on its thread): a second process measuring
    # the comparison's later frames (:mod:`.halves`) starts that much sooner.
    from lipsync.evaluate.pauses import closed_in_pauses
    from lipsync.evaluate.sync import measure_sync
    from lipsync.evaluate.visemes import viseme_contrast

    with clock.lap("sync_pauses"):
        sync = measure_sync(
            track.aperture, track.pixels, inp.mono, inp.fps, should_cancel=should_cancel
        )
        pauses = closed_in_pauses(track.aperture, inp.mono, inp.fps, activity=side.vad)
    phones = joint.also if phones_beside and joint is not None else side.phones
    vis = None if phones is None else viseme_contrast(track.aperture, phones, inp.fps)
    ref_metrics = None
    if joint is not None:
        poll(force=True)
        with clock.lap("reference"):
            ref_metrics = _reference_metrics(inp, joint, side)
    poll(force=True)
    lse_result, lse_note = _lse(inp, track, models_dir, lse, clock, should_cancel)
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
