"""``viseme``: the weight-free engine.

Mouth shapes come from the speech itself (:mod:`lipsync.audio.visemes`); the person's own
mouth is re-shaped by a landmark-driven warp of the lower face (lips, mouth corners and
jaw move together, the chin drops as the mouth opens) and, where the mouth opens wider than
the source frame shows, the inside of the mouth is drawn in: dark cavity, upper teeth
under the lip, lower teeth and tongue when wide open, shaded to the face's lighting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.audio.visemes import MouthTrack, analyse
from lipsync.engines.base import Engine, EngineContext
from lipsync.engines.parallel import FrameMapper
from lipsync.face.geometry import face_axes, lower_face_polygon
from lipsync.smoothing import ThinPlateSpline
from lipsync.types import FaceObs, Patch, RGBImage

F32 = npt.NDArray[np.float32]

# Share of the opening taken by the upper lip (the rest by the lower lip and jaw).
UPPER_SHARE = 0.25
# Widest inner-lip gap, as a share of mouth width, for open=1.
GAP_MAX = 0.40
# Narrowest gap the warp itself makes (share of mouth width); closer than this is drawn.
GAP_FLOOR = 0.08
# Lip point -> weight of the upper/lower movement (tapering towards the corners).
UPPER = {61: 0.85, 62: 1.0, 63: 0.85, 50: 1.0, 51: 1.0, 52: 1.0, 49: 0.7, 53: 0.7}
LOWER = {65: 0.85, 66: 1.0, 67: 0.85, 56: 1.0, 57: 1.0, 58: 1.0, 55: 0.6, 59: 0.6}
CORNERS = {48: 0.15, 54: 0.15, 60: 0.2, 64: 0.2}
JAW = {8: 0.62, 7: 0.56, 9: 0.56, 6: 0.42, 10: 0.42, 5: 0.24, 11: 0.24, 4: 0.08, 12: 0.08}
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))
# Closing a clearly open mouth (an inner-lip gap of at least CLOSE_OPEN of the mouth's
# width: teeth and the dark inside show) by more than CLOSE_MIN of its width moves its real
# lips together (close_mouth) instead of warping them to the floor gap and painting the
# rest shut (a flat band of lip colour on a wide-open photo, read as open in every pause).
CLOSE_OPEN = 0.15
CLOSE_MIN = 0.03


def _smooth_closed_curve(pts: F32, per_seg: int = 6) -> F32:
    """Catmull-Rom resampling of a closed polygon."""
    p1 = pts.astype(np.float32)
    p0, p2, p3 = np.roll(p1, 1, axis=0), np.roll(p1, -1, axis=0), np.roll(p1, -2, axis=0)
    t = np.linspace(0, 1, per_seg, endpoint=False, dtype=np.float32)[None, :, None]
    t2, t3 = t * t, t * t * t
    a, b, c, d = (x[:, None, :] for x in (p0, p1, p2, p3))
    out = 0.5 * (
        (2 * b) + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t2 + (-a + 3 * b - 3 * c + d) * t3
    )
    return out.reshape(-1, 2).astype(np.float32)


def open_mouth(lm: F32, down: F32, delta: float) -> F32:
    """A copy of ``lm`` with the inner-lip gap widened by ``delta`` pixels along ``down``
    (narrowed when negative): the upper lip rises, the lower lip, corners and jaw drop."""
    out = lm.copy()
    for k, w in UPPER.items():
        out[k] -= down * (UPPER_SHARE * delta * w)
    for k, w in LOWER.items():
        out[k] += down * ((1 - UPPER_SHARE) * delta * w)
    for k, w in CORNERS.items():
        out[k] += down * (delta * w)
    for k, w in JAW.items():
        out[k] += down * (delta * w)
    return out


def inner_gap(lm: F32, down: F32) -> float:
    """The inner-lip gap of landmarks ``lm`` along the face's ``down`` axis (pixels, >= 0)."""
    return float(np.mean([max(0.0, float(np.dot(lm[b] - lm[a], down))) for a, b in INNER_PAIRS]))


def _smoothstep(x: F32) -> F32:
    x = np.clip(x, 0.0, 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)


@dataclass(frozen=True)
class LowerFaceWarp:
    """A lower-face region of a frame, warped; ``map_x/map_y`` give, per pixel, where it was
    read in the frame; ``region`` is the soft lower-face mask the motion was confined to."""

    x1: int
    y1: int
    x2: int
    y2: int
    image: RGBImage
    region: F32
    map_x: F32
    map_y: F32


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

    def info(self) -> dict[str, Any]:
        if self.track is None:
            return {}
        return {
            "speech_frames": int((self.track.speech > 0.5).sum()),
            "mean_open": round(float(self.track.open.mean()), 3),
        }

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
        """Move lips, corners and jaw of ``lm`` to the wanted shape.

        Returns the target landmarks, the target inner-lip gap and the source gap (pixels).
        """
        across, down, _ = face_axes(lm)
        width = float(np.linalg.norm(lm[54] - lm[48]))
        gap_src = inner_gap(lm, down)
        gap_tgt = open_ * GAP_MAX * width
        # Never warp the inner lips onto each other: two control points on one spot with
        # different offsets fold the warp. Closing below GAP_FLOOR is drawn, not warped
        # (see shown_inner and _seal_lips).
        gap_warp = max(gap_tgt, min(GAP_FLOOR * width, gap_src))
        tgt = open_mouth(lm, down, gap_warp - gap_src)
        # Rounding narrows the mouth, spreading widens it; opening narrows it a little.
        dw = width * (0.07 * spread - 0.05 * open_)
        centre = (lm[48] + lm[54]) / 2
        for k in range(48, 68):
            rel = float(np.dot(lm[k] - centre, across)) / max(width / 2, 1.0)
            tgt[k] += across * (dw / 2 * rel)
        return tgt, gap_tgt, gap_src

    @staticmethod
    def shown_inner(tgt: F32, gap_shown: float) -> F32:
        """``tgt`` with the inner lips drawn together to the gap that should be seen."""
        across, down, _ = face_axes(tgt)
        gaps = [float(np.dot(tgt[b] - tgt[a], down)) for a, b in INNER_PAIRS]
        mean_gap = float(np.mean(gaps))
        out = tgt.copy()
        if mean_gap <= gap_shown + 1e-3:
            return out
        scale = gap_shown / max(mean_gap, 1e-6)
        for (a, b), g in zip(INNER_PAIRS, gaps, strict=True):
            mid = (tgt[a] + tgt[b]) / 2
            out[a] = mid - down * (g * scale / 2)
            out[b] = mid + down * (g * scale / 2)
        return out

    def warp_lower_face(
        self, frame: RGBImage, lm: F32, tgt: F32, inner_lips: bool = True
    ) -> LowerFaceWarp | Patch:
        """Warp the lower face of ``frame`` so landmarks ``lm`` move to ``tgt``.

        ``inner_lips=False`` leaves the inner lip points out of the warp: for a caller that
        paints the whole mouth over it, where closing an open mouth would put points that
        nearly coincide (the closed inner lips) on very different source positions and
        bend the smooth field far beyond the lips (into the chin).

        Returns the warped region, or an unchanged patch when the region is too small.
        """
        h, w = frame.shape[:2]
        poly = lower_face_polygon(lm, extend=0.14)
        x1, y1 = np.floor(poly.min(axis=0))
        x2, y2 = np.ceil(poly.max(axis=0))
        x1, y1 = int(max(0, x1)), int(max(0, y1))
        x2, y2 = int(min(w, x2 + 1)), int(min(h, y2 + 1))
        if x2 - x1 < 8 or y2 - y1 < 8:
            return Patch(x1, y1, frame[y1:y2, x1:x2].copy())
        rw, rh = x2 - x1, y2 - y1

        # Control points: moved landmarks + fixed ones + the region's border (fixed).
        moved = np.arange(48, 68 if inner_lips else 60).tolist() + list(JAW)
        fixed = [k for k in range(68) if k not in moved and (inner_lips or k < 60)]
        border = []
        for t in np.linspace(0, 1, 7):
            border += [(x1 + t * rw, y1), (x1 + t * rw, y2), (x1, y1 + t * rh), (x2, y1 + t * rh)]
        src = np.vstack([lm[moved], lm[fixed], np.asarray(border, np.float32)])
        dst = np.vstack([tgt[moved], lm[fixed], np.asarray(border, np.float32)])
        # Inverse map: for a target pixel, where to read in the source frame.
        rbf = ThinPlateSpline(
            dst.astype(np.float64), (src - dst).astype(np.float64), smoothing=1e-3
        )
        step = 10  # the field is smooth: a coarse grid, bilinearly upsampled
        gx = np.arange(x1, x2 + step, step, dtype=np.float32)
        gy = np.arange(y1, y2 + step, step, dtype=np.float32)
        mx, my = np.meshgrid(gx, gy)
        coarse = rbf(np.column_stack([mx.ravel(), my.ravel()])).astype(np.float32)
        fx = cv2.resize(coarse[:, 0].reshape(mx.shape), (rw, rh), interpolation=cv2.INTER_LINEAR)
        fy = cv2.resize(coarse[:, 1].reshape(mx.shape), (rw, rh), interpolation=cv2.INTER_LINEAR)
        # Confine the motion to the lower face (soft edge) so nothing else can change.
        region = np.zeros((rh, rw), np.float32)
        cv2.fillPoly(region, [np.round(poly - [x1, y1]).astype(np.int32)], 1.0)
        feather = max(3.0, 0.04 * float(np.linalg.norm(lm[16] - lm[0])))
        # The blur of a filled polygon is smooth: blurred at 1/k of the size and scaled up,
        # it is the same mask within a few thousandths, at a fraction of the cost.
        k = max(1, int(feather / 3))
        if k > 1:
            small = cv2.resize(region, (rw // k + 1, rh // k + 1), interpolation=cv2.INTER_AREA)
            soft = cv2.resize(
                cv2.GaussianBlur(small, (0, 0), feather / k),
                (rw, rh),
                interpolation=cv2.INTER_LINEAR,
            )
        else:
            soft = cv2.GaussianBlur(region, (0, 0), feather)
        region = soft * region
        xs, ys = np.meshgrid(
            np.arange(x1, x2, dtype=np.float32), np.arange(y1, y2, dtype=np.float32)
        )
        map_x = xs + fx * region
        map_y = ys + fy * region
        warped = np.asarray(
            cv2.remap(
                frame, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            ),
            np.uint8,
        )
        return LowerFaceWarp(x1, y1, x2, y2, warped, region, map_x, map_y)

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
        warp = self.warp_lower_face(frame, lm, tgt)
        if isinstance(warp, Patch):
            return warp
        x1, y1, x2, y2 = warp.x1, warp.y1, warp.x2, warp.y2
        warped, region, map_x, map_y = warp.image, warp.region, warp.map_x, warp.map_y
        # The mouth's own box inside the region: the only place that needs drawing.
        width = float(np.linalg.norm(lm[54] - lm[48]))
        mouth = np.vstack([lm[48:68], tgt[48:68]])
        mx1, my1 = np.floor(mouth.min(axis=0) - 0.25 * width).astype(int)
        mx2, my2 = np.ceil(mouth.max(axis=0) + 0.25 * width).astype(int)
        mx1, my1 = int(max(mx1, x1)), int(max(my1, y1))
        mx2, my2 = int(min(mx2, x2)), int(min(my2, y2))
        if mx2 - mx1 > 4 and my2 - my1 > 4:
            sy, sx = slice(my1 - y1, my2 - y1), slice(mx1 - x1, mx2 - x1)
            sub = warped[sy, sx]
            shown = self.shown_inner(tgt, gap_tgt)
            if gap_src > 0.5:
                sub = self._seal_lips(sub, lm, tgt, shown, (mx1, my1), map_x[sy, sx], map_y[sy, sx])
            if gap_tgt > 1.0:
                sub = self._paint_mouth(sub, frame, lm, shown, (mx1, my1), gap_tgt, gap_src, seed)
            warped[sy, sx] = sub
        return Patch(x1, y1, warped, mask=region)

    @staticmethod
    def close_mouth(frame: RGBImage, lm: F32, gap_tgt: float, gap_src: float) -> Patch | None:
        """Close the frame's own open mouth to an inner-lip gap of ``gap_tgt`` pixels (it
        shows ``gap_src``) by moving its real lips, not by painting over them.

        Column by column down the face (along its own axes), the upper lip moves down by
        :data:`UPPER_SHARE` of the closing and the lower lip up by the rest; each lip keeps
        its own pixels (texture, highlights, its inner edge's shadow, which becomes the line
        where the lips meet), the gap left between them shows the top of the old opening
        (the upper teeth: the lower lip rises over the rest), and the skin between the lips
        and the nose, and the lips and the chin, stretches to follow. The closing tapers to
        nothing at the mouth corners, where the gap does, so no seam is left. None when the
        mouth is too small to work on."""
        across, down, _ = face_axes(lm)
        centre = lm[48:68].mean(axis=0)

        def uv(pts: F32) -> tuple[F32, F32]:
            d = pts.astype(np.float32) - centre
            return (d @ across).astype(np.float32), (d @ down).astype(np.float32)

        def curve(idx: Sequence[int]) -> tuple[F32, F32]:
            u, v = uv(lm[list(idx)])
            order = np.argsort(u)
            return u[order], v[order]

        outer_up = curve(range(48, 55))
        # The opening runs out at the outer corners (a smile's dark corners lie outside the
        # inner-corner points 60 and 64), so the inner curves end there.
        inner_up = curve([48, 61, 62, 63, 54])
        inner_dn = curve([48, 67, 66, 65, 54])
        outer_dn = curve([48, 59, 58, 57, 56, 55, 54])
        _, v_nose = uv(lm[33:34])
        _, v_chin = uv(lm[8:9])
        u_lo, u_hi = float(outer_up[0][0]), float(outer_up[0][-1])
        if u_hi - u_lo < 8:
            return None
        # The region: from halfway between the nose and the upper lip (where the stretch
        # starts) to the chin.
        v_start = (float(v_nose[0]) + float(outer_up[1].min())) / 2 - 2
        corners = np.array(
            [[u, v] for u in (u_lo - 2, u_hi + 2) for v in (v_start, float(v_chin[0]))],
            np.float32,
        )
        pts = centre + corners[:, :1] * across + corners[:, 1:] * down
        h, w = frame.shape[:2]
        x1, y1 = np.floor(pts.min(axis=0)).astype(int) - 1
        x2, y2 = np.ceil(pts.max(axis=0)).astype(int) + 2
        x1, y1, x2, y2 = max(0, int(x1)), max(0, int(y1)), min(w, int(x2)), min(h, int(y2))
        if x2 - x1 < 8 or y2 - y1 < 8:
            return None
        xs, ys = np.meshgrid(
            np.arange(x1, x2, dtype=np.float32), np.arange(y1, y2, dtype=np.float32)
        )
        du, dv = xs - centre[0], ys - centre[1]
        u = du * across[0] + dv * across[1]
        v = du * down[0] + dv * down[1]
        v_ou = np.interp(u, *outer_up).astype(np.float32)
        v_iu = np.interp(u, *inner_up).astype(np.float32)
        v_il = np.interp(u, *inner_dn).astype(np.float32)
        v_ol = np.interp(u, *outer_dn).astype(np.float32)
        inside = (u > u_lo) & (u < u_hi)
        gap = np.where(inside, np.maximum(v_il - v_iu, 0.0), 0.0)
        keep = float(np.clip(gap_tgt / max(gap_src, 1e-6), 0.0, 1.0))
        close = gap * (1.0 - keep)
        a = UPPER_SHARE * close  # the upper lip comes down by this
        b = (1.0 - UPPER_SHARE) * close  # the lower lip goes up by this
        v_top = (float(v_nose[0]) + v_ou) / 2
        v_bot = v_ol + 0.75 * (float(v_chin[0]) - v_ol)
        src = v.copy()
        seg = (v >= v_top) & (v < v_ou + a)
        src[seg] = (v_top + (v - v_top) * (v_ou - v_top) / np.maximum(v_ou + a - v_top, 1e-3))[seg]
        seg = (v >= v_ou + a) & (v < v_il - b)
        src[seg] = (v - a)[seg]
        seg = (v >= v_il - b) & (v < v_ol - b)
        src[seg] = (v + b)[seg]
        seg = (v >= v_ol - b) & (v < v_bot)
        src[seg] = (v_ol + (v - v_ol + b) * (v_bot - v_ol) / np.maximum(v_bot - v_ol + b, 1e-3))[
            seg
        ]
        shift = src - v
        map_x = (xs + shift * down[0]).astype(np.float32)
        map_y = (ys + shift * down[1]).astype(np.float32)
        out = cv2.remap(
            frame, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        mask = np.ones((y2 - y1, x2 - x1), np.float32)
        return Patch(x1, y1, np.asarray(out, np.uint8), mask=mask)

    @staticmethod
    def _poly_mask(pts: F32, origin: tuple[int, int], shape: tuple[int, int]) -> F32:
        mask = np.zeros(shape, np.uint8)
        curve = _smooth_closed_curve((pts - np.asarray(origin, np.float32)).astype(np.float32))
        cv2.fillPoly(mask, [np.round(curve * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
        return mask.astype(np.float32) / 255.0

    def _seal_lips(
        self,
        roi: RGBImage,
        lm: F32,
        tgt: F32,
        shown: F32,
        origin: tuple[int, int],
        map_x: F32,
        map_y: F32,
    ) -> RGBImage:
        """Where the source's open mouth was squeezed shut, show lips, not squashed teeth.

        ``tgt`` are the warp's landmarks, ``shown`` the same with the inner lips at the gap
        that should be seen; everything of the old interior outside ``shown`` becomes lip.
        """
        ox, oy = origin
        shape = roi.shape[:2]
        src_inner = self._poly_mask(lm[60:68], origin, shape)
        moved = cv2.remap(
            src_inner,
            map_x - ox,
            map_y - oy,
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        warp_inner = self._poly_mask(tgt[60:68], origin, shape)
        tgt_inner = self._poly_mask(shown[60:68], origin, shape)
        width = float(np.linalg.norm(tgt[54] - tgt[48])) or 1.0
        grow = max(1, int(round(width / 40)))
        kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
        old_inside = np.maximum(moved, warp_inner)
        sealed = np.clip(cv2.dilate(old_inside, kernel) - tgt_inner, 0.0, 1.0)
        if float(sealed.max()) < 0.05:
            return roi
        lips = (
            np.clip(
                self._poly_mask(tgt[48:60], origin, shape)
                - cv2.dilate(np.maximum(old_inside, tgt_inner), kernel, iterations=2),
                0.0,
                1.0,
            )
            > 0.5
        )
        if lips.sum() < 10:
            return roi
        colour = np.median(roi[lips].astype(np.float32), axis=0)
        fill = np.empty(roi.shape, np.float32)
        fill[:] = colour
        # The line where the lips meet: a soft darker seam.
        seam = np.array(
            [
                tgt[60],
                (tgt[61] + tgt[67]) / 2,
                (tgt[62] + tgt[66]) / 2,
                (tgt[63] + tgt[65]) / 2,
                tgt[64],
            ],
            np.float32,
        ) - [ox, oy]
        line = np.zeros(shape, np.uint8)
        cv2.polylines(
            line,
            [np.round(seam * 4).astype(np.int32)],
            False,
            255,
            max(1, grow),
            cv2.LINE_AA,
            shift=2,
        )
        soft = max(0.7, width / 80)
        line_f = cv2.GaussianBlur(line.astype(np.float32) / 255.0, (0, 0), soft)
        a = cv2.GaussianBlur(sealed, (0, 0), soft)[..., None]
        near = cv2.dilate(sealed, kernel, iterations=2)
        line_a = (0.45 * np.clip(line_f * 1.5, 0, 1) * near)[..., None]
        out = roi.astype(np.float32)
        out = out * (1 - a) + fill * a
        out = out * (1 - line_a) + (colour * 0.55) * line_a
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def _own_interior(
        self,
        frame: RGBImage,
        lm: F32,
        tgt: F32,
        origin: tuple[int, int],
        shape: tuple[int, int],
        down: F32,
    ) -> tuple[F32, F32]:
        """The source's mouth interior translated with each lip, and where it covers."""
        ox, oy = origin
        rh, rw = shape
        xs, ys = np.meshgrid(
            np.arange(rw, dtype=np.float32) + ox, np.arange(rh, dtype=np.float32) + oy
        )
        # The source interior mask over a box that holds both the source and moved mouths.
        inner = lm[60:68]
        mid = (lm[62] + lm[66]) / 2
        d_up = (tgt[61:64] - lm[61:64]).mean(axis=0)
        d_lo = (tgt[65:68] - lm[65:68]).mean(axis=0)
        real = np.zeros((rh, rw, 3), np.float32)
        weight = np.zeros((rh, rw), np.float32)
        for d, upper in ((d_up, True), (d_lo, False)):
            sx, sy = xs - float(d[0]), ys - float(d[1])
            half = (sx - mid[0]) * down[0] + (sy - mid[1]) * down[1]
            side = _smoothstep((-half if upper else half) / 1.5 + 0.5)
            inside = np.zeros((rh, rw), np.float32)
            poly = _smooth_closed_curve((inner - [ox - d[0], oy - d[1]]).astype(np.float32))
            m = np.zeros((rh, rw), np.uint8)
            cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
            inside = m.astype(np.float32) / 255.0
            w = inside * side
            sample = cv2.remap(frame, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            real += np.asarray(sample, np.float32) * w[..., None]
            weight += w
        cover = np.clip(weight, 0.0, 1.0)
        real /= np.maximum(weight, 1e-6)[..., None]
        return real, cover

    # -- the inside of the mouth ------------------------------------------------------------
    def _paint_mouth(
        self,
        roi: RGBImage,
        frame: RGBImage,
        lm: F32,
        tgt: F32,
        origin: tuple[int, int],
        gap_tgt: float,
        gap_src: float,
        seed: int = 0,
    ) -> RGBImage:
        across, down, _ = face_axes(lm)
        hard = self._poly_mask(tgt[60:68], origin, roi.shape[:2])
        if not hard.any():
            return roi
        width = float(np.linalg.norm(tgt[64] - tgt[60])) or 1.0
        soft = max(0.6, width / 90.0)
        full_mask = cv2.GaussianBlur(hard, (0, 0), soft)
        # Draw only where the mask reaches (the inner-lip opening and its soft edge), not over
        # the whole mouth box: a fraction of the pixels, the same result.
        rows = np.flatnonzero(full_mask.max(axis=1) > 1e-3)
        cols = np.flatnonzero(full_mask.max(axis=0) > 1e-3)
        by1, by2, bx1, bx2 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        mask = full_mask[by1:by2, bx1:bx2]
        ox, oy = origin[0] + int(bx1), origin[1] + int(by1)
        origin = (ox, oy)
        rh, rw = mask.shape

        # Lighting: the skin around the mouth, relative to a mid-grey reference.
        mx1, my1 = np.floor(tgt[48:60].min(axis=0)).astype(int)
        mx2, my2 = np.ceil(tgt[48:60].max(axis=0)).astype(int)
        pad = int(0.4 * width)
        sy1, sy2 = max(0, my1 - pad), min(frame.shape[0], my2 + pad)
        sx1, sx2 = max(0, mx1 - pad), min(frame.shape[1], mx2 + pad)
        skin = frame[sy1:sy2, sx1:sx2].reshape(-1, 3).astype(np.float32)
        skin_lum = (
            float(np.median(skin @ np.array([0.299, 0.587, 0.114], np.float32)))
            if skin.size
            else 150.0
        )
        light = float(np.clip(skin_lum / 150.0, 0.35, 1.4))
        tint = skin.mean(axis=0) / max(float(skin.mean()), 1.0) if skin.size else np.ones(3)
        tint = (0.85 + 0.15 * tint).astype(np.float32)

        # Mouth coordinates: u across (-1..1), v down from the upper inner lip (0..1 at gap).
        xs, ys = np.meshgrid(
            np.arange(rw, dtype=np.float32) + ox, np.arange(rh, dtype=np.float32) + oy
        )
        centre = (tgt[60] + tgt[64]) / 2
        top = (tgt[61] + tgt[62] * 2 + tgt[63]) / 4
        u = ((xs - centre[0]) * across[0] + (ys - centre[1]) * across[1]) / (width / 2)
        v = ((xs - top[0]) * down[0] + (ys - top[1]) * down[1]) / max(gap_tgt, 1.0)
        # Follow the upper lip's curve: measure v from a parabola through the lip line.
        lip_curve = 0.25 * (u**2) * (float(np.dot(tgt[60] - top, down)) / max(gap_tgt, 1.0)) * 4
        v = v - lip_curve

        gap_rel = gap_tgt / width
        # Cavity: dark red-brown, darkest at the back (centre), lighter towards the lips.
        ring = np.clip(np.abs(u) ** 2 + (2 * np.abs(v - 0.5)) ** 2, 0, 1)[..., None]
        cavity = np.array([38, 12, 16], np.float32) + np.array([40, 20, 20], np.float32) * ring
        img = np.broadcast_to(cavity * tint, (rh, rw, 3)) * light
        # Tongue: low in the mouth, seen when the mouth is well open; its back in shadow.
        if gap_rel > 0.15:
            t_mask = _smoothstep((1.0 - ((u / 0.58) ** 2 + ((v - 1.08) / 0.42) ** 2)) * 2.5)
            t_shade = np.clip(0.45 + 0.6 * (v - 0.7), 0.35, 1.0)[..., None]
            tongue = np.array([132, 50, 56], np.float32) * tint * light * t_shade
            a = (t_mask * min(1.0, (gap_rel - 0.15) / 0.15))[..., None]
            img = img * (1 - a) + tongue * a
        # Upper teeth: a band under the upper lip, a little brighter than the skin, curved
        # along the lip, darker towards the corners and in the lip's shadow, with faint
        # separations between the teeth.
        teeth_h = min(0.42 * gap_tgt, 0.11 * width) / max(gap_tgt, 1.0)
        edge_v = teeth_h * (1.0 - 0.3 * np.clip(u, -1, 1) ** 2)
        edge = _smoothstep((edge_v - v) / max(0.15 * teeth_h, 0.02) + 0.5)
        side = np.clip(1.0 - (np.abs(u) / 0.8) ** 3, 0.0, 1.0)
        across_shade = 0.45 + 0.55 * np.clip(np.cos(np.clip(u, -1, 1) * np.pi / 2), 0, 1) ** 1.5
        lip_shadow = 0.72 + 0.28 * _smoothstep(v / max(teeth_h * 0.45, 0.02))
        bright = float(np.clip(skin_lum * 1.25, 140.0, 235.0))
        tooth = np.array([0.96, 0.93, 0.86], np.float32) * bright
        seps = np.ones_like(u)
        for pos, depth in ((0.0, 0.2), (0.21, 0.15), (0.38, 0.13), (0.53, 0.1)):
            seps -= depth * np.exp(-((((np.abs(u) - pos) * width / 2) / max(soft, 0.8)) ** 2))
        t_col = tooth[None, None, :] * (across_shade * lip_shadow * seps)[..., None]
        a_up = (edge * side * (v > -0.5))[..., None]
        img = img * (1 - a_up) + t_col * a_up
        # Lower teeth: only a thin shadowed edge above the lower lip when wide open.
        if gap_rel > 0.28:
            lt_h = 0.3 * teeth_h
            lt_edge = _smoothstep((v - (1.0 - lt_h)) / max(0.2 * lt_h, 0.02) + 0.5)
            lt_side = np.clip(1.0 - (np.abs(u) / 0.55) ** 3, 0.0, 1.0)
            a_lo = (lt_edge * lt_side * min(1.0, (gap_rel - 0.28) / 0.1) * 0.6)[..., None]
            lo_col = tooth * 0.55
            img = img * (1 - a_lo) + lo_col[None, None, :] * across_shade[..., None] * a_lo
        img = np.asarray(cv2.GaussianBlur(img.astype(np.float32), (0, 0), soft * 0.7), np.float32)
        img += np.random.default_rng(seed).normal(0.0, 1.6, img.shape).astype(np.float32)
        if gap_src > 0.5:
            # The person's own teeth and mouth, moved with the lip they belong to: the upper
            # part with the upper lip, the lower part with the lower lip (and jaw). Only
            # what neither covers - the newly opened gap - is drawn.
            real, cover = self._own_interior(frame, lm, tgt, origin, (rh, rw), down)
            img = (real * cover[..., None] + img * (1.0 - cover[..., None])).astype(np.float32)
        a = np.asarray(mask, np.float32)[..., None]
        sub = roi[by1:by2, bx1:bx2].astype(np.float32) * (1 - a) + img * a
        out = roi.copy()
        out[by1:by2, bx1:bx2] = np.clip(sub + 0.5, 0, 255).astype(np.uint8)
        return out
