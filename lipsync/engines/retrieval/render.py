"""Rendering a chosen mouth into a frame, for the ``retrieval`` engine.

The chosen mouth crop is placed on the face (:mod:`lipsync.engines.retrieval.align`); the
target frame's lower face is warped (the viseme engine's warp, by the outer lips and the
jaw: the inside of the mouth is painted over, and the closed inner lips as warp points
bent the field into the chin) so its own lips and jaw take that geometry, leaving no trace
of its old mouth; the crop's colour and lighting are matched to the target on a ring of
skin around the mouth (filtered over time while a source run plays on), and it is blended
with a feathered ellipse (:mod:`lipsync.engines.retrieval.blend`).

Where the pose gate gives the source mouth less than a full share, the frame's own mouth,
warped and drawn by the viseme engine, lies under it (:meth:`MouthRenderer.own_mouth`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lipsync.engines.retrieval.align import (
    align,
    lip_gap_map,
    map_mouth,
    placed,
    residual,
    template_unit,
)
from lipsync.engines.retrieval.blend import apply_colour, colour_field, ellipse_alpha
from lipsync.engines.retrieval.geometry import ellipse_box
from lipsync.engines.retrieval.index import MouthIndex
from lipsync.engines.retrieval.tuning import RetrievalTuning
from lipsync.engines.viseme import GAP_FLOOR as VISEME_GAP_FLOOR
from lipsync.engines.viseme import GAP_MAX as VISEME_GAP_MAX
from lipsync.engines.viseme import VisemeEngine, inner_gap, open_mouth
from lipsync.face.geometry import face_axes
from lipsync.types import Patch, RGBImage

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass
class Draft:
    """A frame's render up to its colour: the warped lower face (``image`` at ``x1, y1``,
    with its mask ``region``), the mouth's box in it, the mask ellipse, the mapped mouth
    crop and its colour fit (None: too little skin ring to fit)."""

    x1: int
    y1: int
    image: RGBImage
    region: F32
    box: tuple[int, int, int, int]
    alpha: F32
    uv: tuple[F32, F32]
    base: F32
    src: F32
    coef: F64 | None
    pos: int
    out_index: int | None
    share: float


class MouthRenderer:
    """Draws candidate mouths of ``index`` into frames; keeps the colour fit of the last
    frame drawn (frames are finished in order, see :meth:`finish`)."""

    def __init__(self, index: MouthIndex, viseme: VisemeEngine, tuning: RetrievalTuning) -> None:
        self.index = index
        self.viseme = viseme
        self.tuning = tuning
        # (output index, source frame, colour field) of the last frame drawn
        self.colour: tuple[int, int, F64] | None = None

    def unit(self, lm_t: F32) -> float:
        """Pixels per template unit on the face with landmarks ``lm_t``."""
        return template_unit(self.index.template, lm_t)

    def geometry(
        self, pos: int, frame: RGBImage, lm_t: F32, gap: float | None
    ) -> tuple[F64, F32, F32]:
        """Candidate ``pos``'s placement ``a`` (source -> target pixels), its lips placed
        on the face, and the same moved part of the way to the wanted ``gap``."""
        index, t = self.index, self.tuning
        crop = index.crops[pos]
        a = align(crop, frame, lm_t, t)
        tgt_src = placed(crop, lm_t, a, t)
        if gap is None:
            return a, tgt_src, tgt_src
        have = float(index.shape.gap[int(index.candidates[pos])])
        return a, tgt_src, residual(tgt_src, lm_t, have, gap, self.unit(lm_t), t)

    def draft(
        self,
        frame: RGBImage,
        lm_t: F32,
        pos: int,
        gap: float | None,
        out_index: int | None,
        share: float,
    ) -> Patch | Draft:
        """Everything of a render that depends on this frame alone (frames of a batch are
        drafted on the render threads); :meth:`finish` adds the colour, which is filtered
        over time, in frame order."""
        a, tgt_src, tgt = self.geometry(pos, frame, lm_t, gap)
        if share < 1.0:
            tgt, base_patch = self.own_mouth(frame, lm_t, tgt, gap, share, out_index)
            if share <= 0.0 or base_patch.mask is None:
                return base_patch
            warp_image, warp_region = base_patch.image, base_patch.mask
            wx1, wy1 = base_patch.x1, base_patch.y1
        else:
            warp = self.viseme.warp_lower_face(frame, lm_t, tgt, inner_lips=False)
            if isinstance(warp, Patch):
                return warp
            warp_image, warp_region, wx1, wy1 = warp.image, warp.region, warp.x1, warp.y1
        ph, pw = warp_image.shape[:2]
        # Only the mask ellipse's box needs the mouth.
        ex1, ey1, ex2, ey2 = ellipse_box(tgt, grow=1.02, tuning=self.tuning)
        bx1, by1 = max(0, int(ex1) - wx1), max(0, int(ey1) - wy1)
        bx2 = min(pw, int(np.ceil(ex2)) + 1 - wx1)
        by2 = min(ph, int(np.ceil(ey2)) + 1 - wy1)
        if bx2 - bx1 < 4 or by2 - by1 < 4:
            return Patch(wx1, wy1, warp_image, mask=warp_region)
        origin = (wx1 + bx1, wy1 + by1)
        size = (bx2 - bx1, by2 - by1)
        alpha, uv = ellipse_alpha(tgt, origin, (size[1], size[0]), self.tuning)
        base = warp_image[by1:by2, bx1:bx2].astype(np.float32)
        gap_map = lip_gap_map(tgt_src, tgt, origin, size, self.tuning)
        src = map_mouth(self.index.crops[pos], a, origin, size, gap_map)
        coef = colour_field(src, base, alpha, uv, tgt, origin)
        box = (bx1, by1, bx2, by2)
        return Draft(
            wx1,
            wy1,
            warp_image,
            warp_region,
            box,
            alpha,
            uv,
            base,
            src,
            coef,
            pos,
            out_index,
            share,
        )

    def finish(self, d: Patch | Draft) -> Patch:
        """The drafted frame with its colour (filtered over time: frames in order) applied
        and the mouth blended in."""
        if isinstance(d, Patch):
            return d
        src = d.src
        if d.coef is not None:
            coef = self.steady_colour(d.out_index, d.pos, d.coef)
            src = apply_colour(src, d.uv, coef, self.tuning.gain_range)
        bx1, by1, bx2, by2 = d.box
        a3 = d.alpha[..., None] * min(d.share, 1.0)
        out = d.base * (1.0 - a3) + src * a3
        image = d.image.copy()
        image[by1:by2, bx1:bx2] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        mask = d.region.copy()
        mask[by1:by2, bx1:bx2] = np.maximum(mask[by1:by2, bx1:bx2], d.alpha)
        return Patch(d.x1, d.y1, image, mask=mask)

    def own_mouth(
        self,
        frame: RGBImage,
        lm_t: F32,
        tgt: F32,
        gap: float | None,
        share: float,
        out_index: int | None,
    ) -> tuple[F32, Patch]:
        """The pose gate's geometry (``share`` of the way from the frame's own mouth opened
        to the wanted gap, to the chosen mouth's ``tgt``) and the frame's own lower face
        warped and drawn to it by the viseme engine."""
        _, down, _ = face_axes(lm_t)
        width = float(np.linalg.norm(lm_t[54] - lm_t[48])) or 1.0
        gap_src = inner_gap(lm_t, down)
        want = inner_gap(tgt, down) if gap is None else max(0.0, gap * self.unit(lm_t))
        track = self.viseme.track
        spread = 0.0
        if track is not None and out_index is not None and len(track):
            spread = float(track.spread[min(max(out_index, 0), len(track) - 1)])
        own, _, _ = self.viseme.target_landmarks(lm_t, want / (VISEME_GAP_MAX * width), spread)
        w = float(np.clip(share, 0.0, 1.0))
        mixed = (w * tgt + (1.0 - w) * own).astype(np.float32)
        shown = inner_gap(mixed, down)
        # The warp never puts the inner lips closer than its floor (closer is drawn).
        floor = min(VISEME_GAP_FLOOR * width, gap_src)
        warp_tgt = open_mouth(mixed, down, floor - shown) if shown < floor else mixed
        seed = 0 if out_index is None else int(out_index)
        # The chosen mouth is blended over this at the same geometry, so the lips must land on
        # ``mixed`` exactly: no closing by the lips' own shape here (it moved the LatentSync
        # clip's eased frames off the pasted mouth and its offset to -2).
        own_mouth = self.viseme.render_to(
            frame, lm_t, warp_tgt, shown, gap_src, seed, own_lips=False
        )
        return mixed, own_mouth

    def steady_colour(self, out_index: int | None, pos: int, coef: F64) -> F64:
        """The colour field filtered over time: while the source plays on (or holds, or steps
        a frame or two) the light on both faces changes slowly, so each frame's fit moves it
        only part of the way; after a cut, or frames out of order, it starts from the fit."""
        frame = int(self.index.candidates[pos])
        prev = self.colour
        if (
            out_index is not None
            and prev is not None
            and prev[0] == out_index - 1
            and abs(frame - prev[1]) <= 2
        ):
            coef = prev[2] + self.tuning.colour_gain * (coef - prev[2])
        self.colour = None if out_index is None else (out_index, frame, coef)
        return coef
