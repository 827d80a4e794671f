"""Face stage: detect, 68-point landmarks, track, smooth, choose."""

from __future__ import annotations

#: Face box detectors: name -> what it is, declared with the detector option.
from lipsync.options import DETECTORS as DETECTORS
