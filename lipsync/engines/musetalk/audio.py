"""MuseTalk's speech features: whisper-tiny encoder states cut into per-frame windows.

Follows the reference (``musetalk/utils/audio_processor.py``) step for step:

* the 16 kHz speech is cut into 30 s segments; each goes through the Whisper feature
  extractor (log-mel, padded to 30 s) and the Whisper encoder, keeping *every* hidden
  state (the embeddings and each layer: 5 for whisper-tiny), stacked on a layer axis;
* the segments' 1500 states each (50 Hz) are concatenated and cut to the speech's length,
  ``floor(seconds * 50)``;
* zeros are put in front (``ceil(50 / fps) * 2`` states) and behind
  (``ceil(50 / fps) * 3 * 2``), and output frame ``i`` takes the 10 states from
  ``floor(i * 50 / fps)`` on: 2 frames of context each side at 25 fps;
* a window ``(10, layers, 384)`` is flattened time-major to ``(10 * layers, 384)``, the
  UNet's cross-attention sequence (50 tokens for whisper-tiny).

Where a job has more frames than the reference would make from the speech, the further
windows continue the same zero padding. The positional encoding the reference adds before
the UNet is :func:`positional_encoding` (applied in the engine, not part of the chunks).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
SEGMENT_SECONDS = 30
AUDIO_FPS = 50  # Whisper encoder states per second
PAD_LEFT = 2  # frames of context before (the reference's audio_padding_length_left)
PAD_RIGHT = 2  # and after


def window_length(left: int = PAD_LEFT, right: int = PAD_RIGHT) -> int:
    """Encoder states per output frame: ``2 * (left + right + 1)`` (10)."""
    return 2 * (left + right + 1)


def segments(audio16k: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    """The speech cut into 30 s pieces (the last one shorter); one empty piece for no audio."""
    step = SEGMENT_SECONDS * SAMPLE_RATE
    audio = np.asarray(audio16k, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        return [audio]
    return [audio[i : i + step] for i in range(0, audio.size, step)]


def input_features(extractor: Any, audio16k: npt.NDArray[np.float32]) -> list[Any]:
    """Whisper log-mel inputs ``(1, 80, 3000)`` (torch), one per 30 s segment."""
    return [
        extractor(seg, return_tensors="pt", sampling_rate=SAMPLE_RATE).input_features
        for seg in segments(audio16k)
    ]


def encoder_states(encoder: Any, features: list[Any], device: str, dtype: Any) -> Any:
    """All hidden states of the encoder for each segment, concatenated in time:
    a float32 torch tensor ``(T, layers, dim)`` with ``T = 1500 * segments``."""
    import torch

    out = []
    with torch.inference_mode():
        for feat in features:
            states = encoder(feat.to(device).to(dtype), output_hidden_states=True).hidden_states
            out.append(torch.stack(states, dim=2)[0].float().cpu())
    return torch.cat(out, dim=0)


def frame_windows(
    states: npt.NDArray[np.float32],
    n_samples: int,
    fps: float,
    n_frames: int,
    left: int = PAD_LEFT,
    right: int = PAD_RIGHT,
) -> npt.NDArray[np.float32]:
    """Per-frame windows ``(n_frames, window_length * layers, dim)`` of encoder ``states``
    ``(T, layers, dim)`` for speech of ``n_samples`` samples, as the reference cuts them."""
    states = np.asarray(states, dtype=np.float32)
    _, layers, dim = states.shape
    per_frame = window_length(left, right)
    multiplier = AUDIO_FPS / fps
    actual = math.floor((n_samples / SAMPLE_RATE) * AUDIO_FPS)
    trimmed = states[:actual]
    pad = math.ceil(multiplier)
    front = pad * left
    back = pad * 3 * right
    starts = [math.floor(i * multiplier) for i in range(n_frames)]
    # The reference's padded sequence, extended with zeros where later frames need more.
    need = max([front + trimmed.shape[0] + back] + [s + per_frame for s in starts])
    padded = np.zeros((need, layers, dim), dtype=np.float32)
    padded[front : front + trimmed.shape[0]] = trimmed
    out = np.empty((n_frames, per_frame * layers, dim), dtype=np.float32)
    for i, s in enumerate(starts):
        out[i] = padded[s : s + per_frame].reshape(per_frame * layers, dim)
    return out


def positional_encoding(length: int, dim: int) -> npt.NDArray[np.float32]:
    """The sinusoidal encoding the reference adds to the audio tokens, ``(length, dim)``:
    ``sin`` on even, ``cos`` on odd channels, frequencies ``10000 ** (-2i / dim)``."""
    import torch

    position = torch.arange(0, length, dtype=torch.float).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    result: npt.NDArray[np.float32] = pe.numpy()
    return result
