"""The ``viseme`` engine class: the speech's mouth track per job, and per frame the
lower-face warp to the wanted shape with the lips sealed or the mouth's inside drawn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lipsync.audio.visemes import MouthTrack, analyse
from lipsync.engines.base import Engine, EngineContext
from lipsync.engines.parallel import FrameMapper
from lipsync.engines.viseme import close as closing
from lipsync.engines.viseme import interior, seal, shape, warp
from lipsync.engines.viseme.shape import CLOSE_MIN, CLOSE_OPEN
from lipsync.engines.viseme.warp import LowerFaceWarp
from lipsync.types import EngineReport, FaceObs, Patch, RGBImage

F32 = npt.NDArray[np.float32]


class VisemeEngine(Engine):
    name = "viseme"

    def __init__(self, ctx: EngineContext | None = None) -> None:
        self.ctx = ctx or EngineContext()
        self.track: MouthTrack | None = None
        self.mapper = FrameMapper()  # the render threads (the retrieval engine's too)

    def prepare(self, audio16k: F32, fps: float, n_frames: int) -> None:
        self.track = analyse(audio16k, fps, n_frames)

    def close(self) -> None:
        self.mapper.close()

    def report(self) -> EngineReport:
        if self.track is None:
            return EngineReport(self.name)
        details = {
            "speech_frames": int((self.track.speech > 0.5).sum()),
            "mean_open": round(float(self.track.open.mean()), 3),
        }
        return EngineReport(self.name, details=details)

    def generate(
        self, frames: Sequence[RGBImage], faces: Sequence[FaceObs], indices: Sequence[int]
    ) -> list[Patch]:
        assert self.track is not None, "prepare() first"
        n = len(self.track)
        calls = []
        for frame, face, idx in zip(frames, faces, indices, strict=True):
            i = min(max(idx, 0), n - 1)
            opening, spread = float(self.track.open[i]), float(self.track.spread[i])
            calls.append((frame, face.landmarks, opening, spread, idx))
        return self.mapper.map(self.render, calls)

    # -- the warp -------------------------------------------------------------------------
    def target_landmarks(self, lm: F32, open_: float, spread: float) -> tuple[F32, float, float]:
        """Move lips, corners and jaw of ``lm`` to the wanted shape (see
        :func:`lipsync.engines.viseme.shape.target_landmarks`)."""
        return shape.target_landmarks(lm, open_, spread)

    @staticmethod
    def shown_inner(tgt: F32, gap_shown: float) -> F32:
        """``tgt`` with the inner lips drawn together to the gap that should be seen."""
        return shape.shown_inner(tgt, gap_shown)

    def warp_lower_face(
        self, frame: RGBImage, lm: F32, tgt: F32, inner_lips: bool = True
    ) -> LowerFaceWarp | Patch:
        """Warp the lower face of ``frame`` so landmarks ``lm`` move to ``tgt`` (see
        :func:`lipsync.engines.viseme.warp.warp_lower_face`)."""
        return warp.warp_lower_face(frame, lm, tgt, inner_lips)

    @staticmethod
    def close_mouth(frame: RGBImage, lm: F32, gap_tgt: float, gap_src: float) -> Patch | None:
        """Close the frame's own open mouth by moving its real lips (see
        :func:`lipsync.engines.viseme.close.close_mouth`)."""
        return closing.close_mouth(frame, lm, gap_tgt, gap_src)

    def render(self, frame: RGBImage, lm: F32, open_: float, spread: float, seed: int = 0) -> Patch:
        """One frame's new lower face; ``seed`` (the output frame index) fixes the grain of
        the drawn interior, so a frame renders the same on any thread, in any batch."""
        tgt, gap_tgt, gap_src = self.target_landmarks(lm, open_, spread)
        return self.render_to(frame, lm, tgt, gap_tgt, gap_src, seed)

    def render_to(
        self,
        frame: RGBImage,
        lm: F32,
        tgt: F32,
        gap_tgt: float,
        gap_src: float,
        seed: int = 0,
        own_lips: bool = True,
    ) -> Patch:
        """The frame's own lower face warped to landmarks ``tgt`` (inner lips at least the
        warp's floor apart, see :meth:`target_landmarks`), the lips sealed or the inside of
        the mouth drawn to show a gap of ``gap_tgt`` pixels (the frame's own is ``gap_src``).
        ``own_lips``: a clearly open mouth is closed by :meth:`close_mouth` (which keeps the
        lips' own shape; a caller that needs the geometry ``tgt`` exactly passes False)."""
        width_px = float(np.linalg.norm(lm[54] - lm[48]))
        closing = gap_src - gap_tgt > max(1.0, CLOSE_MIN * width_px)
        if own_lips and gap_src >= CLOSE_OPEN * width_px and closing:
            closed = self.close_mouth(frame, lm, gap_tgt, gap_src)
            if closed is not None:
                return closed
        warped = self.warp_lower_face(frame, lm, tgt)
        if isinstance(warped, Patch):
            return warped
        x1, y1, x2, y2 = warped.x1, warped.y1, warped.x2, warped.y2
        image, map_x, map_y = warped.image, warped.map_x, warped.map_y
        # The mouth's own box inside the region: the only place that needs drawing.
        width = float(np.linalg.norm(lm[54] - lm[48]))
        mouth = np.vstack([lm[48:68], tgt[48:68]])
        mx1, my1 = np.floor(mouth.min(axis=0) - 0.25 * width).astype(int)
        mx2, my2 = np.ceil(mouth.max(axis=0) + 0.25 * width).astype(int)
        mx1, my1 = int(max(mx1, x1)), int(max(my1, y1))
        mx2, my2 = int(min(mx2, x2)), int(min(my2, y2))
        if mx2 - mx1 > 4 and my2 - my1 > 4:
            sy, sx = slice(my1 - y1, my2 - y1), slice(mx1 - x1, mx2 - x1)
            sub = image[sy, sx]
            shown = self.shown_inner(tgt, gap_tgt)
            if gap_src > 0.5:
                sub = seal.seal_lips(sub, lm, tgt, shown, (mx1, my1), map_x[sy, sx], map_y[sy, sx])
            if gap_tgt > 1.0:
                sub = interior.paint_mouth(
                    sub, frame, lm, shown, (mx1, my1), gap_tgt, gap_src, seed
                )
            image[sy, sx] = sub
        return Patch(x1, y1, image, mask=warped.region)
