"""``viseme``: the weight-free engine.

Mouth shapes come from the speech itself (:mod:`lipsync.audio.visemes`); the person's own
mouth is re-shaped by a landmark-driven warp of the lower face (lips, mouth corners and
jaw move together, the chin drops as the mouth opens) and, where the mouth opens wider than
the source frame shows, the inside of the mouth is drawn in: dark cavity, upper teeth
under the lip, lower teeth and tongue when wide open, shaded to the face's lighting.

* :mod:`.shape`: where the lips, corners and jaw go; the inner-lip gap.
* :mod:`.warp`: the lower-face warp and the soft region mask it is confined to.
* :mod:`.close`: closing an open mouth by moving its real lips.
* :mod:`.seal`: lips shown where the warp squeezed an open mouth shut.
* :mod:`.interior`: the inside of the mouth, drawn or the person's own moved.
* :mod:`.engine`: :class:`VisemeEngine`, which the ``retrieval`` engine also uses.
* :mod:`.wing`: its declaration; the modules above are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lipsync.lazy import lazy_exports

if TYPE_CHECKING:
    from lipsync.engines.viseme.engine import VisemeEngine
    from lipsync.engines.viseme.shape import (
        CLOSE_MIN,
        CLOSE_OPEN,
        CORNERS,
        GAP_FLOOR,
        GAP_MAX,
        INNER_PAIRS,
        JAW,
        LOWER,
        UPPER,
        UPPER_SHARE,
        inner_gap,
        open_mouth,
    )
    from lipsync.engines.viseme.warp import LowerFaceWarp

__all__ = [
    "CLOSE_MIN",
    "CLOSE_OPEN",
    "CORNERS",
    "GAP_FLOOR",
    "GAP_MAX",
    "INNER_PAIRS",
    "JAW",
    "LOWER",
    "UPPER",
    "UPPER_SHARE",
    "LowerFaceWarp",
    "VisemeEngine",
    "inner_gap",
    "open_mouth",
]
__getattr__ = lazy_exports(
    __name__,
    {
        **{name: ".shape" for name in __all__ if name not in ("LowerFaceWarp", "VisemeEngine")},
        "LowerFaceWarp": ".warp",
        "VisemeEngine": ".engine",
    },
)
