"""The MuseTalk 1.5 engine: single-step latent inpainting of a 256x256 face crop.

The published weights (TMElyralab/MuseTalk, code MIT, weights usable commercially) load
unchanged from ``models/`` in the layout MuseTalk's README gives; see :mod:`.loaders`.
``diffusers`` and ``transformers`` (the ``lipsync[musetalk]`` extra) are imported only when
the networks are loaded, never at ``import lipsync``.
"""

from __future__ import annotations

from lipsync.engines.musetalk.engine import MuseTalkEngine

__all__ = ["MuseTalkEngine"]
