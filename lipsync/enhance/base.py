"""The enhancer interface: improves a generated patch before it is composited."""

from __future__ import annotations

from abc import ABC, abstractmethod

from lipsync.types import FaceObs, Patch, RGBImage


class Enhancer(ABC):
    name: str = ""

    @abstractmethod
    def enhance(self, frame: RGBImage, patch: Patch, face: FaceObs) -> Patch:
        """Return an improved patch (same position and size)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
