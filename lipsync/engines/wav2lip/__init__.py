"""The ``wav2lip`` engine: the published Wav2Lip generator on PyTorch.

* :mod:`.wing`: its declaration (the checkpoints it loads, the options it reads).
* :mod:`.engine`: :class:`Wav2LipEngine` (torch, imported when the engine is built).
* :mod:`.common`: what it shares with ``wav2lip-onnx`` (pre- and post-processing, the flow).
* :mod:`.net`: the network, layer for layer as published; :mod:`.export`: ``.pth`` / ONNX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lipsync.lazy import lazy_exports

if TYPE_CHECKING:
    from lipsync.engines.wav2lip.engine import Wav2LipEngine, load_generator

__all__ = ["Wav2LipEngine", "load_generator"]
__getattr__ = lazy_exports(__name__, {"Wav2LipEngine": ".engine", "load_generator": ".engine"})
