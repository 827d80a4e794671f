"""The pipeline: probe -> analyse faces -> speech features -> generate -> enhance ->
composite -> encode + mux, streaming frames in batches with bounded memory."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lipsync.composite import blend_into
from lipsync.engines import EngineCache, create_engine
from lipsync.engines.base import Engine, EngineContext, SourceVideo
from lipsync.enhance import create_enhancer
from lipsync.enhance.base import Enhancer
from lipsync.errors import Canceled, InvalidOption, NoFace, OutputError
from lipsync.face.geometry import crop_box
from lipsync.face.tracker import BoxDetector, FaceChoice, FaceTracker, smooth_landmarks
from lipsync.media.audio import check_not_silent, load_audio, mux_rate, to_mono
from lipsync.media.decode import (
    even_box,
    fit_size,
    i420_to_rgb,
    iter_frames,
    paste_box,
    read_image,
)
from lipsync.media.encode import VideoWriter
from lipsync.media.probe import MediaInfo, probe
from lipsync.media.reader import FrameReader
from lipsync.media.timeline import build_timeline, fit_audio
from lipsync.options import RunOptions
from lipsync.types import CancelCheck, FaceObs, Patch, ProgressCallback, Result, RGBImage
from lipsync.workscale import WorkFrame, cut, paste_back, work_face_px, work_region

log = logging.getLogger(__name__)

# Share of the progress bar given to each phase.
PHASES = {
    "probe": (0.0, 0.02),
    "analyse": (0.02, 0.30),
    "audio": (0.30, 0.33),
    "render": (0.33, 1.0),
}


class _Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class _Frame:
    """What the engine gets for one frame: the whole frame (native path), or the face's
    region at the working scale (``work``), and the face in that image's coordinates."""

    image: RGBImage
    face: FaceObs
    work: WorkFrame | None = None


@dataclass(frozen=True)
class _Scale:
    """Input pixels -> the pixels the pipeline works in (``max_size``): x' = (x + 0.5) * sx
    - 0.5, as the frames are resized (the identity without a cap)."""

    sx: float = 1.0
    sy: float = 1.0

    @property
    def identity(self) -> bool:
        return self.sx == 1.0 and self.sy == 1.0

    def to_input(self, pts: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Working pixel coordinates -> the input's (what engines decoding it see)."""
        if self.identity:
            return pts
        out = (pts.astype(np.float64) + 0.5) / [self.sx, self.sy] - 0.5
        return out.astype(np.float32)


class Pipeline:
    def __init__(self, options: RunOptions, engines: EngineCache | None = None) -> None:
        self.options = options
        self.engines = engines
        self._scale = _Scale()
        self._size = (0, 0)  # the frames' (width, height) the pipeline works at
        self._work_frames = 0
        self._face_px = work_face_px()
        # The last frame prepared for the engine (stills and held frames repeat it).
        self._last: tuple[npt.NDArray[np.uint8], int, _Frame] | None = None

    # -- helpers -----------------------------------------------------------------------------
    def _engine(self) -> Engine:
        o = self.options
        ctx = EngineContext(
            device=o.device,
            checkpoint=o.checkpoint,
            models_dir=o.models_dir,
            batch_size=o.batch_size,
            pads=o.pads,
            fp16=o.fp16,
        )
        return self.engines.get(o.engine, ctx) if self.engines else create_engine(o.engine, ctx)

    def _detector(self) -> BoxDetector | None:
        """The face box detector; None: the tracker's own dlib detector."""
        o = self.options
        if o.box is not None:
            return None
        from lipsync.face.detectors import create_detector

        return create_detector(o.detector, o.models_dir, o.device)

    def run(
        self,
        video: Path,
        audio: Path,
        output: Path,
        *,
        progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> Result:
        o = self.options
        t_start = time.perf_counter()
        timer = _Timer()
        if output.suffix.lower() != ".mp4":
            raise InvalidOption(f"output must be an .mp4 file, got {output.name}")
        if output.exists() and output.is_dir():
            raise OutputError(f"{output} is a directory")

        def report(phase: str, frac: float) -> None:
            if progress is not None:
                lo, hi = PHASES[phase]
                progress(phase, lo + (hi - lo) * min(max(frac, 0.0), 1.0))

        def check_cancel() -> None:
            if should_cancel is not None and should_cancel():
                raise Canceled("the job was canceled")

        # 1. Probe both inputs before any heavy work.
        report("probe", 0.0)
        with timer.stage("probe"):
            vinfo = probe(video, o.limits, kind="video")
            ainfo = probe(audio, o.limits, kind="audio")
            assert vinfo.video is not None and ainfo.audio is not None
            enhancer = create_enhancer(o.enhancer, device=o.device)
            engine = self._engine()  # fail early on a missing model
            detector = self._detector()
        check_cancel()

        # 2. Audio: 16 kHz mono for the engine, the source rate for the output track.
        with timer.stage("audio_decode"):
            speech16k = to_mono(load_audio(audio, sample_rate=16000, channels=1)[0])
            check_not_silent(speech16k, 16000, audio.name)
            out_rate = mux_rate(ainfo.audio.sample_rate)
            track, _ = load_audio(audio, sample_rate=out_rate)
        audio_s = speech16k.size / 16000.0

        # Frame size: the input's, or scaled to the max_size cap before anything sees it.
        src_w, src_h = vinfo.video.width, vinfo.video.height
        width, height = fit_size(src_w, src_h, o.max_size)
        size = (width, height) if (width, height) != (src_w, src_h) else None
        # Frames decode at the even-padded size, so that is what is scaled.
        self._scale = (
            _Scale(width / (src_w + src_w % 2), height / (src_h + src_h % 2))
            if size is not None
            else _Scale()
        )
        self._size = (width, height)
        self._face_px = work_face_px()
        self._last = None
        self._work_frames = 0

        # 3. Faces: one streaming pass over the source, landmarks kept (tiny), frames not.
        fps = (
            Fraction(o.fps).limit_denominator(1001)
            if vinfo.is_image
            else Fraction(vinfo.video.fps_num, vinfo.video.fps_den)
        )
        times, landmarks, tracker = self._analyse(
            video, vinfo, report, check_cancel, timer, detector, size
        )
        valid = ~np.isnan(landmarks[:, 0, 0])
        if not valid.any():
            raise NoFace(f"{video.name}: no face found in any frame")
        landmarks = smooth_landmarks(landmarks)
        report("analyse", 1.0)

        # 4. Timeline and speech features on it.
        timeline = build_timeline(times, float(fps), audio_s, o.sync_mode, vinfo.is_image)
        if engine.wants_source:
            with timer.stage("source_analysis"):
                own_audio = None
                if vinfo.audio is not None:
                    own_audio = to_mono(load_audio(video, sample_rate=16000, channels=1)[0])
                # The source as stored: engines that decode it themselves read its own
                # pixels, so its landmarks are in its own coordinates (the frames they get
                # later may be scaled; their landmarks say where the face is in them).
                engine.prepare_source(
                    SourceVideo(
                        video,
                        float(fps),
                        times,
                        self._scale.to_input(landmarks),
                        vinfo.is_image,
                        own_audio,
                    )
                )
            check_cancel()
        with timer.stage("audio_features"):
            engine_audio = fit_audio(speech16k, 16000, timeline.audio_s)
            engine.prepare(engine_audio, float(fps), timeline.n_out)
        mux_audio = fit_audio(track, out_rate, timeline.audio_s)
        # Only the track being muxed is kept for the render: memory stays flat in length.
        del speech16k, engine_audio, track
        report("audio", 1.0)
        check_cancel()

        # 5. Render: stream frames in batches through engine, enhancer, compositor, encoder.
        reader = FrameReader(video, times, vinfo.is_image, size=size)
        no_face: list[int] = []
        writer = VideoWriter(
            output, width, height, fps, mux_audio, out_rate, crf=o.crf, preset=o.preset
        )
        with writer:
            batch: list[tuple[int, int, npt.NDArray[np.uint8]]] = []
            frames_iter = reader.frames(timeline.source_index)
            while True:
                with timer.stage("decode"):
                    batch = []
                    for item in frames_iter:
                        batch.append(item)
                        if len(batch) >= o.batch_size:
                            break
                if not batch:
                    break
                check_cancel()
                self._render_batch(
                    batch, landmarks, valid, engine, enhancer, writer, no_face, timer
                )
                report("render", writer.frames_written / timeline.n_out)
            with timer.stage("encode"):
                writer.commit()
        self._last = None
        if enhancer is not None:
            enhancer.close()
        wall = time.perf_counter() - t_start
        result = Result(
            output=output,
            width=width,
            height=height,
            fps=float(fps),
            frames=timeline.n_out,
            face_frames=timeline.n_out - len(no_face),
            no_face_frames=len(no_face),
            no_face_frame_indices=no_face,
            duration_s=timeline.n_out / float(fps),
            engine=o.engine,
            enhancer=o.enhancer,
            sync_mode=o.sync_mode,
            wall_s=wall,
            timings={k: round(v, 4) for k, v in timer.totals.items()},
            engine_info={
                **engine.info(),
                "face_detections": tracker.detections,
                "max_faces_seen": tracker.max_faces_seen,
                # Output frames whose face was rendered at the working scale (workscale).
                "work_scale_frames": self._work_frames,
            },
        )
        if self.engines is None:
            engine.close()
        return result

    def _analyse(
        self,
        video: Path,
        vinfo: MediaInfo,
        report: ProgressCallback,
        check_cancel: Callable[[], None],
        timer: _Timer,
        detector: BoxDetector | None = None,
        size: tuple[int, int] | None = None,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], FaceTracker]:
        o = self.options
        box = self._box()
        fixed = (box[2], box[0], box[3], box[1]) if box else None
        point = None
        if o.face_point is not None:
            sc = self._scale
            point = (
                int(round((o.face_point[0] + 0.5) * sc.sx - 0.5)),
                int(round((o.face_point[1] + 0.5) * sc.sy - 0.5)),
            )
        tracker = FaceTracker(FaceChoice(o.face_index, point), fixed_box=fixed, detector=detector)
        times: list[float] = []
        lms: list[npt.NDArray[np.float32]] = []
        nan = np.full((68, 2), np.nan, np.float32)
        expected = max(
            1,
            vinfo.video.frames
            if vinfo.video and vinfo.video.frames
            else int(vinfo.duration_s * (vinfo.video.fps if vinfo.video else 25)),
        )
        if vinfo.is_image:
            with timer.stage("decode"):
                image = read_image(video, "luma", size)
            with timer.stage("detect"):
                lm = tracker.update(image)
            return np.zeros(1), (lm if lm is not None else nan)[None].copy(), tracker
        frames = iter_frames(video, pixel_format="luma", size=size)
        while True:
            with timer.stage("decode"):
                frame = next(frames, None)
            if frame is None:
                break
            with timer.stage("detect"):
                lm = tracker.update(frame.image)
            times.append(frame.time_s)
            lms.append(lm if lm is not None else nan)
            if len(times) % 25 == 0:
                check_cancel()
                report("analyse", len(times) / expected)
        if not times:
            from lipsync.errors import CorruptMedia

            raise CorruptMedia(f"{video.name}: no decodable video frames")
        return np.asarray(times, np.float64), np.stack(lms), tracker

    def _box(self) -> tuple[int, int, int, int] | None:
        """The fixed ``box`` (y1, y2, x1, x2) in working pixels (scaled with max_size)."""
        box = self.options.box
        if box is None or self._scale.identity:
            return box
        sx, sy = self._scale.sx, self._scale.sy
        y1, y2, x1, x2 = box
        return (
            int(round(y1 * sy)),
            max(int(round(y1 * sy)) + 2, int(round(y2 * sy))),
            int(round(x1 * sx)),
            max(int(round(x1 * sx)) + 2, int(round(x2 * sx))),
        )

    def _face_box(
        self, lm: npt.NDArray[np.float32], width: int, height: int
    ) -> tuple[int, int, int, int]:
        """The engine's face crop: the fixed ``box`` as given (no pads, as Wav2Lip), else
        one derived from the landmarks plus ``pads``."""
        o = self.options
        box = self._box()
        if box is not None:
            y1, y2, x1, x2 = box
            return max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        pads = o.pads
        if not self._scale.identity:
            sx, sy = self._scale.sx, self._scale.sy
            top, bottom, left, right = pads
            pads = (
                int(round(top * sy)),
                int(round(bottom * sy)),
                int(round(left * sx)),
                int(round(right * sx)),
            )
        return crop_box(lm, pads, width, height)

    def _prepare(
        self, d: int, yuv: npt.NDArray[np.uint8], lm: npt.NDArray[np.float32], timer: _Timer
    ) -> _Frame:
        """The engine's input for source frame ``d``: the whole frame in RGB when the face
        is at most the working size, else the face's region at the working scale. The last
        one is kept: a still (or a held frame) is converted and cut once, not per frame."""
        last = self._last
        if last is not None and last[0] is yuv and last[1] == d:
            return last[2]
        face = FaceObs(self._face_box(lm, *self._size), lm)
        # The region is cut from the I420 frame, whose size is padded to even.
        region = work_region(lm, face.box, yuv.shape[1], yuv.shape[0] * 2 // 3, self._face_px)
        with timer.stage("convert"):
            if region is None:
                rgb = i420_to_rgb(yuv)
                rgb.flags.writeable = False  # shared by every frame that repeats it
                frame = _Frame(rgb, face)
            else:
                work = cut(yuv, region, face)
                work.image.flags.writeable = False
                work.full.flags.writeable = False
                frame = _Frame(work.image, work.face, work)
        self._last = (yuv, d, frame)
        return frame

    def _render_batch(
        self,
        batch: list[tuple[int, int, npt.NDArray[np.uint8]]],
        landmarks: npt.NDArray[np.float32],
        valid: npt.NDArray[np.bool_],
        engine: Engine,
        enhancer: Enhancer | None,
        writer: VideoWriter,
        no_face: list[int],
        timer: _Timer,
    ) -> None:
        """Frames arrive as I420; only frames with a face are converted to RGB (the whole
        frame, or only the face's region for a face above the working size) and only the
        patch's box is converted back (exact round trip), so untouched pixels reach the
        encoder unchanged."""
        o = self.options
        with_face = [(i, d, yuv) for i, d, yuv in batch if valid[d]]
        frames = [self._prepare(d, yuv, landmarks[d], timer) for _, d, yuv in with_face]
        patches: list[Patch] = []
        if with_face:
            with timer.stage("engine"):
                patches = engine.generate(
                    [f.image for f in frames],
                    [f.face for f in frames],
                    [i for i, _, _ in with_face],
                )
        results: dict[int, npt.NDArray[np.uint8]] = {}
        for (i, _, yuv), frame, patch in zip(with_face, frames, patches, strict=True):
            if enhancer is not None:
                with timer.stage("enhance"):
                    patch = enhancer.enhance(frame.image, patch, frame.face)
            if frame.work is not None:
                self._work_frames += 1
                with timer.stage("composite"):
                    results[i] = paste_back(yuv, frame.work, patch, o.blend)
                continue
            rgb = frame.image
            h, w = rgb.shape[:2]
            # Only the patch's box (widened to even coordinates) is blended and converted.
            x1, y1, x2, y2 = even_box(patch.x1, patch.y1, patch.x2, patch.y2, w, h)
            if x2 <= x1 or y2 <= y1:
                results[i] = yuv
                continue
            with timer.stage("composite"):
                canvas = rgb[y1:y2, x1:x2].copy()
                blend_into(canvas, (x1, y1), (w, h), patch, frame.face, o.blend)
            with timer.stage("convert"):
                results[i] = paste_box(yuv, canvas, x1, y1)
        for i, _, yuv in batch:
            frame_out = results.get(i)
            if frame_out is None:
                no_face.append(i)
                frame_out = yuv
            with timer.stage("encode"):
                writer.write(frame_out)
