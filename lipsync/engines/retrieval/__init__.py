"""``retrieval``: photoreal and weight-free; the mouths come from the person's own frames.

In the spirit of Video Rewrite (Bregler, Covell, Slaney, SIGGRAPH 1997): instead of
drawing a mouth, re-use one the input video already shows, with this person's real lips
and teeth in this lighting.

1. **Index** (:mod:`.index`, :mod:`.geometry`, :mod:`.look`; once per job in
   :meth:`RetrievalEngine.prepare_source`): pose- and scale-normalised mouth geometry of
   every source frame; crops and appearance descriptors of a bounded candidate set.
2. **Target shapes** from the new speech (:mod:`.calibrate`):
   :func:`lipsync.audio.visemes.analyse` gives the opening and spreading per output frame;
   they are mapped onto this person's range of mouth shapes. When the video has its own
   speech, the mapping is calibrated on the person's own audio/video pairs: a quantile map
   from speech opening to this person's lip gap, and a small ridge regression over audio
   features that is used only when blocked cross-validation shows it predicts better. The
   wanted opening is scaled by the vowel's openness (first-formant height: open vowels
   wider, close vowels and p/b/m near shut) and smoothed over about a frame, keeping every
   closure.
3. **Choice** (:mod:`.plan`, :mod:`.pose`) of a source mouth per output frame by Viterbi
   over a few candidates per frame: shape match against continuity (playing the source
   forward is free, holding or stepping back costs a little, a jump costs more the more
   the two mouths look different). The head pose of the frame being rendered joins the
   cost batch by batch, with the rest of the sequence summarised by a backward pass
   (cost-to-go).
4. **Rendering** (:mod:`.render`, :mod:`.align`, :mod:`.blend`): the chosen mouth crop is
   mapped onto the face by the similarity that aligns the two frames' rigid points (eye
   corners, nose), refined by registering the nose base and the skin beside it (ECC: a
   rotation and shift, sub-pixel); where the wanted opening differs a little from the
   chosen mouth's, its lips are opened or closed the rest of the way by a small warp. The
   target frame's lower face is warped (the viseme engine's warp, by the outer lips and
   the jaw: the inside of the mouth is painted over, and the closed inner lips as warp
   points bent the field into the chin) so its own lips and jaw take that geometry,
   leaving no trace of its old mouth; the crop's colour and lighting are matched to the
   target on a ring of skin around the mouth (a per-channel gain that may vary linearly
   across the face, filtered over time while a source run plays on), and it is blended
   with a feathered ellipse from under the nose to above the chin.

Still images and videos without enough mouth variety fall back to the ``viseme`` engine;
:meth:`RetrievalEngine.info` says which path ran and why.

Every number the stages use is a field of :class:`RetrievalTuning` (:mod:`.tuning`); the
engine takes one (``RetrievalEngine(ctx, tuning=...)``, default :data:`DEFAULT_TUNING`).
The engine class itself is in :mod:`.engine` (imported when first used), its declaration
in :mod:`.wing`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lipsync.lazy import lazy_exports

if TYPE_CHECKING:
    from lipsync.engines.retrieval.engine import RetrievalEngine
    from lipsync.engines.retrieval.tuning import DEFAULT_TUNING, RetrievalTuning

__all__ = ["DEFAULT_TUNING", "RetrievalEngine", "RetrievalTuning"]
__getattr__ = lazy_exports(
    __name__,
    {"RetrievalEngine": ".engine", "DEFAULT_TUNING": ".tuning", "RetrievalTuning": ".tuning"},
)
