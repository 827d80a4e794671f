"""The S3FD face detector network (Zhang et al., 2017) as face-alignment publishes it.

Attribute names follow the released ``s3fd-619a316812.pth`` (also Wav2Lip's
``face_detection/detection/sfd/s3fd.pth``): a plain state dict with ``conv1_1`` ..
``conv5_3``, ``fc6``, ``fc7``, ``conv6_{1,2}``, ``conv7_{1,2}``, the L2 norms
``conv{3,4,5}_3_norm.weight`` and one ``*_mbox_conf`` / ``*_mbox_loc`` head pair per
feature map, so the file loads with ``strict=True``.

Input: (N, 3, H, W) float, BGR with the Caffe means (104, 117, 123) subtracted. Output:
six (class logits (N, 2, h, w), box offsets (N, 4, h, w)) pairs for the feature maps of
stride 4, 8, 16, 32, 64 and 128; channel 1 of the class logits is "face". This module
imports torch: import it only where the detector is built (see ``lipsync.face.s3fd``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the usual alias)
from torch import nn

# Layers of the VGG16 backbone: (name, in channels, out channels); a 2x2 max pool follows
# the last layer of each block.
_VGG_BLOCKS: tuple[tuple[tuple[str, int, int], ...], ...] = (
    (("conv1_1", 3, 64), ("conv1_2", 64, 64)),
    (("conv2_1", 64, 128), ("conv2_2", 128, 128)),
    (("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256)),
    (("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512)),
    (("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)),
)

# Detection sources: (head prefix, channels, class channels). The first head predicts three
# background scores and one face score ("max-out background label").
HEADS: tuple[tuple[str, int, int], ...] = (
    ("conv3_3_norm", 256, 4),
    ("conv4_3_norm", 512, 2),
    ("conv5_3_norm", 512, 2),
    ("fc7", 1024, 2),
    ("conv6_2", 512, 2),
    ("conv7_2", 256, 2),
)
STRIDES: tuple[int, ...] = (4, 8, 16, 32, 64, 128)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (ParseNet)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = 1e-10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return x / norm * self.weight.view(1, -1, 1, 1)


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)


class S3FD(nn.Module):
    """VGG16 backbone, fc6/fc7 as convolutions, two extra blocks, six detection heads."""

    def __init__(self) -> None:
        super().__init__()
        for block in _VGG_BLOCKS:
            for name, cin, cout in block:
                self.add_module(name, _conv3(cin, cout))
        # fc6 is dilation-free with padding 3: its map is 4 cells larger than pool5's.
        self.fc6 = nn.Conv2d(512, 1024, kernel_size=3, stride=1, padding=3)
        self.fc7 = nn.Conv2d(1024, 1024, kernel_size=1)
        self.conv6_1 = nn.Conv2d(1024, 256, kernel_size=1)
        self.conv6_2 = nn.Conv2d(256, 512, kernel_size=3, stride=2, padding=1)
        self.conv7_1 = nn.Conv2d(512, 128, kernel_size=1)
        self.conv7_2 = nn.Conv2d(128, 256, kernel_size=3, stride=2, padding=1)
        self.conv3_3_norm = L2Norm(256, 10.0)
        self.conv4_3_norm = L2Norm(512, 8.0)
        self.conv5_3_norm = L2Norm(512, 5.0)
        for prefix, channels, classes in HEADS:
            self.add_module(f"{prefix}_mbox_conf", _conv3(channels, classes))
            self.add_module(f"{prefix}_mbox_loc", _conv3(channels, 4))

    def _layer(self, name: str) -> nn.Module:
        module: nn.Module = getattr(self, name)
        return module

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[cls1, reg1, ..., cls6, reg6]``: raw class logits (2 channels) and offsets."""
        sources: list[torch.Tensor] = []
        h = x
        for i, block in enumerate(_VGG_BLOCKS):
            for name, _, _ in block:
                h = F.relu(self._layer(name)(h), inplace=True)
            if i >= 2:  # conv3_3, conv4_3, conv5_3
                sources.append(h)
            h = F.max_pool2d(h, 2, 2)
        h = F.relu(self.fc6(h), inplace=True)
        h = F.relu(self.fc7(h), inplace=True)
        sources.append(h)
        h = F.relu(self.conv6_1(h), inplace=True)
        h = F.relu(self.conv6_2(h), inplace=True)
        sources.append(h)
        h = F.relu(self.conv7_1(h), inplace=True)
        h = F.relu(self.conv7_2(h), inplace=True)
        sources.append(h)
        sources[0] = self.conv3_3_norm(sources[0])
        sources[1] = self.conv4_3_norm(sources[1])
        sources[2] = self.conv5_3_norm(sources[2])
        out: list[torch.Tensor] = []
        for (prefix, _, classes), src in zip(HEADS, sources, strict=True):
            cls = self._layer(f"{prefix}_mbox_conf")(src)
            if classes == 4:  # max over the three background channels
                background = cls[:, :3].amax(dim=1, keepdim=True)
                cls = torch.cat([background, cls[:, 3:]], dim=1)
            out.append(cls)
            out.append(self._layer(f"{prefix}_mbox_loc")(src))
        return out
