"""MuseTalk 1.5's blend mask from a face-parsing network (BiSeNet, ``79999_iter.pth``).

The reference (``musetalk/utils/blending.py`` ``get_image`` with ``FaceParsing`` of
``musetalk/utils/face_parsing``) pastes the generated face through a mask made like this:

* a square around the crop box, ``1.5`` times its longer side (black outside the frame), is
  resized to 512x512 (Pillow, bilinear), normalised with the ImageNet mean and spread and
  parsed into the 19 CelebAMask-HQ classes (argmax of BiSeNet's main output);
* the classes become a 0/255 region (:func:`parsing_region`, ``mode`` jaw for v1.5: the
  skin grown downwards by a cone, its outer cheeks eroded, the nose left out, the lips in);
* that region is resized back to the square (Pillow's default filter), kept only inside the
  crop box and below the square's middle row, and blurred with an odd Gaussian kernel of
  about 5 % of the square's side; the generated face is blended with it.

:func:`blend_mask` returns that mask in the crop box's coordinates, for the project's
compositor. The network (:class:`BiSeNet`) has the reference's module names, so the published
state dict loads strictly; ``resnet18-5c106cde.pth`` is not read (the reference loads it only
to initialise the backbone, whose weights ``79999_iter.pth`` then replaces).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lipsync.engines.musetalk.wing import PARSER, PARSING_MODES, MuseTalkOptions
from lipsync.torchload import load_strict, read_state_dict

PARSER_WEIGHTS = PARSER.filename
PARSE_SIZE = 512
N_CLASSES = 19
SKIN, NOSE, NECK = 1, 10, 14
LIPS = (11, 12, 13)  # inner mouth, upper lip, lower lip
MODES = tuple(PARSING_MODES)
CHEEK_WIDTH = MuseTalkOptions.left_cheek_width  # the v1.5 scripts' --left/right_cheek_width
EXPAND = 1.5  # the blend square's side over the crop box's longer side

Box = tuple[int, int, int, int]


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, 1, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _layer(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class ResNet18(nn.Module):
    """The backbone without its classifier: features at 1/8, 1/16 and 1/32."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        f8 = self.layer2(x)
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class Refinement(nn.Module):
    """Features scaled by a channel attention from their global average."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return feat * atten


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = Refinement(256, 128)
        self.arm32 = Refinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.resnet(x)
        avg = self.conv_avg(f32.mean((2, 3), keepdim=True))
        up32 = F.interpolate(self.arm32(f32) + avg, f16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(f16) + up32, f8.shape[2:], mode="nearest")
        return f8, self.conv_head16(up16)


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([a, b], dim=1))
        atten = feat.mean((2, 3), keepdim=True)
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(atten))))
        return feat * atten + feat


class Head(nn.Module):
    def __init__(self, cin: int, mid: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv_out(self.conv(x))
        return out


class BiSeNet(nn.Module):
    """face-parsing.PyTorch's BiSeNet (19 classes). ``forward`` gives the main output's
    logits at the input's size (the two auxiliary heads are trained-only; their weights
    are kept so the published file loads strictly)."""

    def __init__(self, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = Head(256, 256, n_classes)
        self.conv_out16 = Head(128, 64, n_classes)
        self.conv_out32 = Head(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, cp8 = self.cp(x)
        logits = self.conv_out(self.ffm(f8, cp8))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


def load_parser(models_dir: Path) -> BiSeNet | None:
    """The parsing network from ``face-parse-bisent/79999_iter.pth``; None when the file is
    not there (the engine then blends with its landmark mask)."""
    path = Path(models_dir) / PARSER_WEIGHTS
    if not path.is_file():
        return None
    state = read_state_dict(path, "the face-parsing BiSeNet (79999_iter.pth)")
    return load_strict(BiSeNet(), state, path, "the face-parsing BiSeNet", "BiSeNet")
