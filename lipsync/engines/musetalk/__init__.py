"""The MuseTalk 1.5 engine: single-step latent inpainting of a 256x256 face crop.

The published weights (TMElyralab/MuseTalk, code MIT, weights usable commercially) load
unchanged from ``models/`` in the layout MuseTalk's README gives; see :mod:`.loaders`.
Its declaration (options, weights files, pre-check) is :mod:`.wing`. ``diffusers`` and
``transformers`` (the ``lipsync[musetalk]`` extra) are imported only when the networks are
loaded, torch only when the engine is: never at ``import lipsync``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lipsync.lazy import lazy_exports

if TYPE_CHECKING:
    from lipsync.engines.musetalk.engine import MuseTalkEngine

__all__ = ["MuseTalkEngine"]
__getattr__ = lazy_exports(__name__, {"MuseTalkEngine": ".engine"})
