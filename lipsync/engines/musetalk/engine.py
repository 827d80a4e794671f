"""The ``musetalk`` engine: MuseTalk 1.5 through the project's pipeline.

Per batch, as the reference's ``scripts/inference.py`` does per frame: the face crop
(:mod:`.face`) goes through the VAE encoder twice (lower half masked, and whole); the two
latents, scaled by the VAE's ``scaling_factor``, are stacked into 8 channels; the UNet runs
once at timestep 0 with the frame's audio window (plus the positional encoding) as
cross-attention; its output latent is decoded by the VAE, resized back to the crop box and
pasted by the project's compositor. The paste mask is the reference's face-parsing mask
(:mod:`.blendmask`, ``parsing_mode`` jaw) when ``face-parse-bisent/79999_iter.pth`` is in
``models/``, else a feathered landmark mask of the mouth and jaw (:func:`.face.paste_mask`).

Latents: like the reference's inference (``VAE.encode_latents``), each crop's posterior is
*sampled* (``latents="sample"``), the noise drawn crop by crop, masked crop first, in the
reference's shapes and order. The draws come from a generator seeded with ``seed`` at each
job's start, so a job renders the same twice; ``torch.Generator().manual_seed(s)`` gives the
same numbers as a reference run after ``torch.manual_seed(s)`` (on CPU), and ``seed=None``
draws from torch's global generator exactly as the reference's ``sample()`` does.
``latents="mean"`` takes the posterior's mean instead (what MuseTalk's training code uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch

from lipsync.device import cpu_threads, resolve_device
from lipsync.engines.base import Engine, EngineContext, batch_length
from lipsync.engines.musetalk import audio as mt_audio
from lipsync.engines.musetalk import face as mt_face
from lipsync.engines.musetalk.blendmask import FaceParser
from lipsync.engines.musetalk.loaders import UNET_WEIGHTS, MuseTalkModels, load_models
from lipsync.engines.musetalk.parsing import MODES, load_parser
from lipsync.engines.musetalk.wing import MuseTalkOptions, precheck
from lipsync.errors import InvalidOption
from lipsync.types import EngineReport, FaceObs, Patch, RGBImage

LATENTS = ("sample", "mean")


class MuseTalkRunner:
    """The networks on a device, and the reference's computation on arrays: whisper chunks
    from speech, generated 256x256 faces from crops and chunks."""

    def __init__(
        self,
        models: MuseTalkModels,
        device: str = "cpu",
        fp16: bool = False,
        latents: str = "sample",
        seed: int | None = 0,
    ) -> None:
        if latents not in LATENTS:
            raise InvalidOption(f"latents must be one of {', '.join(LATENTS)}, got {latents!r}")
        self.device = device
        self.dtype = torch.float16 if fp16 else torch.float32
        self.latents = latents
        self.seed = seed
        # Loaded in float32; halved only for fp16 (as the reference's ``.half()``).
        self.unet = models.unet.to(device)
        self.vae = models.vae.to(device)
        self.whisper = models.whisper.to(device)
        if fp16:
            self.unet, self.vae, self.whisper = (
                self.unet.half(),
                self.vae.half(),
                self.whisper.half(),
            )
        self.extractor = models.extractor
        self.scaling = float(models.vae.config.scaling_factor)
        self.audio_dim = models.audio_dim
        self._generator: torch.Generator | None = None
        self._pe: dict[int, torch.Tensor] = {}

    def reset(self) -> None:
        """Start a job: the latent sampler restarts from its seed."""
        self._generator = None

    def whisper_chunks(
        self, audio16k: npt.NDArray[np.float32], fps: float, n_frames: int
    ) -> npt.NDArray[np.float32]:
        """``(n_frames, 50, 384)`` audio windows (the reference's ``get_whisper_chunk``)."""
        features = mt_audio.input_features(self.extractor, audio16k)
        states = mt_audio.encoder_states(self.whisper, features, self.device, self.dtype)
        return mt_audio.frame_windows(states.numpy(), int(np.asarray(audio16k).size), fps, n_frames)

    def _positional(self, length: int) -> torch.Tensor:
        pe = self._pe.get(length)
        if pe is None:
            pe = torch.from_numpy(mt_audio.positional_encoding(length, self.audio_dim))
            pe = pe.to(device=self.device, dtype=self.dtype)
            self._pe[length] = pe
        return pe

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """One draw of the posterior's noise, as ``DiagonalGaussianDistribution.sample``
        makes it (``randn`` in the latents' shape, device and dtype)."""
        if self.seed is not None and self._generator is None:
            self._generator = torch.Generator(device=self.device).manual_seed(self.seed)
        return torch.randn(shape, generator=self._generator, device=self.device, dtype=self.dtype)

    def latent_input(
        self, masked: npt.NDArray[np.float32], whole: npt.NDArray[np.float32]
    ) -> torch.Tensor:
        """The UNet's 8-channel input ``(N, 8, h, w)``: the scaled latents of the masked and
        the whole crops (``VAE.get_latents_for_unet`` for each crop)."""
        with torch.inference_mode():
            dists = [
                self.vae.encode(torch.from_numpy(x).to(self.device, self.dtype)).latent_dist
                for x in (masked, whole)
            ]
            if self.latents == "mean":
                parts = [d.mode() for d in dists]
            else:  # per crop: the masked crop's draw, then the whole crop's
                one = (1, *dists[0].mean.shape[1:])
                noise = [[self._noise(one) for _ in dists] for _ in range(masked.shape[0])]
                parts = [
                    d.mean + d.std * torch.cat([n[k] for n in noise], dim=0)
                    for k, d in enumerate(dists)
                ]
            return torch.cat([self.scaling * p for p in parts], dim=1)

    def generate_faces(
        self, crops: npt.NDArray[np.uint8], chunks: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.uint8]:
        """Generated faces ``(N, 256, 256, 3)`` RGB uint8 for RGB crops ``(N, 256, 256, 3)``
        and whisper chunks ``(N, 50, 384)`` (one batch through the networks)."""
        latents = self.latent_input(*mt_face.vae_images(crops))
        with torch.inference_mode():
            audio = torch.from_numpy(np.ascontiguousarray(chunks)).to(self.device, self.dtype)
            audio = audio + self._positional(audio.shape[1])
            timesteps = torch.tensor([0], device=self.device)
            pred = self.unet(latents.to(self.dtype), timesteps, encoder_hidden_states=audio).sample
            image = self.vae.decode((1 / self.scaling) * pred).sample
            image = (image / 2 + 0.5).clamp(0, 1)
            out = image.float().cpu().numpy()
        return mt_face.decoded_to_uint8(out)


@dataclass(frozen=True)
class MuseTalkSettings(MuseTalkOptions):
    """The engine's own options (declared in its wing, :class:`.wing.MuseTalkOptions`, with
    the v1.5 scripts' defaults), and how the latents are drawn."""

    latents: str = "sample"
    seed: int | None = 0

    @classmethod
    def from_context(cls, ctx: EngineContext, **overrides: Any) -> MuseTalkSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(ctx.options).items() if k in known}
        settings = cls(**{**values, **overrides})
        if settings.parsing_mode not in MODES:
            raise InvalidOption(
                f"parsing_mode must be one of {', '.join(MODES)}, got {settings.parsing_mode!r}"
            )
        return settings


class MuseTalkEngine(Engine):
    """MuseTalk 1.5 (UNet + sd-vae + whisper-tiny) on CPU, or CUDA with optional fp16; the
    face-parsing BiSeNet for the paste mask when its weights are present."""

    name = "musetalk"

    def __init__(self, ctx: EngineContext, **overrides: Any) -> None:
        self.ctx = ctx
        self.settings = MuseTalkSettings.from_context(ctx, **overrides)
        self.device = resolve_device(ctx.device)
        self.fp16 = self.device == "cuda" and ctx.fp16
        self.batch_size = max(1, int(ctx.batch_size))
        self.models_dir = Path(ctx.models_dir)
        precheck(ctx)
        unet_weights = Path(ctx.checkpoint) if ctx.checkpoint is not None else None
        if self.device == "cpu":
            threads = min(torch.get_num_threads(), cpu_threads())
            if threads > 0 and torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        self.unet_weights = unet_weights or self.models_dir / UNET_WEIGHTS
        models = load_models(self.models_dir, unet_weights)
        st = self.settings
        self.runner = MuseTalkRunner(models, self.device, self.fp16, st.latents, st.seed)
        net = load_parser(self.models_dir)
        self.parser = (
            None
            if net is None
            else FaceParser(
                net.to(self.device),
                self.device,
                st.parsing_mode,
                st.left_cheek_width,
                st.right_cheek_width,
            )
        )
        self._chunks: npt.NDArray[np.float32] | None = None
        self._frames_done = 0

    def prepare(self, audio16k: npt.NDArray[np.float32], fps: float, n_frames: int) -> None:
        self.runner.reset()
        self._chunks = self.runner.whisper_chunks(audio16k, fps, max(int(n_frames), 1))
        self._frames_done = 0

    def audio_batch(self, indices: Sequence[int]) -> npt.NDArray[np.float32]:
        """Whisper chunks for output frame indices (clamped to the job)."""
        if self._chunks is None:
            raise RuntimeError("prepare() must be called before generate()")
        idx = np.clip(np.asarray(indices, dtype=np.int64), 0, len(self._chunks) - 1)
        return np.ascontiguousarray(self._chunks[idx])

    def generate(
        self,
        frames: Sequence[RGBImage],
        faces: Sequence[FaceObs],
        indices: Sequence[int],
    ) -> list[Patch]:
        if not batch_length(frames, faces, indices):
            return []
        chunks = self.audio_batch(indices)
        st = self.settings
        boxes = [
            mt_face.crop_box(face, frame.shape[1], frame.shape[0], st.bbox_shift, st.extra_margin)
            for frame, face in zip(frames, faces, strict=True)
        ]
        crops = mt_face.crop_faces(frames, boxes)
        outputs = [
            self.runner.generate_faces(
                crops[s : s + self.batch_size], chunks[s : s + self.batch_size]
            )
            for s in range(0, len(frames), self.batch_size)
        ]
        generated = np.concatenate(outputs, axis=0)
        self._frames_done += len(frames)
        return [
            self._patch(image, frame, face, box)
            for image, frame, face, box in zip(generated, frames, faces, boxes, strict=True)
        ]

    def _patch(
        self, image: npt.NDArray[np.uint8], frame: RGBImage, face: FaceObs, box: mt_face.Box
    ) -> Patch:
        """The generated face resized to its box (``cv2.resize``'s default, bilinear, as
        the reference) with the paste mask: the parsing mask, or the landmark mask."""
        x1, y1, x2, y2 = box
        resized = np.asarray(cv2.resize(image, (x2 - x1, y2 - y1)), np.uint8)
        if resized.ndim == 2:
            resized = resized.reshape(y2 - y1, x2 - x1, 3)
        if self.parser is not None:
            mask = self.parser.blend_mask(np.asarray(frame, np.uint8), box)
        else:
            mask = mt_face.paste_mask(face, box)
        upscale = max(x2 - x1, y2 - y1) / mt_face.CROP
        return Patch(x1, y1, resized, mask=mask, upscale=upscale)

    def report(self) -> EngineReport:
        return EngineReport(self.name, details=self._details())

    def _details(self) -> dict[str, Any]:
        return {
            "frames": self._frames_done,
            "checkpoint": str(self.unet_weights.name),
            "device": self.device,
            "fp16": self.fp16,
            "latents": self.settings.latents,
            "blend_mask": (
                f"face parsing ({self.settings.parsing_mode})"
                if self.parser is not None
                else "landmarks"
            ),
        }

    def close(self) -> None:
        if hasattr(self, "runner"):
            del self.runner
        if self.device == "cuda":
            torch.cuda.empty_cache()
