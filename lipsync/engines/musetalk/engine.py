"""The ``musetalk`` engine: MuseTalk 1.5 through the project's pipeline.

Per batch, as the reference's ``scripts/inference.py`` does per frame: the face crop
(:mod:`.face`) goes through the VAE encoder twice (lower half masked, and whole); the two
latents, scaled by the VAE's ``scaling_factor``, are stacked into 8 channels; the UNet runs
once at timestep 0 with the frame's audio window (plus the positional encoding) as
cross-attention; its output latent is decoded by the VAE, resized back to the crop box and
pasted by the project's compositor with a feathered mouth-and-jaw mask.

Latents: the reference draws a sample of the VAE's posterior; this engine takes its mean
(``latents="mean"``, deterministic, the reference's training-time choice) unless built
with ``latents="sample"``, which draws from a per-job seeded generator. For the published
ft-MSE VAE the posterior's spread is tiny, so both give the same faces to the eye.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from lipsync.engines.musetalk.loaders import UNET_WEIGHTS, MuseTalkModels, load_models
from lipsync.errors import InvalidOption, ModelMissing
from lipsync.types import EngineReport, FaceObs, Patch, RGBImage


class MuseTalkRunner:
    """The networks on a device, and the reference's computation on arrays: whisper chunks
    from speech, generated 256x256 faces from crops and chunks."""

    def __init__(
        self,
        models: MuseTalkModels,
        device: str = "cpu",
        fp16: bool = False,
        latents: str = "mean",
        seed: int = 0,
    ) -> None:
        if latents not in ("mean", "sample"):
            raise InvalidOption(f"latents must be 'mean' or 'sample', got {latents!r}")
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
        """Start a job: the latent sampler (``latents="sample"``) restarts from its seed."""
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

    def _encode(self, images: npt.NDArray[np.float32]) -> torch.Tensor:
        x = torch.from_numpy(images).to(device=self.device, dtype=self.dtype)
        dist = self.vae.encode(x).latent_dist
        if self.latents == "sample":
            if self._generator is None:
                self._generator = torch.Generator(device=self.device).manual_seed(self.seed)
            latent = dist.sample(generator=self._generator)
        else:
            latent = dist.mode()
        return self.scaling * latent

    def generate_faces(
        self, crops: npt.NDArray[np.uint8], chunks: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.uint8]:
        """Generated faces ``(N, 256, 256, 3)`` RGB uint8 for RGB crops ``(N, 256, 256, 3)``
        and whisper chunks ``(N, 50, 384)`` (one batch through the networks)."""
        masked, whole = mt_face.vae_images(crops)
        with torch.inference_mode():
            latents = torch.cat([self._encode(masked), self._encode(whole)], dim=1)
            audio = torch.from_numpy(np.ascontiguousarray(chunks)).to(self.device, self.dtype)
            audio = audio + self._positional(audio.shape[1])
            timesteps = torch.tensor([0], device=self.device)
            pred = self.unet(latents.to(self.dtype), timesteps, encoder_hidden_states=audio).sample
            image = self.vae.decode((1 / self.scaling) * pred).sample
            image = (image / 2 + 0.5).clamp(0, 1)
            out = image.float().cpu().numpy()
        return mt_face.decoded_to_uint8(out)


class MuseTalkEngine(Engine):
    """MuseTalk 1.5 (UNet + sd-vae + whisper-tiny) on CPU, or CUDA with optional fp16."""

    name = "musetalk"

    def __init__(
        self,
        ctx: EngineContext,
        *,
        bbox_shift: int = mt_face.BBOX_SHIFT,
        extra_margin: int = mt_face.EXTRA_MARGIN,
        latents: str = "mean",
    ) -> None:
        self.ctx = ctx
        self.device = resolve_device(ctx.device)
        self.fp16 = self.device == "cuda" and ctx.fp16
        self.batch_size = max(1, int(ctx.batch_size))
        self.bbox_shift = int(bbox_shift)
        self.extra_margin = int(extra_margin)
        self.models_dir = Path(ctx.models_dir)
        unet_weights: Path | None = None
        if ctx.checkpoint is not None:
            unet_weights = Path(ctx.checkpoint)
            if not unet_weights.is_file():
                raise ModelMissing(
                    f"checkpoint {unet_weights} for engine musetalk not found (the UNet "
                    f"weights, by default {UNET_WEIGHTS} under models/; see models/README.md)"
                )
        if self.device == "cpu":
            threads = min(torch.get_num_threads(), cpu_threads())
            if threads > 0 and torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        self.unet_weights = unet_weights or self.models_dir / UNET_WEIGHTS
        models = load_models(self.models_dir, unet_weights)
        self.runner = MuseTalkRunner(models, self.device, self.fp16, latents)
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
        boxes = [
            mt_face.crop_box(
                face, frame.shape[1], frame.shape[0], self.bbox_shift, self.extra_margin
            )
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
        patches = []
        for image, face, box in zip(generated, faces, boxes, strict=True):
            x1, y1, x2, y2 = box
            resized = cv2.resize(image, (x2 - x1, y2 - y1))
            if resized.ndim == 2:
                resized = resized.reshape(y2 - y1, x2 - x1, 3)
            upscale = max(x2 - x1, y2 - y1) / mt_face.CROP
            patches.append(
                Patch(x1, y1, resized, mask=mt_face.paste_mask(face, box), upscale=upscale)
            )
        return patches

    def report(self) -> EngineReport:
        return EngineReport(self.name, details=self._details())

    def _details(self) -> dict[str, Any]:
        return {
            "frames": self._frames_done,
            "checkpoint": str(self.unet_weights.name),
            "device": self.device,
            "fp16": self.fp16,
        }

    def close(self) -> None:
        if hasattr(self, "runner"):
            del self.runner
        if self.device == "cuda":
            torch.cuda.empty_cache()
