"""The reference's paste-back mask: face-parsing classes -> blend region -> feathered mask.

Pure array functions (``numpy``, ``cv2``, Pillow where the reference resizes with Pillow) and
:class:`FaceParser`, which runs :class:`~lipsync.engines.musetalk.parsing.BiSeNet` on a frame.
See :mod:`.parsing` for the steps as the reference takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from lipsync.engines.musetalk.parsing import (
    CHEEK_WIDTH,
    EXPAND,
    LIPS,
    NECK,
    NOSE,
    PARSE_SIZE,
    SKIN,
    Box,
)

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
_CONE, _TAIL = 21, 12  # the jaw kernel: a downward cone of 21 rows, then 12 straight rows


def jaw_kernel() -> npt.NDArray[np.uint8]:
    """The 33x33 structuring element that grows the skin downwards (the jaw's reach): rows
    10..20 widen by one pixel each side per row from the centre column, rows 21..32 keep
    row 20's 21 pixels."""
    size = _CONE + _TAIL
    centre = size // 2
    kernel = np.zeros((size, size), np.uint8)
    for row in range(size):
        half = min(row, _CONE - 1) - _CONE // 2
        if half >= 0:
            kernel[row, centre - half : centre + half + 1] = 1
    return kernel


def cheek_mask(left: int = CHEEK_WIDTH, right: int = CHEEK_WIDTH) -> npt.NDArray[np.uint8]:
    """255 on the outer cheeks of the 512x512 parsing: columns ``<= 256 - left`` and
    ``>= 256 + right`` (where the jaw region is eroded instead of grown)."""
    mask = np.zeros((PARSE_SIZE, PARSE_SIZE), np.uint8)
    centre = PARSE_SIZE // 2
    mask[:, : max(0, centre - int(left) + 1)] = 255
    mask[:, max(0, centre + int(right)) :] = 255
    return mask


def parsing_region(
    classes: npt.NDArray[Any],
    mode: str = "jaw",
    left: int = CHEEK_WIDTH,
    right: int = CHEEK_WIDTH,
) -> npt.NDArray[np.uint8]:
    """The 0/255 blend region of a 512x512 class map, as the reference's modes make it:
    ``raw`` skin and lips; ``neck`` also the neck; ``jaw`` the skin grown downwards by
    :func:`jaw_kernel` (eroded by a flat ellipse on the cheeks), minus the nose, plus lips."""
    classes = np.asarray(classes)
    out = np.zeros(classes.shape, np.uint8)
    if mode == "raw":
        out[np.isin(classes, (SKIN, *LIPS))] = 255
        return out
    if mode == "neck":
        out[np.isin(classes, (SKIN, *LIPS, NECK))] = 255
        return out
    if mode != "jaw":
        raise ValueError(f"unknown parsing mode {mode!r}")
    skin = np.where(classes == SKIN, 255, 0).astype(np.uint8)
    grown = np.asarray(cv2.dilate(skin, jaw_kernel(), iterations=1), np.uint8)
    flat = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3))
    eroded = np.asarray(cv2.erode(grown, flat, iterations=2), np.uint8)
    cheeks = cheek_mask(left, right)
    region = (eroded & cheeks) | (grown & ~cheeks)
    out[(region == 255) & (classes != NOSE)] = 255
    out[np.isin(classes, LIPS)] = 255
    return out


def expanded_box(box: Box, expand: float = EXPAND) -> tuple[Box, int]:
    """The square the reference parses and blends in: centred on ``box`` (integer centre),
    half side ``int(longer side // 2 * expand)``; and that half side."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    s = int(max(x2 - x1, y2 - y1) // 2 * expand)
    return (cx - s, cy - s, cx + s, cy + s), s


def crop_padded(image: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.uint8]:
    """``image[y1:y2, x1:x2]`` with black where the box leaves the image (as Pillow's
    ``crop`` does)."""
    x1, y1, x2, y2 = box
    h, w = image.shape[:2]
    out = np.zeros((y2 - y1, x2 - x1, *image.shape[2:]), image.dtype)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
    return out


def parser_input(square_rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """``(1, 3, 512, 512)`` network input: Pillow bilinear resize, ``/ 255``, ImageNet
    normalisation (the reference's ``ToTensor`` + ``Normalize``)."""
    size = (PARSE_SIZE, PARSE_SIZE)
    resized = Image.fromarray(square_rgb).resize(size, Image.Resampling.BILINEAR)
    x = np.asarray(resized, np.float32) / np.float32(255.0)
    x = (x - _MEAN) / _STD
    result: npt.NDArray[np.float32] = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    return result


def mask_from_region(region: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.float32]:
    """The feathered blend mask in ``box``'s coordinates (0..1) from the square's 512x512
    region: resized to the square (Pillow's default filter), cut to the box, zero above
    the square's middle row, Gaussian-blurred with an odd kernel of ~5 % of its side."""
    square, s = expanded_box(box)
    side = square[2] - square[0]
    full = np.asarray(Image.fromarray(region).resize((side, side)), np.uint8)
    x1, y1, x2, y2 = box
    bx1, by1, bx2, by2 = x1 - square[0], y1 - square[1], x2 - square[0], y2 - square[1]
    kept = np.zeros((side, side), np.uint8)
    kept[by1:by2, bx1:bx2] = full[by1:by2, bx1:bx2]
    kept[: int(side * 0.5)] = 0
    k = int(0.05 * side // 2 * 2) + 1
    blurred = cv2.GaussianBlur(kept, (k, k), 0)
    mask: npt.NDArray[np.float32] = blurred[by1:by2, bx1:bx2].astype(np.float32) / 255.0
    return mask


@dataclass
class FaceParser:
    """BiSeNet on a device, with the reference's mode and cheek widths."""

    net: Any
    device: str = "cpu"
    mode: str = "jaw"
    left: int = CHEEK_WIDTH
    right: int = CHEEK_WIDTH

    def classes(self, square_rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        """The 512x512 class map (argmax of the logits) of an RGB square."""
        import torch

        x = torch.from_numpy(parser_input(square_rgb)).to(self.device)
        with torch.inference_mode():
            logits = self.net(x)
        result: npt.NDArray[np.int64] = logits[0].argmax(0).cpu().numpy()
        return result

    def blend_mask(self, frame_rgb: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.float32]:
        """The reference's mask for a generated face pasted at ``box`` in ``frame_rgb``."""
        square, _ = expanded_box(box)
        region = parsing_region(
            self.classes(crop_padded(frame_rgb, square)), self.mode, self.left, self.right
        )
        return mask_from_region(region, box)
