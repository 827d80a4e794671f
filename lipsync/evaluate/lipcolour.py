"""Foreign lips: does the output's mouth keep the colour of this person's lips in the same
input frame?

Per frame pair, both images are warped to the evaluator's face-aligned mouth patch placed
with the *reference's* 5 points (:func:`.mouth.mouth_patch`: 1.2 eye distances wide, centred
0.42 below the nose base). The lip pixels of each are those of the lip area (the patch's
middle half across, below its top eighth, which is the skin under the nose) whose redness
(CIELAB a*) lies past the middle between the skin's and the area's reddest (97th
percentile), leaving out dark pixels (lightness under 0.6 of the skin's above the lip: the
open mouth's inside, whose colour is noise). A threshold between skin and lip, not a fixed
share of the area: the lips fill a quarter of it on a wide-open mouth and a tenth when
pressed shut, so a fixed share reads the skin around shut lips as lip and calls the same
person's own closed mouth "recoloured". Where the area holds nothing redder than the skin
(lips recoloured to skin, or painted over), its reddest quarter is read instead. The
measure is the distance between the two medians in the a*b* plane (CIELAB units). The same
person's own mouth, moved, stays within a few units; another person's lips, or a
recoloured mouth, move it by more than :data:`LIP_SHIFT`.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.evaluate.faces import FaceFrame
from lipsync.evaluate.mouth import mouth_patch

LIP_SHIFT = 12.0  # a*b* distance above which a frame's lips count as recoloured / foreign
_SKIN_ROWS = 8  # top rows of the 64-row patch: skin between the nose and the upper lip
_REDDEST = 75  # percentile of a* above which a pixel counts as lip, when no lip stands out
_TOP = 97  # percentile of a* taken as the lips' own redness
_SPLIT = 0.5  # where between the skin's a* and the lips' a pixel starts to count as lip
_CONTRAST = 4.0  # a* units the lips must stand above the skin to be told apart from it
_DARK = 0.6  # darker than this share of the skin lightness: mouth interior
_MIN_PIXELS = 20
_LAB_OFFSET = np.array([0.0, 128.0, 128.0], np.float32)


def lip_chroma(patch: npt.NDArray[np.uint8]) -> tuple[float, float] | None:
    """Median (a*, b*) of the lip pixels of an RGB mouth patch (see the module docstring);
    None when too few pixels qualify."""
    # OpenCV's 8-bit CIELAB (L*255/100, a*+128, b*+128) brought back to CIELAB units: ten
    # times cheaper than the float conversion, within half a unit of it
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32) - _LAB_OFFSET
    lab[..., 0] *= 100.0 / 255.0
    h, w = lab.shape[:2]
    skin_l = float(np.median(lab[:_SKIN_ROWS, :, 0]))
    skin_a = float(np.median(lab[:_SKIN_ROWS, :, 1]))
    area = lab[_SKIN_ROWS:, w // 4 : 3 * w // 4].reshape(-1, 3)
    area = area[area[:, 0] >= _DARK * skin_l]
    if area.shape[0] < _MIN_PIXELS:
        return None
    top = float(np.percentile(area[:, 1], _TOP))
    if top - skin_a >= _CONTRAST:
        threshold = skin_a + _SPLIT * (top - skin_a)
    else:
        threshold = float(np.percentile(area[:, 1], _REDDEST))
    lip = area[area[:, 1] >= threshold]
    if lip.shape[0] < _MIN_PIXELS // 4:
        return None
    return float(np.median(lip[:, 1])), float(np.median(lip[:, 2]))


def lip_colour_shift(
    output: npt.NDArray[np.uint8],
    reference: npt.NDArray[np.uint8],
    face: FaceFrame,
    reference_patch: npt.NDArray[np.uint8] | None = None,
) -> float | None:
    """Distance in the CIELAB a*b* plane between the lip colour of ``output`` and of
    ``reference`` (RGB frames of the same size), both read in the mouth patch placed with
    ``face``, the reference's face frame; ``reference_patch``: the reference's patch when
    the caller already has it. None when either has too few lip pixels."""
    ref_patch = reference_patch if reference_patch is not None else mouth_patch(reference, face)
    ref = lip_chroma(ref_patch)
    out = lip_chroma(mouth_patch(output, face))
    if ref is None or out is None:
        return None
    return float(np.hypot(out[0] - ref[0], out[1] - ref[1]))
