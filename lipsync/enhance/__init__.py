"""Enhancers: ``none``, ``classical`` (weight-free default) and ``onnx:PATH``."""

from __future__ import annotations

from pathlib import Path

from lipsync.enhance.base import Enhancer
from lipsync.errors import InvalidOption

#: Built-in enhancers: name -> what it does, declared with the ``enhancer`` option.
#: ``onnx:PATH`` (a 512x512 face restorer) is the one open-ended form (:data:`ONNX_PREFIX`).
from lipsync.options import ENHANCERS as ENHANCERS

ONNX_PREFIX = "onnx:"


def create_enhancer(spec: str, device: str = "auto") -> Enhancer | None:
    """``none`` -> None; ``classical``; ``onnx:/path/model.onnx`` (512x512 face restorer)."""
    if spec in ("", "none"):
        return None
    if spec == "classical":
        from lipsync.enhance.classical import ClassicalEnhancer

        return ClassicalEnhancer()
    if spec.startswith(ONNX_PREFIX):
        from lipsync.enhance.onnx_restorer import OnnxFaceRestorer

        return OnnxFaceRestorer(Path(spec.removeprefix(ONNX_PREFIX)), device=device)
    raise InvalidOption(f"unknown enhancer {spec!r}; use none, classical or onnx:PATH")
