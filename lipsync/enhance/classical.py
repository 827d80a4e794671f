"""Weight-free enhancer: sharpen the generated mouth and match it to the surrounding skin.

Generators such as Wav2Lip produce the face at 96x96 and it is scaled up to the face box,
so the mouth comes out soft and often with a slight colour cast. This enhancer works only
on a small region around the mouth of the patch (from landmarks 48..67):

* colour and brightness: per-channel mean/std transfer in Lab, estimated on a ring of skin
  around the mouth (generated patch vs. the original frame at the same pixels) and applied
  over the mouth and that ring;
* a mild unsharp mask over the mouth itself, its radius scaled to the upsampling factor.

Both are feathered, and clipped to the lower face (jaw line and nose base), so nothing
outside the lower face changes. A few milliseconds per face at 720p.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.enhance.base import Enhancer
from lipsync.types import FaceObs, Patch, RGBImage

F32 = npt.NDArray[np.float32]

_MOUTH = slice(48, 68)
_LOWER_FACE = [*range(2, 15), 35, 34, 33, 32, 31]  # jaw 2..14, then nose base back across


def _polygon_mask(points: npt.NDArray[np.float64], shape: tuple[int, int]) -> F32:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return mask.astype(np.float32)


def _scaled_hull(points: npt.NDArray[np.float64], scale: float) -> npt.NDArray[np.float64]:
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    centre = points.mean(axis=0)
    scaled: npt.NDArray[np.float64] = centre + (hull - centre) * scale
    return scaled


class ClassicalEnhancer(Enhancer):
    """Unsharp mask + Lab colour transfer on the mouth region, feathered."""

    name = "classical"

    def __init__(
        self,
        sharpen: float = 0.6,
        colour: bool = True,
        max_gain: float = 1.25,
    ) -> None:
        self.sharpen = float(sharpen)
        self.colour = bool(colour)
        self.max_gain = float(max_gain)

    def enhance(self, frame: RGBImage, patch: Patch, face: FaceObs) -> Patch:
        if patch.upscale <= 1.0:
            # Native-resolution patches (the viseme warp of the real face) carry no
            # generator blur or colour cast to correct.
            return patch
        lm = np.asarray(face.landmarks, dtype=np.float64)
        image = patch.image
        h, w = image.shape[:2]
        if lm.shape != (68, 2) or not np.all(np.isfinite(lm)) or h < 8 or w < 8:
            return patch
        local = lm - np.array([patch.x1, patch.y1], dtype=np.float64)
        mouth = local[_MOUTH]
        mouth_w = float(np.linalg.norm(mouth[6] - mouth[0]))  # corners 54 - 48
        if mouth_w < 4.0:
            return patch

        # Region of interest: the mouth plus room for the skin ring, inside the patch.
        margin = 1.4 * mouth_w
        lo = np.floor(mouth.min(axis=0) - margin).astype(int)
        hi = np.ceil(mouth.max(axis=0) + margin).astype(int)
        rx1, ry1 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        rx2, ry2 = min(int(hi[0]), w), min(int(hi[1]), h)
        if rx2 - rx1 < 4 or ry2 - ry1 < 4:
            return patch
        origin = np.array([rx1, ry1], dtype=np.float64)
        shape = (ry2 - ry1, rx2 - rx1)

        lower = _polygon_mask(local[_LOWER_FACE] - origin, shape)
        inner = _polygon_mask(_scaled_hull(mouth - origin, 1.25), shape) * lower
        outer = _polygon_mask(_scaled_hull(mouth - origin, 1.9), shape) * lower
        if inner.sum() < 4:
            return patch
        # Sharpening stays on the mouth; the colour correction fades out slowly over the
        # lower face so that it leaves no visible edge.
        w_inner = cv2.GaussianBlur(inner, (0, 0), max(1.0, 0.08 * mouth_w)) * lower
        w_outer = cv2.GaussianBlur(outer, (0, 0), max(1.0, 0.3 * mouth_w)) * lower

        roi = image[ry1:ry2, rx1:rx2].astype(np.float32)
        out = roi
        if self.colour:
            fy1, fx1 = patch.y1 + ry1, patch.x1 + rx1
            src = frame[fy1 : fy1 + shape[0], fx1 : fx1 + shape[1]]
            ring = (outer - inner) > 0.5
            if src.shape[:2] == shape and int(ring.sum()) >= 16:
                out = self._match_colour(roi, src, ring, w_outer)
        # Sharpen in proportion to how much the generator's output was enlarged: a patch at
        # native resolution (e.g. the viseme warp of the real face) keeps its own detail.
        amount = self.sharpen * float(np.clip((patch.upscale - 1.0) / 0.25, 0.0, 1.0))
        if amount > 0:
            sigma = float(np.clip(0.6 * patch.upscale, 0.8, 3.0))
            blurred = cv2.GaussianBlur(out, (0, 0), sigma)
            sharp = out + amount * (out - blurred)
            out = (out + w_inner[..., None] * (sharp - out)).astype(np.float32)

        touched = np.maximum(w_inner, w_outer if self.colour else 0.0) > 0.0
        new = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        result = image.copy()
        result[ry1:ry2, rx1:rx2][touched] = new[touched]
        return Patch(patch.x1, patch.y1, result, mask=patch.mask, upscale=patch.upscale)

    def _match_colour(
        self, roi: F32, reference: RGBImage, ring: npt.NDArray[np.bool_], weight: F32
    ) -> F32:
        """Shift ``roi`` so its ring statistics in Lab match ``reference``'s, weighted."""
        gen = cv2.cvtColor(roi / 255.0, cv2.COLOR_RGB2LAB)
        ref = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        g, r = gen[ring], ref[ring]
        g_mean, g_std = g.mean(axis=0), g.std(axis=0) + 1e-3
        r_mean, r_std = r.mean(axis=0), r.std(axis=0) + 1e-3
        gain = np.clip(r_std / g_std, 1.0 / self.max_gain, self.max_gain).astype(np.float32)
        matched = (gen - g_mean.astype(np.float32)) * gain + r_mean.astype(np.float32)
        blended = gen + weight[..., None] * (matched - gen)
        rgb = cv2.cvtColor(blended.astype(np.float32), cv2.COLOR_LAB2RGB) * 255.0
        return np.asarray(rgb, dtype=np.float32)
