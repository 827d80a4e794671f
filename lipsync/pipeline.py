"""The pipeline: probe -> analyse faces -> speech features -> generate -> enhance ->
composite -> encode + mux, streaming frames in batches with bounded memory."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.engines import EngineCache, create_engine
from lipsync.engines.base import Engine, EngineContext, SourceVideo
from lipsync.enhance import create_enhancer
from lipsync.enhance.base import Enhancer
from lipsync.errors import Canceled, CorruptMedia, InvalidOption, NoFace, OutputError
from lipsync.face.analysis import FaceAnalyser, FaceAnalysis, FaceSetup
from lipsync.face.landmarks import Landmarker
from lipsync.face.tracker import BoxDetector, smooth_landmarks
from lipsync.media.audio import check_not_silent, load_audio, mux_rate, to_mono
from lipsync.media.decode import DecodedFrame, fit_size, iter_frames, read_image
from lipsync.media.encode import VideoWriter
from lipsync.media.prefetch import Prefetch
from lipsync.media.probe import MediaInfo, probe
from lipsync.media.reader import FrameReader
from lipsync.media.timeline import Timeline, build_timeline, fit_audio
from lipsync.models import MESH_MODEL_FILE
from lipsync.occlusion import OcclusionMasker
from lipsync.options import RunOptions, audio_codec_for, engine_options
from lipsync.render import (
    Batch,
    BatchRenderer,
    Generated,
    Geometry,
    Scale,
    StageTimer,
    trust_shares,
)
from lipsync.segments import (
    Face,
    Segment,
    check_against_media,
    face_groups,
    mix_track,
    output_seconds,
    segment_shares,
    speech_track,
)
from lipsync.types import CancelCheck, EngineReport, ProgressCallback, Result

log = logging.getLogger(__name__)

# Share of the progress bar given to each phase.
PHASES = {
    "probe": (0.0, 0.02),
    "analyse": (0.02, 0.30),
    "audio": (0.30, 0.33),
    "render": (0.33, 1.0),
}


@dataclass
class _Job:
    """One run's inputs, callbacks and stage timer."""

    video: Path
    audio: Path
    output: Path
    progress: ProgressCallback | None
    should_cancel: CancelCheck | None
    # With segments: this pass's segments (frames outside them are kept as they are).
    segments: tuple[Segment, ...] = ()
    timer: StageTimer = field(default_factory=StageTimer)
    started: float = field(default_factory=time.perf_counter)

    def report(self, phase: str, frac: float) -> None:
        if self.progress is not None:
            lo, hi = PHASES[phase]
            self.progress(phase, lo + (hi - lo) * min(max(frac, 0.0), 1.0))

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Canceled("the job was canceled")


@dataclass
class _Inputs:
    """What the probe stage learned and built: media facts and the job's components."""

    vinfo: MediaInfo
    ainfo: MediaInfo
    engine: Engine
    enhancer: Enhancer | None
    detector: BoxDetector | None
    fps: Fraction
    own_audio: npt.NDArray[np.float32] | None = None  # the video's own track, once loaded
    landmarker: Landmarker | None = None  # None: dlib's 68-point predictor


@dataclass
class _Speech:
    """The speech as the engine and the muxer want it."""

    speech16k: npt.NDArray[np.float32]  # mono 16 kHz for the engine
    track: npt.NDArray[np.float32]  # the output's audio at ``rate``
    rate: int


@dataclass
class _Faces:
    times: npt.NDArray[np.float64]
    landmarks: npt.NDArray[np.float32]  # smoothed; NaN rows where no face
    valid: npt.NDArray[np.bool_]
    analysis: FaceAnalysis


#: With segments the output is encoded at this x264 crf at most: most of its frames are the
#: input's, and at the default crf (12) a re-encode keeps ~41 dB PSNR of them, at 3 >= 45 dB.
SEGMENTS_CRF = 3

# Decoded frames the render's decoder may hold ahead: a batch's worth (it decodes the next
# batch while the engine works on this one), up to this many bytes of I420 frames.
PREFETCH_BYTES = 64 * 2**20


def render_prefetch(batch_size: int, pixels: int) -> int:
    """How many frames the render's decoder runs ahead (at least 2)."""
    return max(2, min(batch_size, PREFETCH_BYTES // max(1, pixels * 3 // 2)))


class Pipeline:
    """Runs jobs with one set of options; an engine cache makes engines outlive a job."""

    def __init__(self, options: RunOptions, engines: EngineCache | None = None) -> None:
        self.options = options
        self.engines = engines

    def _engine(self) -> Engine:
        o = self.options
        ctx = EngineContext(
            device=o.device,
            checkpoint=o.checkpoint,
            models_dir=o.models_dir,
            batch_size=o.batch_size,
            pads=o.pads,
            fp16=o.fp16,
            options=engine_options(o),
        )
        return self.engines.get(o.engine, ctx) if self.engines else create_engine(o.engine, ctx)

    def _detector(self) -> BoxDetector | None:
        """The face box detector; None: the tracker's own dlib detector."""
        o = self.options
        if o.box is not None:
            return None
        from lipsync.face.detectors import create_detector

        return create_detector(o.detector, o.models_dir, o.device)

    def _landmarker(self) -> Landmarker | None:
        """The 68-point landmark model; None: dlib's (the tracker's own, with its detector).
        A job that uses a component not for commercial use logs which (licences.notices)."""
        from lipsync.licences import notices

        for line in notices(self.options):
            log.warning("licence: %s", line)
        name = self.options.landmark_model
        if name == "dlib68":
            if self.options.landmarks is None:  # the default's file is not set up
                log.warning(
                    "landmarks: MediaPipe's face mesh (%s) is not set up, so this job falls "
                    "back to dlib68; make setup (scripts/mediapipe_models.sh) puts it there",
                    Path(self.options.models_dir) / MESH_MODEL_FILE,
                )
            return None
        from lipsync.face.landmarks import create_landmarker

        return create_landmarker(name, self.options.models_dir)

    def run(
        self,
        video: Path,
        audio: Path | Sequence[Path],
        output: Path,
        *,
        progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> Result:
        """Probe, analyse the faces, prepare the speech, render; the job's :class:`Result`.

        ``audio``: the speech, or with segments the job's audio inputs (in the order the
        segments' ``audio`` numbers them)."""
        if output.suffix.lower() != ".mp4":
            raise InvalidOption(f"output must be an .mp4 file, got {output.name}")
        if output.exists() and output.is_dir():
            raise OutputError(f"{output} is a directory")
        audios = [audio] if isinstance(audio, Path) else list(audio)
        if not audios:
            raise InvalidOption("no audio input given", field="audio")
        if self.options.segments:
            return self._run_segments(video, audios, output, progress, should_cancel)
        if len(audios) > 1:
            raise InvalidOption(
                f"{len(audios)} audio inputs but no segments saying where each one plays",
                field="segments",
            )
        return self._run(_Job(video, audios[0], output, progress, should_cancel))

    def _run(self, job: _Job, speech: _Speech | None = None) -> Result:
        inputs = self._probe(job)
        if speech is None:
            speech = self._load_speech(job, inputs)
        geometry = self._geometry(inputs.vinfo)
        faces = self._analyse(job, inputs, geometry)
        timeline, mux = self._prepare_engine(job, inputs, geometry, faces, speech)
        # Only the track being muxed is kept for the render: memory stays flat in length.
        del speech
        renderer = self._render(job, inputs, geometry, faces, timeline, mux)
        if inputs.enhancer is not None:
            inputs.enhancer.close()
        result = self._result(job, inputs, geometry, faces, timeline, renderer)
        if self.engines is None:
            inputs.engine.close()
        return result

    def _run_segments(
        self,
        video: Path,
        audios: list[Path],
        output: Path,
        progress: ProgressCallback | None,
        should_cancel: CancelCheck | None,
    ) -> Result:
        """A job with segments: checked against its inputs before any work, then one pass
        per face the segments name (each re-animating only its segments' frames, the
        passes before the last written losslessly), the output's sound mixed once."""
        o = self.options
        vinfo = probe(video, o.limits, kind="video")
        ainfos = [probe(a, o.limits, kind="audio") for a in audios]
        check_against_media(
            o.segments,
            vinfo.duration_s,
            [a.duration_s for a in ainfos],
            o.sync_mode,
            vinfo.is_image,
        )
        seconds = output_seconds(o.segments, vinfo.duration_s, vinfo.is_image)
        used = sorted({s.audio for s in o.segments})
        speech16k: dict[int, npt.NDArray[np.float32]] = {}
        for i in used:
            speech16k[i] = to_mono(load_audio(audios[i], sample_rate=16000, channels=1)[0])
            check_not_silent(speech16k[i], 16000, audios[i].name)
        own16k = (
            to_mono(load_audio(video, sample_rate=16000, channels=1)[0]) if vinfo.audio else None
        )
        first = ainfos[used[0]].audio
        assert first is not None
        rate = mux_rate(vinfo.audio.sample_rate if vinfo.audio else first.sample_rate)
        original = load_audio(video, sample_rate=rate)[0] if vinfo.audio else None
        channels = original.shape[0] if original is not None else None
        speech = {i: load_audio(audios[i], sample_rate=rate, channels=channels)[0] for i in used}
        track = mix_track(
            o.segments, original, _dense(speech), rate, seconds, o.segment_audio, o.duck_db
        )
        groups = face_groups(o.segments)
        result: Result | None = None
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".lipsync-seg-", dir=output.parent) as tmp:
            source = video
            for k, (face, segs) in enumerate(groups):
                last = k == len(groups) - 1
                target = output if last else Path(tmp) / f"pass{k}.mp4"
                opts = replace(
                    o,
                    segments=(),
                    # Lossless between passes; the output at most SEGMENTS_CRF, so the
                    # frames outside the segments pass through at >= 45 dB PSNR.
                    crf=min(o.crf, SEGMENTS_CRF) if last else 0,
                    sync_mode=o.sync_mode if k == 0 else "silence",
                    **_face_fields(o, face),
                )
                job = _Job(
                    source,
                    audios[segs[0].audio],
                    target,
                    _pass_progress(progress, k, len(groups)),
                    should_cancel,
                    segments=segs,
                )
                engine_speech = speech_track(segs, _dense(speech16k), seconds, own16k)
                pass_speech = _Speech(engine_speech, track, rate)
                result = Pipeline(opts, self.engines)._run(job, pass_speech)
                source = target
        assert result is not None
        return result

    def _probe(self, job: _Job) -> _Inputs:
        """1. Probe both inputs and build the components before any heavy work (a missing
        model fails here)."""
        o = self.options
        job.report("probe", 0.0)
        with job.timer.stage("probe"):
            vinfo = probe(job.video, o.limits, kind="video")
            ainfo = probe(job.audio, o.limits, kind="audio")
            assert vinfo.video is not None and ainfo.audio is not None
            enhancer = create_enhancer(o.enhancer, device=o.device)
            engine = self._engine()
            detector = self._detector()
            landmarker = self._landmarker()
        job.check_cancel()
        fps = (
            Fraction(o.fps).limit_denominator(1001)
            if vinfo.is_image
            else Fraction(vinfo.video.fps_num, vinfo.video.fps_den)
        )
        return _Inputs(vinfo, ainfo, engine, enhancer, detector, fps, landmarker=landmarker)

    def _load_speech(self, job: _Job, inputs: _Inputs) -> _Speech:
        """2. Audio: 16 kHz mono for the engine, the source rate for the output track."""
        assert inputs.ainfo.audio is not None
        with job.timer.stage("audio_decode"):
            speech16k = to_mono(load_audio(job.audio, sample_rate=16000, channels=1)[0])
            check_not_silent(speech16k, 16000, job.audio.name)
            out_rate = mux_rate(inputs.ainfo.audio.sample_rate)
            track, _ = load_audio(job.audio, sample_rate=out_rate)
        return _Speech(speech16k, track, out_rate)

    def _geometry(self, vinfo: MediaInfo) -> Geometry:
        """Frame size: the input's, or scaled to the max_size cap before anything sees it."""
        assert vinfo.video is not None
        src_w, src_h = vinfo.video.width, vinfo.video.height
        width, height = fit_size(src_w, src_h, self.options.max_size)
        if (width, height) == (src_w, src_h):
            return Geometry(self.options, (width, height))
        # Frames decode at the even-padded size, so that is what is scaled.
        scale = Scale(width / (src_w + src_w % 2), height / (src_h + src_h % 2))
        return Geometry(self.options, (width, height), scale)

    def _analyse(self, job: _Job, inputs: _Inputs, geometry: Geometry) -> _Faces:
        """3. Faces: one streaming pass over the source, landmarks kept (tiny), frames not."""
        own = self._own_audio(job, inputs)
        analysis = analyse_faces(job, inputs, geometry, self.options, own)
        valid = ~np.isnan(analysis.landmarks[:, 0, 0])
        if not valid.any():
            raise NoFace(self._no_face_message(job, analysis))
        landmarks = smooth_untrusted_apart(analysis, float(inputs.fps))
        job.report("analyse", 1.0)
        return _Faces(analysis.times, landmarks, valid, analysis)

    def _no_face_message(self, job: _Job, analysis: FaceAnalysis) -> str:
        o = self.options
        seen = analysis.max_faces_seen
        if o.face_index is not None and seen > 0:
            plural = "face is" if seen == 1 else "faces are"
            return (
                f"{job.video.name}: face index {o.face_index} was asked for, but only "
                f"{seen} {plural} seen (indices count from 0, from the left)"
            )
        return f"{job.video.name}: no face found in any frame"

    def _own_audio(self, job: _Job, inputs: _Inputs) -> npt.NDArray[np.float32] | None:
        """The video's own sound track, mono 16 kHz (None for none), loaded once."""
        if inputs.own_audio is None and inputs.vinfo.audio is not None:
            with job.timer.stage("audio_decode"):
                inputs.own_audio = to_mono(load_audio(job.video, sample_rate=16000, channels=1)[0])
        return inputs.own_audio

    def _prepare_engine(
        self, job: _Job, inputs: _Inputs, geometry: Geometry, faces: _Faces, speech: _Speech
    ) -> tuple[Timeline, _Speech]:
        """4. The timeline, and the engine's speech features on it; the audio to mux."""
        fps, engine = float(inputs.fps), inputs.engine
        audio_s = speech.speech16k.size / 16000.0
        timeline = build_timeline(
            faces.times, fps, audio_s, self.options.sync_mode, inputs.vinfo.is_image
        )
        if engine.wants_source:
            with job.timer.stage("source_analysis"):
                own_audio = self._own_audio(job, inputs)
                # The source as stored: engines that decode it themselves read its own
                # pixels, so its landmarks are in its own coordinates (the frames they get
                # later may be scaled; their landmarks say where the face is in them).
                landmarks = geometry.scale.to_input(faces.landmarks)
                unused = faces.analysis.covered | set(faces.analysis.untrusted)
                if unused:
                    # A mouth something covers is never re-used (it would carry the
                    # object onto other frames), nor one whose landmarks can't be trusted.
                    landmarks = landmarks.copy()
                    landmarks[sorted(unused)] = np.nan
                source = SourceVideo(
                    job.video,
                    fps,
                    faces.times,
                    landmarks,
                    inputs.vinfo.is_image,
                    own_audio,
                    shots=faces.analysis.shot_of,
                    people=faces.analysis.person_of,
                    output_source=np.asarray(timeline.source_index, np.int64),
                )
                engine.prepare_source(source)
            job.check_cancel()
        with job.timer.stage("audio_features"):
            engine.prepare(
                fit_audio(speech.speech16k, 16000, timeline.audio_s), fps, timeline.n_out
            )
        track = fit_audio(speech.track, speech.rate, timeline.audio_s)
        job.report("audio", 1.0)
        job.check_cancel()
        return timeline, _Speech(speech.speech16k[:0], track, speech.rate)

    def _render(
        self,
        job: _Job,
        inputs: _Inputs,
        geometry: Geometry,
        faces: _Faces,
        timeline: Timeline,
        mux: _Speech,
    ) -> BatchRenderer:
        """5. Render: stream frames in batches through engine, enhancer, compositor, encoder."""
        o = self.options
        size = geometry.decode_size
        reader = FrameReader(job.video, faces.times, inputs.vinfo.is_image, size=size)
        width, height = geometry.size
        writer = VideoWriter(
            job.output,
            width,
            height,
            inputs.fps,
            mux.track,
            mux.rate,
            crf=o.crf,
            preset=o.preset,
            audio_codec=audio_codec_for(o.audio_codec, bool(job.segments)),
        )
        analysis = faces.analysis
        renderer = BatchRenderer(
            geometry,
            faces.landmarks,
            faces.valid,
            inputs.engine,
            inputs.enhancer,
            writer,
            job.timer,
            people=analysis.person_of,
            shots=analysis.shot_of,
            shares=_shares(job, timeline, analysis.untrusted, float(inputs.fps)),
            occlusion=OcclusionMasker(analysis.occlusion) if analysis.occlusion else None,
        )
        if job.segments and renderer.shares is not None:
            outside = np.flatnonzero(renderer.shares == 0)
            renderer.kept_reasons.update(dict.fromkeys(outside.tolist(), "outside_segments"))
        # The decoder runs ahead on a thread of its own: "decode" is the time spent waiting.
        # The engine works on the next batch on a thread of its own while this one masks,
        # composites and hands the last batch to the encoder (its own thread too).
        ahead_n = render_prefetch(o.batch_size, width * height)
        engine_thread = ThreadPoolExecutor(1, thread_name_prefix="lipsync-engine")
        try:
            with writer, Prefetch(reader.frames(timeline.source_index), ahead_n) as ahead:
                frames = iter(ahead)
                pending: Future[Generated] | None = None
                while batch := self._next_batch(job, frames):
                    job.check_cancel()
                    nxt = engine_thread.submit(renderer.generate, batch)
                    if pending is not None:
                        renderer.finish(pending.result())
                        job.report("render", writer.frames_written / timeline.n_out)
                    pending = nxt
                if pending is not None:
                    renderer.finish(pending.result())
                    job.report("render", writer.frames_written / timeline.n_out)
                with job.timer.stage("encode"):
                    writer.commit()
        finally:
            _join_engine(engine_thread)
        return renderer

    def _next_batch(self, job: _Job, frames: Iterator[tuple[int, int, Any]]) -> Batch:
        with job.timer.stage("decode"):
            return list(islice(frames, self.options.batch_size))

    def _result(
        self,
        job: _Job,
        inputs: _Inputs,
        geometry: Geometry,
        faces: _Faces,
        timeline: Timeline,
        renderer: BatchRenderer,
    ) -> Result:
        o, fps = self.options, float(inputs.fps)
        n_out = timeline.n_out
        no_face = renderer.no_face
        return Result(
            output=job.output,
            width=geometry.size[0],
            height=geometry.size[1],
            fps=fps,
            frames=n_out,
            face_frames=n_out - len(no_face),
            no_face_frames=len(no_face),
            no_face_frame_indices=no_face,
            duration_s=n_out / fps,
            engine=o.engine,
            enhancer=o.enhancer,
            sync_mode=o.sync_mode,
            wall_s=time.perf_counter() - job.started,
            timings={k: round(v, 4) for k, v in job.timer.totals.items()},
            engine_report=(report := inputs.engine.report()),
            shots=[s.to_dict() for s in faces.analysis.shots],
            shot_faces=[sf.to_dict() for sf in faces.analysis.shot_faces],
            people=people_summary(faces.analysis, report),
            frames_kept_original=kept_summary(renderer, faces.analysis, timeline.source_index),
            occluded_frames=len(renderer.occluded),
            engine_info={
                **report.as_dict(),
                "face_detections": faces.analysis.detections,
                "max_faces_seen": faces.analysis.max_faces_seen,
                # Output frames whose face was rendered at the working scale (workscale).
                "work_scale_frames": renderer.work_frames,
            },
        )


def _join_engine(pool: ThreadPoolExecutor) -> None:
    """Wait for the engine's batches in flight, also while a stop is raised again and again
    (the worker's Stopper signals every half second): the engine, cached per process, must
    not run on into the next job. The wait is two batches at most. It waits on a no-op
    handed over after them (one thread: in order), not on the thread: a join that a signal
    interrupts can take a live thread for ended (CPython 3.11, bpo-45274)."""
    barrier: Future[None] | None = None
    while True:
        try:
            if barrier is None:
                barrier = pool.submit(_nothing)
            wait([barrier])
            break
        except Canceled:
            continue
    pool.shutdown(wait=True)


def _nothing() -> None:
    return None


def _dense(tracks: dict[int, npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]:
    """``{audio index: samples}`` as a list indexed by audio input (unused ones empty)."""
    some = next(iter(tracks.values()))
    empty = np.zeros(some.shape[:-1] + (0,), np.float32)
    return [tracks.get(i, empty) for i in range(max(tracks) + 1)]


def _face_fields(options: RunOptions, face: Face) -> dict[str, Any]:
    """The face options for a pass over segments naming ``face`` (None: the job's own)."""
    if face is None:
        return {}
    if isinstance(face, str):
        return {"face": face, "face_index": None, "face_point": None}
    if isinstance(face, int):
        return {"face": None, "face_index": face, "face_point": None}
    return {"face": None, "face_index": None, "face_point": face}


def _pass_progress(progress: ProgressCallback | None, k: int, n: int) -> ProgressCallback | None:
    """Pass ``k`` of ``n`` reports its share of the bar."""
    if progress is None or n == 1:
        return progress
    return lambda phase, frac: progress(phase, (k + frac) / n)


def _shares(
    job: _Job, timeline: Timeline, untrusted: dict[int, str], fps: float
) -> npt.NDArray[np.float32] | None:
    """Per output frame, the generated mouth's share: the trusted frames' (see
    :func:`trust_shares`), and with segments 0 outside them, eased in at their edges."""
    shares = trust_shares(timeline.source_index, untrusted)
    if not job.segments:
        return shares
    inside = segment_shares(job.segments, timeline.n_out, fps)
    return inside if shares is None else np.minimum(shares, inside)


def people_summary(analysis: FaceAnalysis, report: EngineReport) -> list[dict[str, Any]]:
    """Each person: id, source frames and shots showing them, and how their mouth was drawn
    (the engine's path for them: e.g. retrieval, or viseme when too few of their frames
    could be re-used, with the reason)."""
    per_person = report.details.get("people", {})
    out = []
    for pid in sorted({int(p) for p in analysis.person_of if p >= 0}):
        info = per_person.get(str(pid)) or per_person.get(pid) or {}
        out.append(
            {
                "id": pid,
                "frames": int(np.sum(analysis.person_of == pid)),
                "shots": [sf.shot for sf in analysis.shot_faces if sf.person == pid],
                "rendered": info.get("path", report.path),
                "reason": info.get("reason", report.reason),
            }
        )
    return out


def smooth_untrusted_apart(analysis: FaceAnalysis, fps: float) -> npt.NDArray[np.float32]:
    """The analysis's landmarks smoothed over time, the untrusted frames left out of the
    smoothing (a glitch would spread to its neighbours through the filter's window and
    misplace their mouths) and kept raw: they are not painted on."""
    raw = analysis.landmarks
    bad = sorted(analysis.untrusted)
    if not bad:
        return smooth_landmarks(raw, fps, analysis.shot_of)
    apart = raw.copy()
    apart[bad] = np.nan
    out = smooth_landmarks(apart, fps, analysis.shot_of)
    out[bad] = raw[bad]
    return out


def kept_summary(
    renderer: BatchRenderer, analysis: FaceAnalysis, source_index: npt.NDArray[np.int64]
) -> dict[str, Any]:
    """The output frames left as the input has them (a face not to be trusted): how many,
    why, and which (the first 200)."""
    kept = renderer.kept_original
    reasons: dict[str, int] = {}
    for i in kept:
        why = renderer.kept_reasons.get(i) or analysis.untrusted.get(int(source_index[i]), "eased")
        reasons[why] = reasons.get(why, 0) + 1
    return {"count": len(kept), "reasons": reasons, "frames": kept[:200]}


def face_setup(options: RunOptions, geometry: Geometry) -> FaceSetup:
    """How the analysis chooses the face of each shot, from the options (in working pixels)."""
    box = geometry.box()
    fixed = (box[2], box[0], box[3], box[1]) if box else None
    point = geometry.face_point()
    if fixed is not None:
        mode = "box"
    elif options.face_index is not None:
        mode = "index"
    elif point is not None:
        mode = "point"
    else:
        mode = options.face or "auto"
    return FaceSetup(mode, options.face_index, point, fixed)


def analyse_faces(
    job: _Job,
    inputs: _Inputs,
    geometry: Geometry,
    options: RunOptions,
    own_audio: npt.NDArray[np.float32] | None = None,
) -> FaceAnalysis:
    """The shots, and every source frame's 68 landmarks of the chosen face (NaN where no
    face), its person and its time, decoding the video once at the working size."""
    setup = face_setup(options, geometry)
    vinfo = inputs.vinfo
    analyser = FaceAnalyser(
        setup,
        float(inputs.fps),
        detector=inputs.detector,
        own_audio16k=own_audio if setup.mode == "auto" else None,
        identities=not vinfo.is_image,
        stage=job.timer.stage,
        occlusion=options.occlusion == "auto",
        landmarker=inputs.landmarker,
    )
    size = geometry.decode_size
    if vinfo.is_image:
        with job.timer.stage("decode"):
            image = read_image(job.video, "i420", size)
        analyser.feed(DecodedFrame(0, 0.0, image))
        return analyser.finish()
    expected = max(
        1,
        vinfo.video.frames
        if vinfo.video and vinfo.video.frames
        else int(vinfo.duration_s * (vinfo.video.fps if vinfo.video else 25)),
    )
    n = 0
    # The decoder and the cut detector run ahead on a thread of their own: "decode" is the
    # time spent waiting for them.
    decoded = iter_frames(job.video, pixel_format="i420", size=size)
    with Prefetch(analyser.with_cuts(decoded)) as ahead:
        frames = iter(ahead)
        while True:
            with job.timer.stage("decode"):
                item = next(frames, None)
            if item is None:
                break
            analyser.feed(*item)
            n += 1
            if n % 25 == 0:
                job.check_cancel()
                job.report("analyse", n / expected)
    if n == 0:
        raise CorruptMedia(f"{job.video.name}: no decodable video frames")
    return analyser.finish()
