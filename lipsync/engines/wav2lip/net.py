"""The Wav2Lip generator network (Prajwal et al., 2020), layer for layer as published.

The module tree and parameter names follow the released checkpoints
(``face_encoder_blocks.N.M.conv_block.{0,1}``, ``audio_encoder.N.conv_block...``,
``face_decoder_blocks...``, ``output_block.{0,1}``), so ``wav2lip.pth`` and
``wav2lip_gan.pth`` load with ``strict=True``. Only the inference path is kept: one face
per batch item, inputs ``audio (B, 1, 80, 16)`` and ``face (B, 6, 96, 96)``.
"""

from __future__ import annotations

import torch
from torch import nn


class Conv2d(nn.Module):
    """Conv + BatchNorm, an optional identity shortcut, then ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size, stride, padding),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Conv2dTranspose(nn.Module):
    """Transposed conv + BatchNorm + ReLU (the decoder's upsampling step)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int,
        padding: int,
        output_padding: int = 0,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _down(cin: int, cout: int, n_res: int, kernel: int = 3, stride: int = 2) -> nn.Sequential:
    """A strided conv followed by ``n_res`` residual 3x3 convs at ``cout`` channels."""
    pad = kernel // 2
    layers: list[nn.Module] = [Conv2d(cin, cout, kernel, stride, pad)]
    layers += [Conv2d(cout, cout, 3, 1, 1, residual=True) for _ in range(n_res)]
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, n_res: int, first: bool = False) -> nn.Sequential:
    """A transposed conv (x2 upsampling, or 1x1 -> 3x3 for the first) and residual convs."""
    up = (
        Conv2dTranspose(cin, cout, 3, 1, 0)
        if first
        else Conv2dTranspose(cin, cout, 3, 2, 1, output_padding=1)
    )
    layers: list[nn.Module] = [up]
    layers += [Conv2d(cout, cout, 3, 1, 1, residual=True) for _ in range(n_res)]
    return nn.Sequential(*layers)


class Wav2Lip(nn.Module):
    """Identity encoder + speech encoder + decoder with skip connections, sigmoid output."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(Conv2d(6, 16, 7, 1, 3)),  # 96x96
                _down(16, 32, 2),  # 48x48
                _down(32, 64, 3),  # 24x24
                _down(64, 128, 2),  # 12x12
                _down(128, 256, 2),  # 6x6
                _down(256, 512, 1),  # 3x3
                nn.Sequential(Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0)),  # 1x1
            ]
        )
        self.audio_encoder = nn.Sequential(
            Conv2d(1, 32, 3, 1, 1),
            Conv2d(32, 32, 3, 1, 1, residual=True),
            Conv2d(32, 32, 3, 1, 1, residual=True),
            Conv2d(32, 64, 3, (3, 1), 1),
            Conv2d(64, 64, 3, 1, 1, residual=True),
            Conv2d(64, 64, 3, 1, 1, residual=True),
            Conv2d(64, 128, 3, 3, 1),
            Conv2d(128, 128, 3, 1, 1, residual=True),
            Conv2d(128, 128, 3, 1, 1, residual=True),
            Conv2d(128, 256, 3, (3, 2), 1),
            Conv2d(256, 256, 3, 1, 1, residual=True),
            Conv2d(256, 512, 3, 1, 0),
            Conv2d(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(Conv2d(512, 512, 1, 1, 0)),  # 1x1
                _up(1024, 512, 1, first=True),  # 3x3
                _up(1024, 512, 2),  # 6x6
                _up(768, 384, 2),  # 12x12
                _up(512, 256, 2),  # 24x24
                _up(320, 128, 2),  # 48x48
                _up(160, 64, 2),  # 96x96
            ]
        )
        self.output_block = nn.Sequential(
            Conv2d(80, 32, 3, 1, 1),
            nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, audio: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        """``audio (B, 1, 80, 16)``, ``face (B, 6, 96, 96)`` in 0..1 -> ``(B, 3, 96, 96)``."""
        feats: list[torch.Tensor] = []
        x = face
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        x = self.audio_encoder(audio)
        for block in self.face_decoder_blocks:
            x = block(x)
            x = torch.cat((x, feats.pop()), dim=1)
        out: torch.Tensor = self.output_block(x)
        return out


def fold_batchnorm(model: Wav2Lip) -> Wav2Lip:
    """Fold every eval-mode BatchNorm into its convolution, in place (inference only).

    Same outputs up to float rounding (~1e-7), one memory pass less per layer. Load the
    checkpoint first: the folded model no longer has the published state-dict layout.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if isinstance(module, Conv2d | Conv2dTranspose):
            conv, bn = module.conv_block[0], module.conv_block[1]
            if not isinstance(bn, nn.BatchNorm2d):
                continue  # already folded
            if isinstance(conv, nn.ConvTranspose2d):
                module.conv_block = nn.Sequential(fuse_conv_bn_eval(conv, bn, transpose=True))
            elif isinstance(conv, nn.Conv2d):
                module.conv_block = nn.Sequential(fuse_conv_bn_eval(conv, bn))
    return model
