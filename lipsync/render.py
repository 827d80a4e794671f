"""The render stage: frames in batches through engine, enhancer, compositor and encoder.

:class:`Geometry` maps the options' pixel values (box, pads, face point) to the pixels the
pipeline works in (``max_size``); :class:`BatchRenderer` turns one batch of decoded I420
frames into encoded output frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from lipsync.composite import blend_into, lower_face_mask
from lipsync.engines.base import Engine
from lipsync.enhance.base import Enhancer
from lipsync.face.geometry import crop_box
from lipsync.media.decode import even_box, i420_to_rgb, paste_box
from lipsync.media.encode import VideoWriter
from lipsync.occlusion import OCCLUDED_KEEP, OcclusionMasker
from lipsync.options import RunOptions
from lipsync.types import FaceObs, Patch, RGBImage
from lipsync.workscale import WorkFrame, cut, paste_back, work_face_px, work_region

Box = tuple[int, int, int, int]
Batch = list[tuple[int, int, npt.NDArray[np.uint8]]]  # (output index, source index, I420)


class StageTimer:
    """Seconds spent per named stage, summed over the job."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0


@dataclass(frozen=True)
class Scale:
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


@dataclass(frozen=True)
class Geometry:
    """The frames' working size, its scale from the input, and the options' pixel values
    (``box``, ``pads``, ``face_point``) in working pixels."""

    options: RunOptions
    size: tuple[int, int]  # (width, height) the pipeline works at
    scale: Scale = field(default_factory=Scale)

    @property
    def decode_size(self) -> tuple[int, int] | None:
        """The size frames are decoded at: None keeps the input's, else the working size."""
        return None if self.scale.identity else self.size

    def box(self) -> Box | None:
        """The fixed ``box`` (y1, y2, x1, x2) in working pixels (scaled with max_size)."""
        box = self.options.box
        if box is None or self.scale.identity:
            return box
        sx, sy = self.scale.sx, self.scale.sy
        y1, y2, x1, x2 = box
        return (
            int(round(y1 * sy)),
            max(int(round(y1 * sy)) + 2, int(round(y2 * sy))),
            int(round(x1 * sx)),
            max(int(round(x1 * sx)) + 2, int(round(x2 * sx))),
        )

    def face_point(self) -> tuple[int, int] | None:
        point = self.options.face_point
        if point is None:
            return None
        sc = self.scale
        return (
            int(round((point[0] + 0.5) * sc.sx - 0.5)),
            int(round((point[1] + 0.5) * sc.sy - 0.5)),
        )

    def face_box(self, lm: npt.NDArray[np.float32]) -> Box:
        """The engine's face crop: the fixed ``box`` as given (no pads, as Wav2Lip), else
        one derived from the landmarks plus ``pads``."""
        width, height = self.size
        box = self.box()
        if box is not None:
            y1, y2, x1, x2 = box
            return max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        pads = self.options.pads
        if not self.scale.identity:
            sx, sy = self.scale.sx, self.scale.sy
            top, bottom, left, right = pads
            pads = (
                int(round(top * sy)),
                int(round(bottom * sy)),
                int(round(left * sx)),
                int(round(right * sx)),
            )
        return crop_box(lm, pads, width, height)


@dataclass
class PreparedFrame:
    """What the engine gets for one frame: the whole frame (native path), or the face's
    region at the working scale (``work``), and the face in that image's coordinates."""

    image: RGBImage
    face: FaceObs
    work: WorkFrame | None = None


@dataclass
class Generated:
    """A batch with the engine's patches of its frames with a face (in the same order)."""

    batch: Batch
    with_face: list[tuple[int, int, npt.NDArray[np.uint8]]]
    frames: list[PreparedFrame]
    patches: list[Patch]


@dataclass
class BatchRenderer:
    """One job's render: each batch through the engine, the enhancer, the compositor and
    the encoder. Frames arrive as I420; only frames with a face are converted to RGB (the
    whole frame, or only the face's region for a face above the working size) and only the
    patch's box is converted back (exact round trip), so untouched pixels reach the encoder
    unchanged."""

    geometry: Geometry
    landmarks: npt.NDArray[np.float32]
    valid: npt.NDArray[np.bool_]
    engine: Engine
    enhancer: Enhancer | None
    writer: VideoWriter
    timer: StageTimer
    # (N,) whose face / which shot per source frame (None: one person, one shot)
    people: npt.NDArray[np.int32] | None = None
    shots: npt.NDArray[np.int32] | None = None
    # Per output frame, the share of the generated mouth (1 everywhere when None): 0 where
    # the frame's face could not be trusted (the frame is left as it is), eased in between.
    shares: npt.NDArray[np.float32] | None = None
    # Things in front of the mouth (a hand, a microphone) stay in front: None = off.
    occlusion: OcclusionMasker | None = None
    no_face: list[int] = field(default_factory=list)
    kept_original: list[int] = field(default_factory=list)
    kept_reasons: dict[int, str] = field(default_factory=dict)  # output index -> why
    occluded: list[int] = field(default_factory=list)  # output frames with a mask applied
    work_frames: int = 0  # output frames whose face was rendered at the working scale
    face_px: float = field(default_factory=work_face_px)
    # The last frame prepared for the engine (stills and held frames repeat it).
    _last: tuple[npt.NDArray[np.uint8], int, PreparedFrame] | None = None

    def prepare(self, d: int, yuv: npt.NDArray[np.uint8]) -> PreparedFrame:
        """The engine's input for source frame ``d``: the whole frame in RGB when the face
        is at most the working size, else the face's region at the working scale. The last
        one is kept: a still (or a held frame) is converted and cut once, not per frame."""
        last = self._last
        if last is not None and last[0] is yuv and last[1] == d:
            return last[2]
        lm = self.landmarks[d]
        person = int(self.people[d]) if self.people is not None else 0
        shot = int(self.shots[d]) if self.shots is not None else 0
        face = FaceObs(self.geometry.face_box(lm), lm, person, shot)
        # The region is cut from the I420 frame, whose size is padded to even.
        region = work_region(lm, face.box, yuv.shape[1], yuv.shape[0] * 2 // 3, self.face_px)
        with self.timer.stage("convert"):
            if region is None:
                rgb = i420_to_rgb(yuv)
                rgb.flags.writeable = False  # shared by every frame that repeats it
                frame = PreparedFrame(rgb, face)
            else:
                work = cut(yuv, region, face)
                work.image.flags.writeable = False
                work.full.flags.writeable = False
                frame = PreparedFrame(work.image, work.face, work)
        self._last = (yuv, d, frame)
        return frame

    def generate(self, batch: Batch) -> Generated:
        """The engine's patches for ``batch``'s frames with a face. Batches must come in
        order; this may run on a thread of its own (beside :meth:`finish` of the last
        batch, which touches none of what this does)."""
        with_face = [(i, d, yuv) for i, d, yuv in batch if self.valid[d] and self.share(i) > 0]
        frames = [self.prepare(d, yuv) for _, d, yuv in with_face]
        patches: list[Patch] = []
        if with_face:
            with self.timer.stage("engine"):
                patches = self.engine.generate(
                    [f.image for f in frames],
                    [f.face for f in frames],
                    [i for i, _, _ in with_face],
                )
        return Generated(batch, with_face, frames, patches)

    def finish(self, generated: Generated) -> None:
        """Occlude, enhance, composite and encode a generated batch, in output order."""
        g = generated
        results = {
            i: self._composite(yuv, frame, self._occlude(i, frame, patch), self.share(i))
            for (i, _, yuv), frame, patch in zip(g.with_face, g.frames, g.patches, strict=True)
        }
        for i, d, yuv in g.batch:
            frame_out = results.get(i)
            if frame_out is None:
                (self.no_face if not self.valid[d] else self.kept_original).append(i)
                frame_out = yuv
            with self.timer.stage("encode"):
                self.writer.write(frame_out)

    def _occlude(self, i: int, frame: PreparedFrame, patch: Patch) -> Patch | None:
        """``patch`` with its mask cut where something is in front of the face; None when
        most of the lips are hidden (the frame keeps its own pixels)."""
        if self.occlusion is None:
            return patch
        h, w = patch.image.shape[:2]
        face = frame.face
        with self.timer.stage("occlusion"):
            occ = self.occlusion.occlusion(
                frame.image, face.landmarks, face.shot, patch.x1, patch.y1, h, w
            )
            if occ is None or float(occ.max()) <= 0.0:
                return patch
            if self.occlusion.lips_hidden() > 0.05:
                self.occluded.append(i)
            if self.occlusion.lips_hidden() > OCCLUDED_KEEP:
                self.kept_reasons[i] = "occluded"
                return None
            mask = patch.mask if patch.mask is not None else lower_face_mask(face, patch)
        return replace(patch, mask=(mask * (1.0 - occ)).astype(np.float32))

    def share(self, i: int) -> float:
        """The generated mouth's share at output frame ``i``."""
        return 1.0 if self.shares is None else float(self.shares[i])

    def _composite(
        self,
        yuv: npt.NDArray[np.uint8],
        frame: PreparedFrame,
        patch: Patch | None,
        share: float = 1.0,
    ) -> npt.NDArray[np.uint8] | None:
        """The output frame (I420): ``patch`` enhanced and blended into ``yuv``; None when
        there is no patch to blend (the frame is kept as it is)."""
        if patch is None:
            return None
        blend = self.geometry.options.blend * share
        if self.enhancer is not None:
            with self.timer.stage("enhance"):
                patch = self.enhancer.enhance(frame.image, patch, frame.face)
        if frame.work is not None:
            self.work_frames += 1
            with self.timer.stage("composite"):
                return paste_back(yuv, frame.work, patch, blend)
        rgb = frame.image
        h, w = rgb.shape[:2]
        # Only the patch's box (widened to even coordinates) is blended and converted.
        x1, y1, x2, y2 = even_box(patch.x1, patch.y1, patch.x2, patch.y2, w, h)
        if x2 <= x1 or y2 <= y1:
            return yuv
        with self.timer.stage("composite"):
            canvas = rgb[y1:y2, x1:x2].copy()
            blend_into(canvas, (x1, y1), (w, h), patch, frame.face, blend)
        with self.timer.stage("convert"):
            return paste_box(yuv, canvas, x1, y1)


def trust_shares(
    source_index: npt.NDArray[np.int64], untrusted: dict[int, str], ease: int = 1
) -> npt.NDArray[np.float32] | None:
    """Per output frame, the generated mouth's share: 0 on frames showing a source frame
    whose face is not trusted, rising by 1/``ease`` a frame away from them; None when every
    frame is trusted. The default switches at once: a new mouth faded over the frame's own
    shows both (doubled lips), and these frames move fast enough to hide a switch."""
    if not untrusted:
        return None
    bad = np.isin(source_index, np.fromiter(untrusted, np.int64, len(untrusted)))
    if not bad.any():
        return None
    n = len(source_index)
    dist = np.full(n, float(ease), np.float32)
    pos = np.flatnonzero(bad)
    idx = np.arange(n)
    # Distance (in output frames) to the nearest untrusted frame, capped at ``ease``.
    nxt = np.searchsorted(pos, idx)
    before = np.where(nxt > 0, idx - pos[np.maximum(nxt - 1, 0)], n)
    after = np.where(nxt < len(pos), pos[np.minimum(nxt, len(pos) - 1)] - idx, n)
    dist = np.minimum(dist, np.minimum(before, after).astype(np.float32))
    out: npt.NDArray[np.float32] = (dist / float(ease)).astype(np.float32)
    return out
