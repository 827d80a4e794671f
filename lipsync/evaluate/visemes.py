"""Viseme contrast for English speech: the mouth should be open on open vowels and shut on
p/b/m. Phones and their times come from PocketSphinx's bundled US-English acoustic model
in all-phone mode (``en-us-phone.lm.bin``, a phone bigram model: no dictionary, no words).

The contrast is the mean aperture on open-vowel frames (AA AE AH AO AW AY) minus the mean on
bilabial frames (P B M), in face heights. Phone recognition without words is rough (many
phones are wrong), so read the number as a trend over a clip, and only for English.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})
BILABIALS = frozenset({"P", "B", "M"})
MIN_FRAMES = 2


@dataclass(frozen=True)
class Phone:
    phone: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class VisemeResult:
    open_vowel_aperture: float | None
    bilabial_aperture: float | None
    contrast: float | None  # open - bilabial; None when either has too few frames
    open_vowel_frames: int
    bilabial_frames: int
    phones: int
    note: str = "PocketSphinx en-us all-phone; meaningful for English speech only"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recognise_phones(audio16k: npt.NDArray[np.float32]) -> list[Phone]:
    """Phones with times from PocketSphinx's bundled en-us model (all-phone decoding)."""
    import pocketsphinx

    model = pocketsphinx.get_model_path()
    config = pocketsphinx.Config(
        hmm=os.path.join(model, "en-us", "en-us"),
        allphone=os.path.join(model, "en-us", "en-us-phone.lm.bin"),
        lw=2.0,
        beam=1e-20,
        pbeam=1e-20,
        loglevel="FATAL",
    )
    decoder = pocketsphinx.Decoder(config)
    frate = float(decoder.config["frate"] or 100)
    pcm = (np.clip(audio16k, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    return [
        Phone(seg.word, seg.start_frame / frate, (seg.end_frame + 1) / frate)
        for seg in decoder.seg()
    ]


def viseme_contrast(
    aperture: npt.NDArray[np.float32], phones: list[Phone], fps: float
) -> VisemeResult:
    t = (np.arange(aperture.size) + 0.5) / fps
    open_mask = np.zeros(aperture.size, bool)
    lab_mask = np.zeros(aperture.size, bool)
    for p in phones:
        sel = (t >= p.start_s) & (t < p.end_s)
        if p.phone in OPEN_VOWELS:
            open_mask |= sel
        elif p.phone in BILABIALS:
            lab_mask |= sel
    valid = ~np.isnan(aperture)
    open_mask &= valid
    lab_mask &= valid
    o = float(np.mean(aperture[open_mask])) if open_mask.sum() >= MIN_FRAMES else None
    b = float(np.mean(aperture[lab_mask])) if lab_mask.sum() >= MIN_FRAMES else None
    contrast = None if o is None or b is None else round(o - b, 4)
    return VisemeResult(
        None if o is None else round(o, 4),
        None if b is None else round(b, 4),
        contrast,
        int(open_mask.sum()),
        int(lab_mask.sum()),
        len(phones),
    )
