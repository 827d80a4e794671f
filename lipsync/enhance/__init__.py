"""Enhancers: ``none``, ``classical`` (weight-free default) and ``onnx:PATH``."""

from __future__ import annotations

from pathlib import Path

from lipsync.enhance.base import Enhancer
from lipsync.errors import InvalidOption

ENHANCER_CHOICES = ("none", "classical", "onnx:PATH")


def create_enhancer(spec: str, device: str = "auto") -> Enhancer | None:
    """``none`` -> None; ``classical``; ``onnx:/path/model.onnx`` (512x512 face restorer)."""
    if spec in ("", "none"):
        return None
    if spec == "classical":
        from lipsync.enhance.classical import ClassicalEnhancer

        return ClassicalEnhancer()
    if spec.startswith("onnx:"):
        from lipsync.enhance.onnx_restorer import OnnxFaceRestorer

        return OnnxFaceRestorer(Path(spec[len("onnx:") :]), device=device)
    raise InvalidOption(f"unknown enhancer {spec!r}; use none, classical or onnx:PATH")
