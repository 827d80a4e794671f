"""Large faces are rendered at a working scale, not at the input's pixel scale.

A face wider than :data:`WORK_FACE_PX` (a 12 MP portrait's is 1000-2000 px) is cut out of
the frame with a margin, scaled down so the face is that wide, and the engine, the
enhancer and the feathered blend work on that small image; the new lower face is then
scaled back up and blended into the full-resolution frame with the patch's own mask, so
only that region changes and it has no seam. The cost of a frame then follows the face's
working size, not the frame's megapixels. Faces at or below the working size take the
pipeline's native path unchanged.

Coordinates: a frame pixel's centre ``X`` (landmark convention) sits at
``(X - x1 + 0.5) * s - 0.5`` in the working image, the mapping :func:`cv2.resize` uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.composite import lower_face_mask
from lipsync.face.geometry import lower_face_polygon
from lipsync.media.decode import even_box, i420_crop_rgb
from lipsync.types import FaceObs, FloatArray, Patch, RGBImage

#: Face width (jaw to jaw, landmarks 0 and 16, in pixels) the engines work at. Larger faces
#: are scaled down to it: the mouth is then ~170 px wide, more than any engine's own
#: detail (Wav2Lip draws 96 px faces, the retrieval engine keeps mouths at most 200 px
#: wide) and as large as the faces of the 720p-1080p videos the engines are tuned on;
#: a frame's cost is then bounded whatever the photo's size.
WORK_FACE_PX = 400
#: Set to a width in pixels to override :data:`WORK_FACE_PX` (tests, diagnostics).
WORK_FACE_ENV = "LIPSYNC_WORK_FACE_PX"
#: Margin around the face's region (lower face, face box, landmarks), share of face width.
REGION_MARGIN = 0.15


def work_face_px() -> float:
    """:data:`WORK_FACE_PX`, or the width set in ``$LIPSYNC_WORK_FACE_PX``."""
    text = os.environ.get(WORK_FACE_ENV, "").strip()
    if not text:
        return float(WORK_FACE_PX)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{WORK_FACE_ENV} must be a number of pixels, got {text!r}") from None
    return max(32.0, value)


def face_width(lm: FloatArray) -> float:
    return float(np.linalg.norm(lm[16] - lm[0]))


@dataclass(frozen=True)
class WorkRegion:
    """A region of a frame (even coordinates) and the scale it is worked on at."""

    x1: int
    y1: int
    x2: int
    y2: int
    width: int  # of the working image
    height: int

    @property
    def sx(self) -> float:
        return self.width / (self.x2 - self.x1)

    @property
    def sy(self) -> float:
        return self.height / (self.y2 - self.y1)

    def to_work(self, pts: npt.ArrayLike) -> FloatArray:
        """Frame pixel coordinates -> working-image coordinates."""
        p = np.asarray(pts, np.float64)
        out = (p - [self.x1, self.y1] + 0.5) * [self.sx, self.sy] - 0.5
        return out.astype(np.float32)

    def box_to_work(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box (pixel edges, x2/y2 exclusive) in the working image, clipped to it."""
        bx1, by1, bx2, by2 = box
        x1 = int(np.clip(np.floor((bx1 - self.x1) * self.sx), 0, self.width - 2))
        y1 = int(np.clip(np.floor((by1 - self.y1) * self.sy), 0, self.height - 2))
        x2 = int(np.clip(np.ceil((bx2 - self.x1) * self.sx), x1 + 2, self.width))
        y2 = int(np.clip(np.ceil((by2 - self.y1) * self.sy), y1 + 2, self.height))
        return x1, y1, x2, y2


def work_region(
    lm: FloatArray,
    box: tuple[int, int, int, int],
    frame_width: int,
    frame_height: int,
    face_px: float,
) -> WorkRegion | None:
    """Where and at what scale to work on this face; None when it is not wider than
    ``face_px`` (the native path). The region covers the landmarks, the face box and the
    lower face with room for a dropped jaw, plus a margin; ``frame_width`` and
    ``frame_height`` are the (even) I420 frame's."""
    fw = face_width(lm)
    if not np.isfinite(fw) or fw <= face_px:
        return None
    poly = lower_face_polygon(lm, extend=0.2)
    corners = np.array([[box[0], box[1]], [box[2], box[3]]], np.float32)
    pts = np.vstack([lm, poly, corners])
    margin = REGION_MARGIN * fw
    x1, y1 = np.floor(pts.min(axis=0) - margin).astype(int)
    x2, y2 = np.ceil(pts.max(axis=0) + margin).astype(int)
    x1, y1, x2, y2 = even_box(
        max(0, int(x1)), max(0, int(y1)), int(x2), int(y2), frame_width, frame_height
    )
    if x2 - x1 < 16 or y2 - y1 < 16:
        return None
    s = face_px / fw
    return WorkRegion(
        x1, y1, x2, y2, max(8, int(round((x2 - x1) * s))), max(8, int(round((y2 - y1) * s)))
    )


@dataclass
class WorkFrame:
    """One frame's face region, at full resolution and at the working scale."""

    region: WorkRegion
    full: RGBImage  # the region at full resolution, RGB
    image: RGBImage  # the region at the working scale, RGB: what the engine gets
    face: FaceObs  # the face in the working image's coordinates


def cut(yuv: npt.NDArray[np.uint8], region: WorkRegion, face: FaceObs) -> WorkFrame:
    """The region of an I420 frame, converted to RGB (only the region), and scaled down."""
    full = i420_crop_rgb(yuv, region.x1, region.y1, region.x2, region.y2)
    small = np.asarray(
        cv2.resize(full, (region.width, region.height), interpolation=cv2.INTER_AREA), np.uint8
    )
    work_face = FaceObs(
        region.box_to_work(face.box), region.to_work(face.landmarks), face.person, face.shot
    )
    return WorkFrame(region, full, small, work_face)


@dataclass(frozen=True)
class _Clipped:
    """The part of a patch inside the working image, with its blend weights."""

    x1: int  # where it starts in the working image
    y1: int
    image: RGBImage
    alpha: FloatArray  # (h, w) mask x blend


@dataclass(frozen=True)
class _Upscaled:
    """A clipped patch in a frame box at full resolution, in I420 terms."""

    luma: npt.NDArray[Any]  # (bh, bw) uint8
    chroma: npt.NDArray[Any]  # (bh // 2, bw // 2, 2) uint8
    alpha_luma: npt.NDArray[Any]  # (bh, bw) float32, 0..1
    alpha_chroma: npt.NDArray[Any]  # (bh // 2, bw // 2) float32


Box = tuple[int, int, int, int]


def paste_back(
    yuv: npt.NDArray[np.uint8], work: WorkFrame, patch: Patch, blend: float = 1.0
) -> npt.NDArray[np.uint8]:
    """A copy of I420 ``yuv`` with ``patch`` (working-image coordinates) scaled up and
    blended in with its mask (the compositor's lower-face mask when it has none), as the
    compositor would have done at full resolution. Only the box the mask reaches changes."""
    clipped = _clip(work, patch, blend)
    if clipped is None:
        return yuv
    box = _frame_box(work.region, clipped)
    if box is None:
        return yuv
    return _blend_i420(yuv, box, _upscale(work.region, clipped, box))


def _clip(work: WorkFrame, patch: Patch, blend: float) -> _Clipped | None:
    """The patch cut to the working image, its mask times ``blend``; None when nothing of
    it would show."""
    r = work.region
    x1, y1 = max(0, patch.x1), max(0, patch.y1)
    x2, y2 = min(r.width, patch.x2), min(r.height, patch.y2)
    if x2 <= x1 or y2 <= y1 or blend <= 0.0:
        return None
    mask = patch.mask if patch.mask is not None else lower_face_mask(work.face, patch)
    sy, sx = y1 - patch.y1, x1 - patch.x1
    img = np.ascontiguousarray(patch.image[sy : sy + (y2 - y1), sx : sx + (x2 - x1)])
    alpha = np.ascontiguousarray(mask[sy : sy + (y2 - y1), sx : sx + (x2 - x1)], np.float32)
    if blend < 1.0:
        alpha = alpha * np.float32(blend)
    return _Clipped(x1, y1, img, alpha)


def _frame_box(r: WorkRegion, c: _Clipped) -> Box | None:
    """The frame pixels (even box, inside the region) whose interpolation reaches the
    mask's non-zero box; None when the mask is empty."""
    rows = np.flatnonzero(c.alpha.max(axis=1) > 0.0)
    cols = np.flatnonzero(c.alpha.max(axis=0) > 0.0)
    if not len(rows):
        return None
    # The mask's box in working pixels -> the frame pixels whose interpolation reaches it.
    ax1, ax2 = c.x1 + int(cols[0]), c.x1 + int(cols[-1]) + 1
    ay1, ay2 = c.y1 + int(rows[0]), c.y1 + int(rows[-1]) + 1
    fx1 = r.x1 + int(np.floor((ax1 - 0.5) / r.sx - 0.5))
    fx2 = r.x1 + int(np.ceil((ax2 + 0.5) / r.sx - 0.5)) + 1
    fy1 = r.y1 + int(np.floor((ay1 - 0.5) / r.sy - 0.5))
    fy2 = r.y1 + int(np.ceil((ay2 + 0.5) / r.sy - 0.5)) + 1
    fx1, fy1, fx2, fy2 = even_box(max(fx1, r.x1), max(fy1, r.y1), fx2, fy2, r.x2, r.y2)
    if fx2 <= fx1 or fy2 <= fy1:
        return None
    return fx1, fy1, fx2, fy2


def _upscale(r: WorkRegion, c: _Clipped, box: Box) -> _Upscaled:
    """The clipped patch and its weights resampled onto the frame ``box``: luma at full
    resolution, chroma at half (bicubic), weights bilinear then area-averaged for chroma."""
    fx1, fy1, fx2, fy2 = box
    x1, y1 = c.x1, c.y1
    # Blended in the I420 planes (the conversion is linear, so this is blending in RGB):
    # one channel at full resolution and two at half instead of three at full.
    luma, chroma = _yuv444(c.image)
    # Frame pixel (fx1 + i) -> patch-array pixel ((fx1 + i - r.x1 + 0.5) * sx - 0.5 - x1);
    # chroma sample k of the box sits at frame pixel fx1 + 2k + 0.5.
    m_y = np.array(
        [
            [r.sx, 0.0, (fx1 - r.x1 + 0.5) * r.sx - 0.5 - x1],
            [0.0, r.sy, (fy1 - r.y1 + 0.5) * r.sy - 0.5 - y1],
        ],
        np.float64,
    )
    m_c = np.array(
        [
            [2 * r.sx, 0.0, (fx1 - r.x1 + 1.0) * r.sx - 0.5 - x1],
            [0.0, 2 * r.sy, (fy1 - r.y1 + 1.0) * r.sy - 0.5 - y1],
        ],
        np.float64,
    )
    bw, bh = fx2 - fx1, fy2 - fy1
    inv = cv2.WARP_INVERSE_MAP
    y_up = cv2.warpAffine(
        luma, m_y, (bw, bh), flags=inv | cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    c_up = cv2.warpAffine(
        chroma,
        m_c,
        (bw // 2, bh // 2),
        flags=inv | cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    a_y = cv2.warpAffine(
        c.alpha, m_y, (bw, bh), flags=inv | cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    a_y = np.clip(a_y, 0.0, 1.0)
    a_c = cv2.resize(a_y, (bw // 2, bh // 2), interpolation=cv2.INTER_AREA)
    return _Upscaled(y_up, c_up, a_y, a_c)


def _blend_i420(yuv: npt.NDArray[np.uint8], box: Box, up: _Upscaled) -> npt.NDArray[np.uint8]:
    """A copy of I420 ``yuv`` with ``up`` blended into ``box`` (even edges)."""
    fx1, fy1, fx2, fy2 = box
    out = yuv.copy()
    h = yuv.shape[0] * 2 // 3
    w = yuv.shape[1]
    flat = out.reshape(-1)
    cw, ch = w // 2, h // 2
    planes = (
        flat[h * w : h * w + cw * ch].reshape(ch, cw),
        flat[h * w + cw * ch : h * w + 2 * cw * ch].reshape(ch, cw),
    )
    ys, xs = slice(fy1, fy2), slice(fx1, fx2)
    a_y = up.alpha_luma
    out[ys, xs] = cv2.blendLinear(up.luma, np.ascontiguousarray(out[ys, xs]), a_y, 1.0 - a_y)
    cys, cxs = slice(fy1 // 2, fy2 // 2), slice(fx1 // 2, fx2 // 2)
    orig_c = np.dstack([planes[0][cys, cxs], planes[1][cys, cxs]])
    a_c = up.alpha_chroma
    new_c = cv2.blendLinear(up.chroma, orig_c, a_c, 1.0 - a_c)
    planes[0][cys, cxs] = new_c[..., 0]
    planes[1][cys, cxs] = new_c[..., 1]
    return out


def _yuv444(rgb: RGBImage) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Luma (h, w) and chroma (h, w, 2) of every pixel of ``rgb``, by OpenCV's I420
    conversion (the one the frames go through) of the image with each pixel doubled."""
    h, w = rgb.shape[:2]
    big = cv2.resize(rgb, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)
    yuv = cv2.cvtColor(big, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    luma = yuv[: 4 * h * w].reshape(2 * h, 2 * w)[::2, ::2]
    u = yuv[4 * h * w : 5 * h * w].reshape(h, w)
    v = yuv[5 * h * w : 6 * h * w].reshape(h, w)
    return np.ascontiguousarray(luma), np.dstack([u, v])
