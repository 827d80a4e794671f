"""Occlusions stay in front: a hand, a microphone or a cup over the mouth is never painted
over. Weight-free: the analysis pass samples this person's own lower face in each shot
(skin around the mouth, and the lips), and a robust colour model of both (median and spread
of the chroma, the range of the brightness) tells, per pixel of a frame, what is not this
person's skin or lips. Generated mouth pixels are composited only where the person's own
face is visible; inside the inner lips (teeth, tongue, the dark of the mouth) anything goes.

The mask is cleaned (small specks dropped, holes closed), grown a little, feathered, and
averaged with the last frame's (moved with the face) so it does not flicker.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.face.geometry import lower_face_polygon

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

CHROMA_K = 4.0  # robust standard deviations of chroma beyond which a pixel is not this face
LUMA_K = 3.5  # robust standard deviations of brightness beyond which: not this face
OCCLUDED_KEEP = 0.6  # more of the lips hidden than this: the frame keeps its own pixels
MIN_SAMPLES = 200
TYPICAL_K = 4.0  # robust standard deviations of a sampled frame's median colour from the shot's
TYPICAL_FLOOR = np.array([6.0, 3.0, 3.0], np.float32)  # least such deviation (Y, Cr, Cb)
WORK_MOUTH_PX = 40.0  # the mask is worked out where the mouth is about this wide
MOUTH_AROUND = 0.1  # mouth widths around the mouth where only what joins an object counts
LIPS_NEAR = 0.2  # mouth widths around the lips where lip colours are this face's
JAW_BAND = 0.25  # mouth widths inside the jaw line where an object must join a deeper one
JOIN_MOST = 5.0  # ... no more than this many times as big as the deeper one's part (a speck
# of shading inside the face joined the hair and the shadow along the whole jaw line)
# The place model: what this face looks like at each place of the lower face (landmark-
# aligned), learnt over a shot's sampled frames.
PLACE_K = 4.0  # robust standard deviations from a place's usual colour: not this face
PLACE_FLOOR = np.array([5.0, 3.0, 3.0], np.float32)  # least spread of a place (Y, Cr, Cb)
PLACE_SLACK = 0.025  # mouth widths: a place's range takes its neighbours' (landmarks move)
PLACE_FRAMES = 48  # at most this many sampled frames are kept for the place model
PLACE_MIN_FRAMES = 8
PLACE_ODD = 0.08  # a sampled frame with more of its places off than this is left out
# A flat object (a bar, a card, a sleeve of one colour): once part of it is found, the rest of
# it is found by its own colour where that fits it better than the face's place.
OBJECT_MIN = 0.03  # found pixels (in squared mouth widths) needed to learn an object's colour
OBJECT_FLAT = np.array([4.0, 2.5, 2.5], np.float32)  # an object this flat or flatter (robust sd)
OBJECT_FLOOR = np.array([3.0, 2.0, 2.0], np.float32)  # least spread of an object's colour
OBJECT_K = 3.0  # robust standard deviations from the object's colour: more of the object
OBJECT_FACE = 1.0  # ... if at least this far from its place's usual colour (and farther
# than from the object's)
OBJECT_SURE = 1.5  # ... or nearer the object's colour than this, wherever it lies
OBJECT_CARRY = 12  # frames a flat object's colour is carried on without being learnt anew
OBJECT_SAME = 0.5  # ... to a piece of that colour at least this share of the last one's size
# Teeth: the brightest of the mouth's opening over the shot's sampled frames. An object found
# next to the mouth takes the dark of the mouth with it, not the person's own teeth (an
# object over the lower lip kept the input's lower teeth under a new, closed mouth).
TEETH_SHARE = 0.3  # the brightest share of the opening's sampled pixels taken for teeth
TEETH_BRIGHTER = 25.0  # ... when that is this much brighter (Y) than the lips
TEETH_OBJECT = 0.2  # an object with more of its found pixels of the teeth's colour: white
OBJECT_NOTCH = 0.55  # mouth widths: a notch this narrow in an object's top edge is filled
# The lip band between the outer and inner contours, as triangles of landmarks.
LIP_BAND = (
    (48, 49, 60), (49, 60, 61), (49, 50, 61), (50, 61, 62), (50, 51, 62), (51, 52, 62),
    (52, 62, 63), (52, 53, 63), (53, 63, 64), (53, 54, 64), (54, 55, 64), (55, 64, 65),
    (55, 56, 65), (56, 65, 66), (56, 57, 66), (57, 58, 66), (58, 66, 67), (58, 59, 67),
    (59, 67, 60), (59, 48, 60),
)  # fmt: skip


@dataclass
class ColourStats:
    """Robust statistics of one part of the face in YCrCb."""

    centre: F32  # (2,) median Cr, Cb
    spread: F32  # (2,) robust standard deviation of Cr, Cb (MAD x 1.4826, floored)
    y_lo: float  # darkest usual luma: median - LUMA_K robust standard deviations
    y_hi: float  # brightest usual luma

    @classmethod
    def fit(cls, ycc: F32) -> ColourStats:
        chroma = ycc[:, 1:]
        centre = np.median(chroma, axis=0)
        mad = np.median(np.abs(chroma - centre), axis=0) * 1.4826
        y = ycc[:, 0]
        y_med = float(np.median(y))
        y_sd = max(4.0, float(np.median(np.abs(y - y_med))) * 1.4826)
        return cls(
            centre.astype(np.float32),
            np.maximum(mad, 2.0).astype(np.float32),
            y_med - LUMA_K * y_sd,
            y_med + LUMA_K * y_sd,
        )

    def foreign(self, ycc: F32) -> npt.NDArray[np.bool_]:
        """Pixels (..., 3) that are not of this part: chroma too far, or far too dark or
        too bright."""
        # Channel by channel (numpy reduces a last axis of 2 slowly).
        d1 = (ycc[..., 1] - self.centre[0]) / self.spread[0]
        d2 = (ycc[..., 2] - self.centre[1]) / self.spread[1]
        far = d1 * d1 + d2 * d2 > CHROMA_K * CHROMA_K
        y = ycc[..., 0]
        out: npt.NDArray[np.bool_] = far | (y < self.y_lo) | (y > self.y_hi)
        return out


def place_points(lm: F32) -> F32:
    """The points the place model is tied to: the lower face's outline (jaw, nose; as
    :func:`lower_face_polygon` draws it) and the 20 lip landmarks."""
    return np.vstack([lower_face_polygon(lm, extend=0.0), lm[48:68]]).astype(np.float32)


def _pt(k: int) -> int:
    """The index in :func:`place_points` of lip landmark ``k`` (48..67)."""
    return 16 + k - 48


def _affines(src: F32, dst: F32, tris: npt.NDArray[np.int32]) -> F32:
    """Per triangle, the 2x3 affine map taking its corners in ``dst`` to those in ``src``
    (a degenerate triangle gets the least-squares one)."""
    d = dst[tris].astype(np.float64)  # (T, 3, 2)
    a = np.concatenate([d, np.ones((*d.shape[:2], 1))], axis=2)
    det = np.linalg.det(a)
    ok = np.abs(det) > 1e-6
    inv = np.empty_like(a)
    inv[ok] = np.linalg.inv(a[ok])
    if not ok.all():
        inv[~ok] = np.linalg.pinv(a[~ok])
    m = inv @ src[tris]  # (T, 3, 2)
    out: F32 = np.transpose(m, (0, 2, 1)).astype(np.float32)
    return out


def _raster(pts: F32, tris: npt.NDArray[np.int32], shape: tuple[int, int]) -> npt.NDArray[np.int32]:
    """Per pixel, 1 + the index of the triangle of ``pts`` it lies in (0: none; the mouth's
    opening inside the inner lips: none)."""
    ids = np.zeros(shape, np.int32)
    corners = np.round(pts[tris]).astype(np.int32)
    for t in range(len(tris)):
        cv2.fillConvexPoly(ids, corners[t], t + 1)
    cv2.fillPoly(ids, [np.round(pts[_pt(60) :]).astype(np.int32)], 0)
    return ids


def _place_map(ids: npt.NDArray[np.int32], aff: F32) -> tuple[F32, F32, npt.NDArray[np.bool_]]:
    """remap()'s maps for the pixels of raster ``ids`` through the per-triangle affine maps
    ``aff``, and which pixels have a triangle (the others map far outside)."""
    h, w = ids.shape
    # Per triangle id (0: none), the map's coefficients: a lookup per pixel.
    coef = np.concatenate([np.array([[[0, 0, -1e4], [0, 0, -1e4]]], np.float32), aff])
    c = coef.reshape(len(coef), 6)[ids]  # (h, w, 6)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    mx = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    my = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    return mx.astype(np.float32), my.astype(np.float32), ids > 0


@dataclass
class PlaceModel:
    """What this person's lower face looks like at each of its places in one shot: per
    pixel of a landmark-aligned template, the usual range of Y, Cr and Cb (median +- PLACE_K
    robust standard deviations over the shot's sampled frames, widened to the neighbours'
    so landmarks a pixel or two off do not matter). A pixel out of its place's range (a
    lip-red stripe where the chin is, a flat skin-coloured patch where the lips are) is not
    this face, even when its colour is this face's somewhere else."""

    shape: F32  # (36, 2) the template's place_points
    tris: npt.NDArray[np.int32]  # (T, 3) triangles of place_points
    ranges: F32  # (h, w, 9): low Y Cr Cb, high Y Cr Cb, median Y Cr Cb

    @classmethod
    def fit(cls, frames: list[tuple[U8, F32]]) -> PlaceModel | None:
        """From sampled frames (YCrCb at the working scale, landmarks in its pixels)."""
        if len(frames) < PLACE_MIN_FRAMES:
            return None
        pts = [place_points(lm) for _, lm in frames]
        ref = pts[0]
        aligned = []
        for p in pts:
            m, _ = cv2.estimateAffinePartial2D(p[:16], ref[:16])
            if m is None:
                continue
            aligned.append(p @ m[:, :2].T + m[:, 2])
        if len(aligned) < PLACE_MIN_FRAMES:
            return None
        shape = np.median(np.stack(aligned), axis=0).astype(np.float32)
        mouth_w = float(np.linalg.norm(shape[_pt(54)] - shape[_pt(48)])) or 1.0
        shape = shape * (WORK_MOUTH_PX / mouth_w)
        shape = (shape - shape.min(axis=0) + 2.0).astype(np.float32)
        size = (int(np.ceil(shape[:, 1].max())) + 3, int(np.ceil(shape[:, 0].max())) + 3)
        tris = _triangles(shape)
        ids = _raster(shape, tris, size)
        samples = np.full((len(frames), *size, 3), np.nan, np.float32)
        for k, ((ycc, _), p) in enumerate(zip(frames, pts, strict=True)):
            mx, my, has = _place_map(ids, _affines(p, shape, tris))
            h, w = ycc.shape[:2]
            inside = has & (mx >= 0) & (my >= 0) & (mx <= w - 1) & (my <= h - 1)
            warped = cv2.remap(ycc.astype(np.float32), mx, my, cv2.INTER_LINEAR)
            samples[k][inside] = warped[inside]
        return cls._from_samples(shape, tris, samples, ids > 0)

    @classmethod
    def _from_samples(
        cls, shape: F32, tris: npt.NDArray[np.int32], s: F32, region: npt.NDArray[np.bool_]
    ) -> PlaceModel | None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN places
            med = np.nanmedian(s, axis=0)
            # Per frame, a global shift of each channel (the light).
            off = np.nanmedian((s - med).reshape(len(s), -1, 3), axis=1)
            s = s - off[:, None, None, :]
            med = np.nanmedian(s, axis=0)
            sd = np.maximum(np.nanmedian(np.abs(s - med), axis=0) * 1.4826, PLACE_FLOOR)
            # Frames with an object over part of the face are left out.
            odd = (np.abs(s - med) > PLACE_K * sd).any(axis=-1)
            frac = (odd & region).sum(axis=(1, 2)) / max(1, int(region.sum()))
            keep = frac <= PLACE_ODD
            if int(keep.sum()) < PLACE_MIN_FRAMES:
                return None
            s = s[keep]
            med = np.nanmedian(s, axis=0)
            sd = np.maximum(np.nanmedian(np.abs(s - med), axis=0) * 1.4826, PLACE_FLOOR)
        known = np.isfinite(med).all(axis=-1) & region
        lo = np.where(known[..., None], med - PLACE_K * sd, 1e4).astype(np.float32)
        hi = np.where(known[..., None], med + PLACE_K * sd, -1e4).astype(np.float32)
        r = max(1, round(PLACE_SLACK * WORK_MOUTH_PX))
        kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        lo = np.asarray(cv2.erode(lo, kernel), np.float32)
        hi = np.asarray(cv2.dilate(hi, kernel), np.float32)
        med = np.where(known[..., None], med, np.nan).astype(np.float32)
        ranges = np.concatenate([lo, hi, med], axis=-1).astype(np.float32)
        return cls(shape, tris, ranges)

    def foreign(
        self, ycc: F32, lm: F32, ignore: npt.NDArray[np.bool_] | None = None
    ) -> npt.NDArray[np.bool_]:
        """Pixels of ``ycc`` (a face at about the working scale, landmarks ``lm``) out of
        their place's usual range, after the frame's light is matched to the shot's (the
        median shift over its places, ``ignore``'s pixels left out)."""
        return self.judge(ycc, lm, ignore)[0]

    def judge(
        self, ycc: F32, lm: F32, ignore: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.bool_], F32]:
        """:meth:`foreign`, and per pixel how far it lies from its place's usual colour
        (the largest over Y, Cr, Cb, in robust standard deviations of the place; NaN where
        the model has no place)."""
        pts = place_points(lm)
        ids = _raster(pts, self.tris, ycc.shape[:2])
        mx, my, has = _place_map(ids, _affines(self.shape, pts, self.tris))
        r = cv2.remap(
            self.ranges, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
            borderValue=np.nan,
        )  # fmt: skip
        known = has & np.isfinite(r[..., 6])
        if not known.any():
            return np.zeros(ycc.shape[:2], bool), np.full(ycc.shape[:2], np.nan, np.float32)
        use = known if ignore is None else known & ~ignore
        if int(use.sum()) < 20:
            use = known
        diff = np.empty((3, int(use.sum())), np.float32)  # a row per channel: faster
        for c in range(3):
            diff[c] = ycc[..., c][use] - r[..., 6 + c][use]
        shift = np.median(diff, axis=1)
        # Channel by channel (numpy reduces a last axis of 3 slowly).
        out = np.zeros(ycc.shape[:2], bool)
        dev = np.zeros(ycc.shape[:2], np.float32)
        for c in range(3):
            v = ycc[..., c] - np.float32(shift[c])
            lo, hi, med = r[..., c], r[..., 3 + c], r[..., 6 + c]
            out |= (v < lo) | (v > hi)
            sd = np.maximum(hi - lo, np.float32(1e-3)) * np.float32(1.0 / (2.0 * PLACE_K))
            dev = np.maximum(dev, np.abs(v - med) / sd)
        out &= known
        dev[~known] = np.nan
        return out, dev


def _triangles(shape: F32) -> npt.NDArray[np.int32]:
    """The template's triangles: Delaunay's over the outline and the outer lips, those
    inside the lower face and outside the lips, then the lip band's."""
    from scipy.spatial import Delaunay

    idx = np.arange(_pt(60))  # the outline and the outer lips
    tri = Delaunay(shape[idx]).simplices
    poly = shape[:16]
    lips = shape[_pt(48) : _pt(60)]
    keep = []
    for t in tri:
        c = shape[idx[t]].mean(axis=0)
        pt = (float(c[0]), float(c[1]))
        if cv2.pointPolygonTest(poly, pt, False) > 0 and cv2.pointPolygonTest(lips, pt, False) < 0:
            keep.append(idx[t])
    band = [[_pt(a), _pt(b), _pt(c)] for a, b, c in LIP_BAND]
    return np.array(keep + band, np.int32)


@dataclass
class OcclusionModel:
    """A person's skin and lips in one shot."""

    skin: ColourStats
    lips: ColourStats
    places: PlaceModel | None = None
    teeth: ColourStats | None = None  # their colour where the shot shows them (_teeth)


@dataclass
class OcclusionSampler:
    """Collects a shot's skin and lip pixels (YCrCb) from some of its frames, and some of
    those frames whole (at the working scale) for the place model."""

    every: int = 4
    per_frame: int = 300
    skin: list[F32] = field(default_factory=list)
    lips: list[F32] = field(default_factory=list)
    inner: list[F32] = field(default_factory=list)  # the mouth's opening
    # (sample index, YCrCb face at the working scale, its landmarks), one in ``stride``
    faces: list[tuple[int, U8, F32]] = field(default_factory=list)
    stride: int = 1

    def add(self, rgb: U8, lm: F32, rng: np.random.Generator) -> None:
        """Frame ``rgb`` (the face's box) with its landmarks in that box (the caller takes
        one frame in ``every``)."""
        regions = face_regions(lm, rgb.shape[:2])
        ycc = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb), np.uint8)
        for mask, into in ((regions.skin, self.skin), (regions.lips, self.lips)):
            pts = ycc[mask].astype(np.float32)
            if len(pts) > self.per_frame:
                pts = pts[rng.choice(len(pts), self.per_frame, replace=False)]
            into.append(pts)
        # The opening evenly thinned (the random draws above stay those of the skin and lips)
        inner = ycc[regions.inner].astype(np.float32)
        self.inner.append(inner[:: max(1, -(-len(inner) // self.per_frame))])
        k = len(self.skin) - 1
        if k % self.stride:
            return
        small, lm_s = _to_work_scale(ycc, lm)
        self.faces.append((k, small, lm_s))
        if len(self.faces) > PLACE_FRAMES:  # a long shot: every other one is kept
            self.stride *= 2
            self.faces = [f for f in self.faces if f[0] % self.stride == 0]

    def model(self) -> OcclusionModel | None:
        if not self.skin or not self.lips:
            return None
        keep = _typical_frames(self.skin) & _typical_frames(self.lips)
        skin = np.concatenate([s for s, k in zip(self.skin, keep, strict=True) if k])
        lips = np.concatenate([s for s, k in zip(self.lips, keep, strict=True) if k])
        if len(skin) < MIN_SAMPLES or len(lips) < MIN_SAMPLES // 4:
            return None
        places = PlaceModel.fit([(f, lm) for k, f, lm in self.faces if keep[k]])
        lip_stats = ColourStats.fit(lips)
        # (a sampler filled by hand may have no openings)
        opening = self.inner if len(self.inner) == len(keep) else []
        inner = [s for s, k in zip(opening, keep, strict=False) if k and len(s)]
        teeth = _teeth(np.concatenate(inner), lip_stats) if inner else None
        return OcclusionModel(ColourStats.fit(skin), lip_stats, places, teeth)


def _teeth(inner: F32, lips: ColourStats) -> ColourStats | None:
    """The colour of this person's teeth: the brightest :data:`TEETH_SHARE` of the mouth's
    opening as sampled (YCrCb), when the shot shows them (that part brighter than the lips
    by :data:`TEETH_BRIGHTER`); None for a shot that never does (a closed mouth's opening
    is lips and shadow)."""
    if len(inner) < MIN_SAMPLES:
        return None
    bright = inner[inner[:, 0] >= np.quantile(inner[:, 0], 1.0 - TEETH_SHARE)]
    if len(bright) < MIN_SAMPLES // 4:
        return None
    lips_y = (lips.y_lo + lips.y_hi) / 2
    if float(np.median(bright[:, 0])) < lips_y + TEETH_BRIGHTER:
        return None
    # Only bright: the dark of the mouth (and a dark object) is not the teeth's.
    fit = ColourStats.fit(bright)
    return replace(fit, y_lo=max(fit.y_lo, lips_y + TEETH_BRIGHTER))


def _to_work_scale(img: U8, lm: F32) -> tuple[U8, F32]:
    """``img`` (and its landmarks) scaled down so the mouth is about WORK_MOUTH_PX wide."""
    mouth_w = float(np.linalg.norm(lm[54] - lm[48])) or 1.0
    scale = min(1.0, WORK_MOUTH_PX / mouth_w)
    if scale >= 1.0:
        return img, lm
    size = (max(4, round(img.shape[1] * scale)), max(4, round(img.shape[0] * scale)))
    small = np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA), np.uint8)
    sx, sy = small.shape[1] / img.shape[1], small.shape[0] / img.shape[0]
    return small, (lm * np.array([sx, sy], np.float32)).astype(np.float32)


def _typical_frames(frames: list[F32]) -> npt.NDArray[np.bool_]:
    """Which sampled frames show this part of the face as most of the shot's frames do:
    a frame whose median colour lies far from the median of all frames' medians (an
    object held over the mouth for a while, whose pixels the landmarks still call lips or
    skin) is left out of the model, else the object would be learnt as this face. Frames
    with no pixels of the part count as typical (they add nothing)."""
    keep = np.ones(len(frames), bool)
    have = [i for i, f in enumerate(frames) if len(f)]
    if len(have) < 4:
        return keep
    med = np.array([np.median(frames[i], axis=0) for i in have], np.float32)
    centre = np.median(med, axis=0)
    dev = np.abs(med - centre)
    scale = np.maximum(np.median(dev, axis=0) * 1.4826, TYPICAL_FLOOR)
    keep[have] = np.all(dev <= TYPICAL_K * scale, axis=1)
    return keep


THUMB = (32, 20)  # (w, h) of the mouth thumbnails kept per frame to find occluded frames


def mouth_thumb(rgb: U8, lm: F32) -> tuple[F32, F32]:
    """A small YCrCb copy of the mouth's box (the outer lips grown by half a mouth width
    around) of an RGB face crop, and the outer-lip landmarks in its pixels."""
    mouth_w = float(np.linalg.norm(lm[54] - lm[48])) or 1.0
    x1, y1 = lm[48:60].min(axis=0) - 0.25 * mouth_w
    x2, y2 = lm[48:60].max(axis=0) + 0.25 * mouth_w
    h, w = rgb.shape[:2]
    a, b = int(max(0, x1)), int(min(w, x2))
    c, d = int(max(0, y1)), int(min(h, y2))
    if b - a < 4 or d - c < 4:
        return np.zeros((THUMB[1], THUMB[0], 3), np.float32), np.zeros((12, 2), np.float32)
    small = cv2.resize(np.ascontiguousarray(rgb[c:d, a:b]), THUMB, interpolation=cv2.INTER_AREA)
    ycc = cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    scale = np.array([THUMB[0] / (b - a), THUMB[1] / (d - c)], np.float32)
    return ycc, ((lm[48:60] - [a, c]) * scale).astype(np.float32)


def lips_hidden_in_thumb(model: OcclusionModel, thumb: F32, outer: F32) -> float:
    """The share of the lips (outer contour, mouth opening included) that is neither this
    person's skin nor lips, in a :func:`mouth_thumb`."""
    mask = np.zeros(thumb.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(outer).astype(np.int32)], 1)
    if not mask.any():
        return 0.0
    strange = model.skin.foreign(thumb) & model.lips.foreign(thumb)
    # The mouth's own opening is dark or white: only the lip band counts (its outer half).
    band = cv2.erode(mask, np.ones((3, 3), np.uint8)) == 0
    ring = (mask > 0) & band
    if not ring.any():
        return 0.0
    # Only what joins something strange beyond the lips (and a pixel or two of the
    # landmarks' slack) hides them: an object comes from outside the mouth. A lip darker
    # than the shot's usual lips (in shadow, a dark lipstick) lies within them.
    beyond = cv2.dilate(mask, np.ones((5, 5), np.uint8)) == 0
    hiding = _joined(strange & beyond, strange & ~beyond)
    return float(hiding[ring].mean())


@dataclass
class Regions:
    """Boolean masks of one face: its skin around the mouth, the lips (between the outer
    and inner contours) and the inside of the mouth."""

    skin: npt.NDArray[np.bool_]
    lips: npt.NDArray[np.bool_]
    inner: npt.NDArray[np.bool_]
    mouth: npt.NDArray[np.bool_]  # the lips and their opening, grown a little
    scope: npt.NDArray[np.bool_]  # the lower face as the compositor's mask reaches it
    face: npt.NDArray[np.bool_]  # the lower face within its jaw line


def face_regions(lm: F32, shape: tuple[int, int]) -> Regions:
    h, w = shape
    lower = np.zeros((h, w), np.uint8)
    cv2.fillPoly(lower, [np.round(lower_face_polygon(lm, extend=0.0)).astype(np.int32)], 1)
    outer = np.zeros((h, w), np.uint8)
    cv2.fillPoly(outer, [np.round(lm[48:60]).astype(np.int32)], 1)
    inner = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inner, [np.round(lm[60:68]).astype(np.int32)], 1)
    mouth_w = float(np.linalg.norm(lm[54] - lm[48]))
    grow = max(1, int(0.08 * mouth_w))
    ring = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    near_lips = cv2.dilate(outer, ring)
    # The mouth's opening as the landmarks put it, grown: teeth and the dark of the mouth
    # show a little past the inner contour.
    opening = np.asarray(cv2.dilate(inner, ring), np.uint8) & outer
    # The lips' own edge pixels are mixed with skin: neither model learns them.
    core = cv2.erode(outer, np.ones((3, 3), np.uint8))
    scope = np.zeros((h, w), np.uint8)
    cv2.fillPoly(scope, [np.round(lower_face_polygon(lm)).astype(np.int32)], 1)
    return Regions(
        skin=(lower > 0) & (near_lips == 0),
        lips=(core > 0) & (opening == 0),
        inner=opening > 0,
        mouth=near_lips > 0,
        scope=scope > 0,
        face=lower > 0,
    )


def _joined(
    found: npt.NDArray[np.bool_], more: npt.NDArray[np.bool_], most: float | None = None
) -> npt.NDArray[np.bool_]:
    """``found`` plus the pixels of ``more`` connected to it; with ``most``, only those of
    a piece no more than ``most`` times as big as the part of ``found`` in it."""
    if not found.any() or not more.any():
        return found
    n, labels = cv2.connectedComponents((found | more).astype(np.uint8), connectivity=8)
    if most is None:
        touched = np.unique(labels[found])
    else:
        seeds = np.bincount(labels[found], minlength=n)
        added = np.bincount(labels[more & ~found], minlength=n)
        touched = np.flatnonzero((seeds > 0) & (added <= most * seeds))
    joined: npt.NDArray[np.bool_] = found | (more & np.isin(labels, touched[touched > 0]))
    return joined


def _pieces(mask: npt.NDArray[np.bool_], least: float) -> npt.NDArray[np.bool_]:
    """The connected pieces of ``mask`` of at least ``least`` pixels."""
    if not mask.any():
        return mask
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= least) + 1
    kept: npt.NDArray[np.bool_] = np.isin(labels, big)
    return kept


def _reach_into_mouth(
    outside: npt.NDArray[np.bool_], inside: npt.NDArray[np.bool_], reach: int
) -> npt.NDArray[np.bool_]:
    """``outside`` plus the pixels of ``inside`` connected to it and within ``reach``
    pixels of it (the mouth's own dark beyond that stays the mouth's)."""
    if not outside.any() or not inside.any():
        return outside
    near = cv2.dilate(outside.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    grown: npt.NDArray[np.bool_] = outside | (_joined(outside, inside) & (near > 0))
    return grown


def _object_colour(occ: npt.NDArray[np.bool_], ycc: F32, mouth_w: float) -> F32 | None:
    """The colour of the object found (``occ``): (2, 3) median and robust standard
    deviation of Y, Cr, Cb, when it is flat (most of its found pixels share one colour) and
    enough of it is found; else None."""
    if int(occ.sum()) < OBJECT_MIN * mouth_w * mouth_w:
        return None
    px = ycc[occ]
    med = np.median(px, axis=0)
    near = (np.abs(px - med) <= OBJECT_K * OBJECT_FLAT).all(axis=1)
    if near.mean() < 0.5:
        return None
    px = px[near]
    med = np.median(px, axis=0)
    sd = np.median(np.abs(px - med), axis=0) * 1.4826
    if (sd > OBJECT_FLAT).any():
        return None
    return np.stack([med, np.maximum(sd, OBJECT_FLOOR)]).astype(np.float32)


def _flat_object(
    occ: npt.NDArray[np.bool_],
    colour: F32,
    ycc: F32,
    dev: F32,
    regions: Regions,
    reach: int,
    seeds: int = 0,
) -> npt.NDArray[np.bool_]:
    """``occ`` (the object found so far) plus the pixels connected to it whose colour is
    the flat object's (``colour``, see :func:`_object_colour`): a skin-coloured bar is found
    only where it crosses the lips, and its part over the chin, near enough to the chin's
    colour to be let through by the place model, is still nearer the bar's. A pixel counts
    as the object's when its colour lies within OBJECT_K of the object's and farther (and
    at least OBJECT_FACE) from its place's usual colour (``dev``, NaN where the place model
    has none: there the colour alone). With ``seeds``, such pixels in one piece of at least
    that many count as found (the colour is the last frame's)."""
    d_obj = (np.abs(ycc - colour[0]) / colour[1]).max(axis=-1)
    with np.errstate(invalid="ignore"):
        face_like = (dev <= np.maximum(d_obj, OBJECT_FACE)) & (d_obj > OBJECT_SURE)
    like = regions.scope & (d_obj <= OBJECT_K) & ~face_like
    outside = like & ~regions.inner
    if seeds:
        occ = occ | _pieces(outside, seeds)
    # Into the mouth's opening (the landmarks put it where the object hides the lips) no
    # farther than an object found outside it reaches (see _reach_into_mouth).
    grown = _joined(occ, outside)
    return _reach_into_mouth(grown, like & regions.inner, reach)


def _even_top(occ: U8, width: int) -> U8:
    """``occ`` with notches narrower than ``width`` columns in its top edge filled: an
    object held up to the mouth has colours this face has at some of its places (a dark-red
    texture where the hidden lower lip would be), which left notches in its edge that the
    new lip was drawn into, bending it. Per column that has the object, its top edge is
    raised to the grey opening of the edges over ``width`` columns (the lower of the
    highest edges on its either side); a single column of it that reaches higher (a hand's
    finger) stays as it is, and columns without it stay empty."""
    has = occ.any(axis=0)
    if not has.any():
        return occ
    h = occ.shape[0]
    top = np.where(has, occ.argmax(axis=0), h).astype(np.float32)[None, :]
    kernel = np.ones((1, width), np.uint8)
    opened = cv2.dilate(cv2.erode(top, kernel, borderType=cv2.BORDER_REPLICATE), kernel,
                        borderType=cv2.BORDER_REPLICATE)[0]  # fmt: skip
    out = occ.copy()
    for x in np.flatnonzero(has & (opened < top[0])):
        out[int(opened[x]) : int(top[0, x]), x] = 1
    return out


@dataclass
class OcclusionMasker:
    """Per frame, the share of generated pixels allowed at each pixel of a patch (1 = the
    person's own face, 0 = something in front of it), smoothed over time."""

    models: dict[int, OcclusionModel]  # per shot
    _last: tuple[int, F32, int, int, F32] | None = None  # (shot, nose, x1, y1, occlusion)
    hidden: float = 0.0  # the share of the lips found hidden in the last frame (ungrown)
    # (shot, colour, size in squared mouth widths, frames since learnt) of the last frame's
    # flat object
    _colour: tuple[int, F32, float, int] | None = None

    def occlusion(
        self, rgb: U8, lm: F32, shot: int, x1: int, y1: int, h: int, w: int
    ) -> F32 | None:
        """Occluded share (0..1) of the box (x1, y1, w, h) of ``rgb`` whose face has
        landmarks ``lm`` (``rgb``'s coordinates); None when the shot has no model."""
        model = self.models.get(shot)
        if model is None:
            return None
        fh, fw = rgb.shape[:2]
        bx1, by1 = max(0, x1), max(0, y1)
        bx2, by2 = min(fw, x1 + w), min(fh, y1 + h)
        out = np.zeros((h, w), np.float32)
        if bx2 <= bx1 or by2 <= by1:
            return out
        crop = np.ascontiguousarray(rgb[by1:by2, bx1:bx2])
        local = (lm - np.array([bx1, by1], np.float32)).astype(np.float32)
        # Worked out at a scale where the mouth is about WORK_MOUTH_PX wide, then scaled up.
        small, lm_s = _to_work_scale(crop, local)
        regions = face_regions(lm_s, small.shape[:2])
        ycc = cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb).astype(np.float32)
        # Neither this person's skin nor their lips. In and around the mouth such colours
        # are its own (teeth, tongue, the dark of the mouth), unless they join an object
        # found outside it: then the object reaches over the mouth.
        # Only the mouth region is judged (a patch may reach further: Wav2Lip's --box).
        skin_off, lips_off = model.skin.foreign(ycc), model.lips.foreign(ycc)
        strange = skin_off & lips_off & regions.scope
        # Near and past the jaw line (the shadow under the chin, hair, a collar) only what
        # joins an object found well inside the face: the warp moves the chin there, and
        # keeping the input's shadow under a moved chin drew a dark block on the neck.
        mouth_ws = float(np.linalg.norm(lm_s[54] - lm_s[48]))
        band = max(2, int(JAW_BAND * mouth_ws))
        inside = cv2.erode(regions.face.astype(np.uint8), np.ones((band, band), np.uint8)) > 0
        dev = None
        if model.places is not None:
            # Colours of this face, but not the ones it has at that place (a lip-red stripe
            # on the chin, a skin-coloured patch over the lips).
            off, dev = model.places.judge(ycc, lm_s, strange)
            # Only pieces of some size: a fold or a shadow that comes and goes is small.
            off = _pieces(off & ~strange, OBJECT_MIN * mouth_ws * mouth_ws)
            strange |= off & regions.scope
        # Just around the lips (their shadow, a lip fuller than the landmarks that lag a
        # moving mouth put it) as in the mouth: only what joins an object found beyond.
        k = max(3, int(2 * MOUTH_AROUND * mouth_ws) | 1)
        around = cv2.dilate(regions.mouth.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        occ = _joined(strange & ~around & inside, strange & ~inside, JOIN_MOST)
        reach = max(2, int(0.5 * mouth_ws))
        occ = _reach_into_mouth(occ, self._not_teeth(model, ycc, occ, strange & around), reach)
        if occ.sum() >= OBJECT_MIN * mouth_ws * mouth_ws:
            # Past the jaw line, an object of some size found inside the face goes on
            # into lip colours too (dark-red strands): there are no lips there.
            near = max(3, int(2 * LIPS_NEAR * mouth_ws) | 1)
            lips_near = cv2.dilate(regions.mouth.astype(np.uint8), np.ones((near, near), np.uint8))
            away = skin_off & ~lips_off & (lips_near == 0) & ~inside & regions.scope
            occ = _joined(occ, away)
        if dev is not None:
            occ = self._object(occ, ycc, dev, regions, reach, shot, mouth_ws)
        outer = np.zeros(occ.shape, np.uint8)
        cv2.fillPoly(outer, [np.round(lm_s[48:60]).astype(np.int32)], 1)
        self.hidden = float(occ[outer > 0].mean()) if outer.any() else 0.0
        last = self._last
        if not occ.any() and (last is None or last[0] != shot or not last[4].any()):
            # Nothing in front, now or in the last frame: no mask (a clean face's usual
            # frame skips the scaling, smoothing and feathering of an empty one).
            self._last = (shot, lm[30].astype(np.float32), x1, y1, out)
            return out
        # An object held up to the mouth from below (at the mouth and well below the lower
        # lip): the notches in its top edge are filled (not in the hair or a collar found
        # beside the jaw, nor in a patch of the face's own light read as strange)
        below = int(lm_s[57, 1] + 0.3 * mouth_ws) + 1
        held = bool((occ & around).any() and occ[below:].any())
        occ_u8 = self._clean(occ.astype(np.uint8), lm_s, even=held)
        soft = occ_u8.astype(np.float32)
        if small is not crop:  # worked out smaller: back to the box's size
            soft = np.asarray(
                cv2.resize(soft, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR),
                np.float32,
            )
        out[by1 - y1 : by2 - y1, bx1 - x1 : bx2 - x1] = soft
        out = self._steady(out, lm, shot, x1, y1)
        sigma = max(1.0, 0.015 * float(np.linalg.norm(lm[16] - lm[0])))
        out = np.maximum(out, cv2.GaussianBlur(out, (0, 0), sigma))
        return np.clip(out, 0.0, 1.0)

    @staticmethod
    def _not_teeth(
        model: OcclusionModel, ycc: F32, occ: npt.NDArray[np.bool_], mouthy: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """``mouthy`` (what an object found beyond the mouth may take into it) less the
        pixels of this person's teeth colour, unless the object found is of that colour
        too (a white cup: its part over the mouth is the cup's)."""
        if model.teeth is None or not occ.any() or not mouthy.any():
            return mouthy
        own = ~model.teeth.foreign(ycc)
        if float(own[occ].mean()) > TEETH_OBJECT:
            return mouthy
        kept: npt.NDArray[np.bool_] = mouthy & ~own
        return kept

    def _object(
        self,
        occ: npt.NDArray[np.bool_],
        ycc: F32,
        dev: F32,
        regions: Regions,
        reach: int,
        shot: int,
        mouth_w: float,
    ) -> npt.NDArray[np.bool_]:
        """``occ`` grown over the rest of a flat object (:func:`_flat_object`). Its colour is
        learnt from what is found in this frame, or else is the last frame's: an object that
        moves on as it was is still found where the place model finds too little of it to
        learn from (a mouth opened wide behind it moves the landmarks)."""
        colour = _object_colour(occ, ycc, mouth_w)
        last, self._colour = self._colour, None
        seeds, age = 0, 0
        if colour is None:
            if last is None or last[0] != shot or last[3] >= OBJECT_CARRY:
                return occ
            # Only a piece of the last frame's colour about as big as the last frame's
            # object (the face's own patches of that colour are small).
            colour, age = last[1], last[3] + 1
            seeds = max(1, int(max(OBJECT_MIN, OBJECT_SAME * last[2]) * mouth_w * mouth_w))
        grown = _flat_object(occ, colour, ycc, dev, regions, reach, seeds)
        if seeds:
            if int((grown & ~occ).sum()) < seeds:
                return occ
            # The object's colour as this frame shows it (the light, its own shading).
            now = _object_colour(grown, ycc, mouth_w)
            if now is not None:
                colour = now
                grown = _flat_object(grown, colour, ycc, dev, regions, reach)
        self._colour = (shot, colour, float(grown.sum()) / (mouth_w * mouth_w), age)
        return grown

    @staticmethod
    def _clean(occ: U8, lm: F32, even: bool = False) -> U8:
        """Specks dropped, holes closed, with ``even`` notches in the top edge filled
        (:func:`_even_top`), grown by a few pixels (an object's edge)."""
        mouth_w = float(np.linalg.norm(lm[54] - lm[48]))
        k = max(3, int(0.06 * mouth_w) | 1)
        kernel = np.ones((k, k), np.uint8)
        occ = np.asarray(cv2.morphologyEx(occ, cv2.MORPH_OPEN, kernel), np.uint8)
        occ = np.asarray(cv2.morphologyEx(occ, cv2.MORPH_CLOSE, kernel), np.uint8)
        if even:
            occ = _even_top(occ, max(3, int(OBJECT_NOTCH * mouth_w) | 1))
        grow = max(3, int(0.04 * mouth_w) | 1)
        return np.asarray(cv2.dilate(occ, np.ones((grow, grow), np.uint8)), np.uint8)

    def _steady(self, occ: F32, lm: F32, shot: int, x1: int, y1: int) -> F32:
        """Half of the last frame's mask, moved with the nose, kept in (same shot)."""
        nose = lm[30].astype(np.float32)
        last = self._last
        self._last = (shot, nose, x1, y1, occ)
        if last is None or last[0] != shot:
            return occ
        _, p_nose, px1, py1, p_occ = last
        dx = float(nose[0] - p_nose[0]) + (px1 - x1)
        dy = float(nose[1] - p_nose[1]) + (py1 - y1)
        h, w = occ.shape
        shift = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
        moved = np.asarray(cv2.warpAffine(p_occ, shift, (w, h), flags=cv2.INTER_LINEAR))
        if moved.shape != occ.shape:
            return occ
        return np.maximum(occ, 0.5 * (occ + moved)).astype(np.float32)

    def lips_hidden(self) -> float:
        """The share of the lips (outer contour) hidden in the last frame measured, as
        found (before the mask is grown and feathered)."""
        return self.hidden
