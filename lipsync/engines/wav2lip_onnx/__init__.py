"""The ``wav2lip-onnx`` engine: the Wav2Lip generator exported to ONNX, on onnxruntime.

* :mod:`.wing`: its declaration (the exports it loads, the options it reads).
* :mod:`.engine`: :class:`Wav2LipOnnxEngine` (imported when the engine is built); the rest of
  the job flow is ``wav2lip``'s (:mod:`lipsync.engines.wav2lip.common`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lipsync.lazy import lazy_exports

if TYPE_CHECKING:
    from lipsync.engines.wav2lip_onnx.engine import Wav2LipOnnxEngine

__all__ = ["Wav2LipOnnxEngine"]
__getattr__ = lazy_exports(__name__, {"Wav2LipOnnxEngine": ".engine"})
