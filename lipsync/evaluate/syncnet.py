"""LSE-D and LSE-C: the SyncNet lip-sync error metrics used by Wav2Lip, LatentSync and
MuseTalk, with the ``syncnet_v2.model`` checkpoint of Chung & Zisserman's SyncNet
("Out of time: automated lip sync in the wild", 2016; weights published with
joonson/syncnet_python, MIT).

Written for this project from the published architecture and scoring procedure:

* **Network**: an audio tower (2-D convolutions over a 13 x 20 MFCC window, i.e. 0.2 s) and
  a lip tower (3-D convolutions over 5 consecutive 224 x 224 BGR face crops, i.e. 0.2 s at
  25 fps), each followed by two fully connected layers to a 1024-d embedding. Module names
  match the published state dict (``netcnnaud.0.weight`` ... ``netfclip.3.bias``), so the
  file loads as is; the lip tower takes three colour channels (BGR, 0..255, not normalised),
  as the checkpoint was trained.
* **Inputs**: the video at 25 fps (other rates are resampled by nearest frame time); the
  face crop of the reference pipeline (a square of 2.8 half-box sizes from the box top,
  median-smoothed over 13 frames, padded with grey 110) around this package's CNN face
  boxes enlarged by :data:`BOX_SCALE` to approximate the S3FD boxes the original used;
  audio at 16 kHz on the int16 scale, MFCC with python_speech_features' defaults (25 ms
  rectangular windows every 10 ms, 26 mel filters, 13 coefficients, lifter 22, log energy
  as c0), 4 MFCC frames per video frame.
* **Scoring**: embeddings for every 5-frame window; for each offset in -15..+15 frames the
  mean distance between video window *i* and audio window *i + offset* (zero-padded past the
  ends); LSE-D is the minimum of these means, LSE-C (confidence) is their median minus that
  minimum, and the offset at the minimum is SyncNet's audio/video offset estimate.

Lower LSE-D and higher LSE-C are better. The Wav2Lip paper reports about 6.4 LSE-D and
7.8 LSE-C on LRS2.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from scipy.fft import dct
from scipy.signal import medfilt
from torch import nn

from lipsync.errors import ModelMismatch
from lipsync.evaluate.cancel import CancelPoll
from lipsync.evaluate.mouth import MouthTrack
from lipsync.media.decode import iter_frames

SYNCNET_FPS = 25.0
SR = 16000
VSHIFT = 15
WINDOW = 5
CROP = 224
CROP_SCALE = 0.40  # the reference pipeline's padding around the face box
BOX_SCALE = 1.2  # CNN (mmod) boxes are tighter than the S3FD boxes SyncNet was used with
PAD_VALUE = 110
BATCH = 16


def _conv2(
    cin: int,
    cout: int,
    pool: tuple[tuple[int, int], tuple[int, int]] | None = None,
    kernel: tuple[int, int] = (3, 3),
    padding: tuple[int, int] = (1, 1),
    inplace: bool = True,
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel_size=kernel, stride=(1, 1), padding=padding),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=inplace),
    ]
    if pool is not None:
        layers.append(nn.MaxPool2d(kernel_size=pool[0], stride=pool[1]))
    return layers


def _conv3(
    cin: int,
    cout: int,
    kernel: tuple[int, int, int],
    stride: tuple[int, int, int],
    padding: tuple[int, int, int],
    pool: dict[str, Any] | None = None,
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv3d(cin, cout, kernel_size=kernel, stride=stride, padding=padding),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool is not None:
        layers.append(nn.MaxPool3d(**pool))
    return layers


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """SyncNet's two towers; layer indices follow the published checkpoint."""

    def __init__(self, embedding: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2(1, 64, pool=((1, 1), (1, 1))),
            *_conv2(64, 192, pool=((3, 3), (1, 2))),
            *_conv2(192, 384),
            *_conv2(384, 256),
            *_conv2(256, 256, pool=((3, 3), (2, 2))),
            *_conv2(256, 512, kernel=(5, 4), padding=(0, 0), inplace=False),
        )
        self.netfcaud = _head(embedding)
        self.netfclip = _head(embedding)
        self.netcnnlip = nn.Sequential(
            *_conv3(
                3,
                96,
                (5, 7, 7),
                (1, 2, 2),
                (0, 0, 0),
                pool={"kernel_size": (1, 3, 3), "stride": (1, 2, 2)},
            ),
            *_conv3(
                96,
                256,
                (1, 5, 5),
                (1, 2, 2),
                (0, 1, 1),
                pool={"kernel_size": (1, 3, 3), "stride": (1, 2, 2), "padding": (0, 1, 1)},
            ),
            *_conv3(256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
            *_conv3(256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
            *_conv3(
                256,
                256,
                (1, 3, 3),
                (1, 1, 1),
                (0, 1, 1),
                pool={"kernel_size": (1, 3, 3), "stride": (1, 2, 2)},
            ),
            *_conv3(256, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows -> (N, 1024)."""
        mid = self.netcnnaud(x)
        return self.netfcaud(mid.reshape(mid.shape[0], -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR face-crop windows -> (N, 1024)."""
        mid = self.netcnnlip(x)
        return self.netfclip(mid.reshape(mid.shape[0], -1))


def load_syncnet(path: Path) -> SyncNet:
    """Load ``syncnet_v2.model`` (a state dict of the network above) for inference on CPU."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelMismatch(
            f"{Path(path).name}: not a loadable SyncNet state dict ({exc})"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelMismatch(
            f"{Path(path).name}: expected a state dict, found {type(state).__name__}"
        )
    state = {k.removeprefix("module.").removeprefix("__S__."): v for k, v in state.items()}
    net = SyncNet()
    own = net.state_dict()
    # Files saved before PyTorch 0.4 (the published one) have no BatchNorm batch counters.
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelMismatch(
            f"{Path(path).name}: not a SyncNet v2 checkpoint (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in own.items():
        if name in state and tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelMismatch(
                f"{Path(path).name}: {name} has shape {tuple(state[name].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )
    net.load_state_dict(state, strict=False)
    return net.eval()


# -- audio features ---------------------------------------------------------------------


def _hz2mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 2595 * np.log10(1 + hz / 700.0)


def _mel2hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 700 * (10 ** (mel / 2595.0) - 1)


def _filterbank(nfilt: int, nfft: int, rate: int) -> npt.NDArray[np.float64]:
    mels = np.linspace(_hz2mel(np.array(0.0)), _hz2mel(np.array(rate / 2)), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(mels) / rate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def mfcc(
    signal: npt.NDArray[np.floating[Any]],
    rate: int = SR,
    numcep: int = 13,
    nfilt: int = 26,
    nfft: int = 512,
    preemph: float = 0.97,
    lifter: int = 22,
) -> npt.NDArray[np.float64]:
    """(frames, 13) MFCC as python_speech_features' ``mfcc`` computes it by default."""
    x = np.asarray(signal, np.float64)
    x = np.append(x[:1], x[1:] - preemph * x[:-1])
    flen, fstep = int(round(0.025 * rate)), int(round(0.01 * rate))
    n = 1 if x.size <= flen else 1 + int(math.ceil((x.size - flen) / fstep))
    x = np.concatenate([x, np.zeros(max(0, (n - 1) * fstep + flen - x.size))])
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(x[idx], nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = power @ _filterbank(nfilt, nfft, rate).T
    feat = np.where(feat == 0, eps, feat)
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    cep *= 1 + (lifter / 2.0) * np.sin(np.pi * np.arange(numcep) / lifter)
    cep[:, 0] = np.log(energy)
    return cep


# -- face crops -------------------------------------------------------------------------


def _fill(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    ok = ~np.isnan(x)
    idx = np.arange(x.size)
    return np.interp(idx, idx[ok], x[ok])


def crop_boxes(track: MouthTrack, n_out: int) -> tuple[list[int], npt.NDArray[np.float64]]:
    """Source frame per 25 fps output frame, and the smoothed (x, y, half-size) per output."""
    src = [min(len(track) - 1, int(round(j / SYNCNET_FPS * track.fps))) for j in range(n_out)]
    b = track.boxes[src].astype(np.float64)
    cx = _fill((b[:, 0] + b[:, 2]) / 2)
    cy = _fill((b[:, 1] + b[:, 3]) / 2)
    s = _fill(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2 * BOX_SCALE)
    k = 13 if n_out >= 13 else (n_out if n_out % 2 else max(1, n_out - 1))
    return src, np.stack([medfilt(cx, k), medfilt(cy, k), medfilt(s, k)], axis=1)


def face_crop(rgb: npt.NDArray[np.uint8], cx: float, cy: float, bs: float) -> npt.NDArray[np.uint8]:
    """The reference pipeline's 224x224 BGR crop around a face box centre / half-size."""
    cs = CROP_SCALE
    pad = int(bs * (1 + 2 * cs))
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    padded = cv2.copyMakeBorder(
        bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE)
    )
    my, mx = cy + pad, cx + pad
    face = padded[
        int(my - bs) : int(my + bs * (1 + 2 * cs)),
        int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs)),
    ]
    if face.size == 0:
        face = np.full((CROP, CROP, 3), PAD_VALUE, np.uint8)
    return np.asarray(cv2.resize(face, (CROP, CROP)), np.uint8)


@dataclass(frozen=True)
class LseResult:
    lse_d: float  # min over offsets of the mean embedding distance (lower is better)
    lse_c: float  # median - min of those means (higher is better)
    av_offset: int  # SyncNet's offset estimate, frames at 25 fps
    windows: int
    dists_by_offset: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def score_lse(
    net: SyncNet,
    video: Path,
    audio16k: npt.NDArray[np.float32],
    track: MouthTrack,
    vshift: int = VSHIFT,
    *,
    should_cancel: Callable[[], bool] | None = None,
) -> LseResult | None:
    """LSE-D / LSE-C of ``video`` against ``audio16k``; None when too short to score.
    ``should_cancel`` is polled per decoded frame and between steps (a batch of SyncNet
    windows is one call) (:class:`lipsync.errors.Canceled`)."""
    poll = CancelPoll(should_cancel)
    n_video = int(math.floor(len(track) / track.fps * SYNCNET_FPS))
    n = min(n_video, int(audio16k.size // (SR // int(SYNCNET_FPS))))
    last = n - WINDOW
    if last <= 0 or not track.found.any():
        return None
    torch.set_grad_enabled(False)
    src, boxes = crop_boxes(track, n)
    lip_feats = _lip_embeddings(net, video, _Crops(src, boxes), last, poll)
    if not lip_feats:
        return None
    im = torch.cat(lip_feats)[:last]
    last = im.shape[0]
    poll(force=True)
    au = _audio_embeddings(net, audio16k, last)
    return _score(im, au, vshift)


@dataclass(frozen=True)
class _Crops:
    """Where the face crops come from: the source frame per 25 fps output frame and the
    smoothed (x, y, half-size) of its crop (:func:`crop_boxes`)."""

    src: list[int]
    boxes: npt.NDArray[np.float64]


def _embed_lips(net: SyncNet, batch: list[npt.NDArray[np.uint8]]) -> torch.Tensor:
    """Lip-tower embeddings of a batch of (5, H, W, 3) BGR crop windows."""
    x = torch.from_numpy(np.stack(batch).astype(np.float32))  # (B, 5, H, W, 3)
    return net.forward_lip(x.permute(0, 4, 1, 2, 3).contiguous())


def _lip_embeddings(
    net: SyncNet, video: Path, crops: _Crops, last: int, poll: CancelPoll
) -> list[torch.Tensor]:
    """Lip-tower embeddings of the first ``last`` 5-frame windows of face crops, decoding
    ``video`` once, in batches of :data:`BATCH` windows."""
    wanted: dict[int, list[int]] = {}
    for j, s in enumerate(crops.src[: last + WINDOW - 1]):
        wanted.setdefault(s, []).append(j)
    lip_feats: list[torch.Tensor] = []
    buf: deque[npt.NDArray[np.uint8]] = deque(maxlen=WINDOW)
    batch: list[npt.NDArray[np.uint8]] = []
    made = 0
    for frame in iter_frames(video):
        poll()
        for j in wanted.get(frame.index, []):
            cx, cy, bs = crops.boxes[j]
            buf.append(face_crop(frame.image, cx, cy, bs))
            if len(buf) == WINDOW and made < last:
                batch.append(np.stack(buf))
                made += 1
                if len(batch) >= BATCH:
                    lip_feats.append(_embed_lips(net, batch))
                    batch.clear()
        if made >= last:
            break
    if batch:
        lip_feats.append(_embed_lips(net, batch))
    return lip_feats


def _audio_embeddings(net: SyncNet, audio16k: npt.NDArray[np.float32], count: int) -> torch.Tensor:
    """Audio-tower embeddings of the first ``count`` 20-MFCC-frame windows (4 per video
    frame; zero-padded past the end)."""
    cc = mfcc(audio16k.astype(np.float64) * 32768.0).T  # (13, T), int16 scale
    windows = [cc[:, 4 * i : 4 * i + 20] for i in range(count)]
    windows = [
        w if w.shape[1] == 20 else np.pad(w, ((0, 0), (0, 20 - w.shape[1]))) for w in windows
    ]
    aud_in = torch.from_numpy(np.stack(windows)[:, None].astype(np.float32))
    return torch.cat([net.forward_aud(aud_in[i : i + 64]) for i in range(0, count, 64)])


def _score(im: torch.Tensor, au: torch.Tensor, vshift: int) -> LseResult:
    """Mean distance of video window *i* to audio window *i + offset* per offset in
    -vshift..+vshift; LSE-D, LSE-C and the offset from those means."""
    last = im.shape[0]
    span = 2 * vshift + 1
    au_p = torch.nn.functional.pad(au, (0, 0, vshift, vshift))
    dists = torch.stack(
        [
            torch.nn.functional.pairwise_distance(im[[i], :].repeat(span, 1), au_p[i : i + span])
            for i in range(last)
        ]
    )
    mdist = dists.mean(dim=0)
    minval, minidx = torch.min(mdist, 0)
    conf = torch.median(mdist) - minval
    return LseResult(
        round(float(minval), 4),
        round(float(conf), 4),
        int(vshift - int(minidx)),
        last,
        [round(float(v), 4) for v in mdist],
    )
