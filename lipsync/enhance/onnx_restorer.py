"""Face restoration with a user-supplied 512x512 ONNX model (GFPGAN, CodeFormer, GPEN, ...).

The usual FFHQ pipeline: the face is aligned to the FFHQ 512 five-point template (eye
centres, nose tip, mouth corners, from the 68 landmarks) with a similarity transform,
restored (RGB in [-1, 1] -> RGB in [-1, 1]), warped back and blended into the patch with a
feathered mask. The alignment crop is taken from the frame with the patch pasted in, so
the restorer sees the generated mouth in its real surroundings.

Models with extra scalar inputs get 0.5 there (CodeFormer's fidelity ``weight``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lipsync.device import onnx_session
from lipsync.enhance.base import Enhancer
from lipsync.errors import ModelMismatch, ModelMissing
from lipsync.types import FaceObs, Patch, RGBImage

FACE_SIZE = 512
# FFHQ 512x512 template: left eye, right eye (image left/right), nose tip, mouth corners.
FFHQ_512_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)
SCALAR_INPUT_VALUE = 0.5
_EDGE = 24  # feather margin of the blend mask, in 512-crop pixels

_NP_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def five_points(landmarks: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Eye centres (36..41, 42..47), nose tip (30), mouth corners (48, 54) from 68 points."""
    lm = np.asarray(landmarks, dtype=np.float32)
    return np.stack(
        [lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]]
    ).astype(np.float32)


def _dims(shape: list[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


class OnnxFaceRestorer(Enhancer):
    """Any 1x3x512x512 face-restoration ONNX model, aligned on the FFHQ template."""

    name = "onnx"

    def __init__(self, path: Path, device: str = "auto") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelMissing(
                f"face restorer {self.path} not found: put the .onnx file under models/ "
                "(see models/README.md) and pass --enhancer onnx:models/NAME.onnx"
            )
        self._session = onnx_session(self.path, device)
        self._image_input, self._dtype, self._extra = self._map_inputs()
        self._output = self._session.get_outputs()[0].name
        self._blend_mask = self._make_blend_mask()

    def _map_inputs(self) -> tuple[str, type[np.generic], dict[str, npt.NDArray[Any]]]:
        image: str | None = None
        dtype: type[np.generic] = np.float32
        extra: dict[str, npt.NDArray[Any]] = {}
        for arg in self._session.get_inputs():
            dims = _dims(list(arg.shape))
            arg_type = _NP_TYPES.get(arg.type, np.float32)
            if len(dims) == 4 and image is None:
                want = (3, FACE_SIZE, FACE_SIZE)
                if dims[0] not in (None, 1) or any(
                    d is not None and d != x for d, x in zip(dims[1:], want, strict=True)
                ):
                    raise ModelMismatch(
                        f"{self.path.name} takes input {list(arg.shape)}; a face restorer "
                        "must take 1x3x512x512"
                    )
                image, dtype = arg.name, arg_type
            elif len(dims) <= 1 and all(d in (None, 1) for d in dims):
                value = np.full([1] * len(dims), SCALAR_INPUT_VALUE)
                extra[arg.name] = value.astype(arg_type)
            else:
                raise ModelMismatch(
                    f"{self.path.name} has an unexpected input {arg.name}{list(arg.shape)}; "
                    "a face restorer takes one 1x3x512x512 image (plus optional scalars)"
                )
        if image is None:
            raise ModelMismatch(f"{self.path.name} has no 1x3x512x512 image input")
        return image, dtype, extra

    @staticmethod
    def _make_blend_mask() -> npt.NDArray[np.float32]:
        mask = np.zeros((FACE_SIZE, FACE_SIZE), dtype=np.float32)
        mask[_EDGE:-_EDGE, _EDGE:-_EDGE] = 1.0
        return np.asarray(cv2.GaussianBlur(mask, (0, 0), _EDGE / 2.5), dtype=np.float32)

    def restore(self, crop: RGBImage) -> RGBImage:
        """Run the model on one aligned 512x512 RGB crop."""
        x = crop.astype(np.float32) / 127.5 - 1.0
        feed = {self._image_input: x.transpose(2, 0, 1)[None].astype(self._dtype), **self._extra}
        out = np.asarray(self._session.run([self._output], feed)[0])
        if out.shape != (1, 3, FACE_SIZE, FACE_SIZE):
            raise ModelMismatch(
                f"{self.path.name} returned shape {list(out.shape)}; expected 1x3x512x512"
            )
        y = (np.clip(out[0].astype(np.float32), -1.0, 1.0) + 1.0) * 127.5
        return np.rint(y.transpose(1, 2, 0)).astype(np.uint8)

    def enhance(self, frame: RGBImage, patch: Patch, face: FaceObs) -> Patch:
        lm = np.asarray(face.landmarks, dtype=np.float32)
        if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
            return patch
        matrix, _ = cv2.estimateAffinePartial2D(
            five_points(lm), FFHQ_512_TEMPLATE, method=cv2.LMEDS
        )
        if matrix is None:
            return patch
        # The frame with the generated patch in place, then the aligned face crop.
        h, w = patch.image.shape[:2]
        fh, fw = frame.shape[:2]
        x1, y1 = max(patch.x1, 0), max(patch.y1, 0)
        x2, y2 = min(patch.x1 + w, fw), min(patch.y1 + h, fh)
        if x2 <= x1 or y2 <= y1:
            return patch
        canvas = frame.copy()
        canvas[y1:y2, x1:x2] = patch.image[
            y1 - patch.y1 : y2 - patch.y1, x1 - patch.x1 : x2 - patch.x1
        ]
        crop = np.asarray(
            cv2.warpAffine(
                canvas,
                matrix,
                (FACE_SIZE, FACE_SIZE),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            ),
            dtype=np.uint8,
        )
        restored = self.restore(crop)

        # Back into patch coordinates: invert, then shift by the patch origin.
        back = cv2.invertAffineTransform(matrix)
        back[:, 2] -= (patch.x1, patch.y1)
        warped = cv2.warpAffine(restored, back, (w, h), flags=cv2.INTER_LINEAR)
        weight = cv2.warpAffine(self._blend_mask, back, (w, h), flags=cv2.INTER_LINEAR)
        weight = np.clip(weight, 0.0, 1.0)[..., None]
        blended = patch.image.astype(np.float32) * (1.0 - weight) + warped * weight
        image = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return Patch(patch.x1, patch.y1, image, mask=patch.mask, upscale=patch.upscale)

    def close(self) -> None:
        self._session = None
