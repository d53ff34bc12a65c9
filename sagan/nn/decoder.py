"""The small decoder of a self-supervised discriminator: D's feature map back to a (down-sampled) image.

Liu, Zhu, Song, Elgammal. "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image
Synthesis" (FastGAN), ICLR 2021 (arXiv:2101.04775), section 3.2 and its released `SimpleDecoder`: a stack of
up blocks (nearest 2x, 3x3 conv to twice the width, batch norm, GLU) halving the width each time, then a 3x3
conv and tanh. Trained to reconstruct the real images from D's features (on reals only, as a D-only loss), it
makes D keep a description of the whole image rather than only the few cues that tell real from fake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sagan.nn.spectral import Wrap, init_layer, no_sn

MIN_WIDTH = 16  # the decoder's narrowest stage


class _UpGLU(nn.Module):
    """Nearest 2x up-sampling, 3x3 conv to 2 * out_ch, batch norm, GLU over channels -> out_ch."""

    def __init__(self, in_ch: int, out_ch: int, sn: Wrap) -> None:
        super().__init__()
        self.conv = init_layer(nn.Conv2d(in_ch, 2 * out_ch, 3, padding=1, bias=False), sn)
        self.bn = nn.BatchNorm2d(2 * out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.bn(self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))), dim=1)


class ReconstructionDecoder(nn.Module):
    """(B, C, r, r) features -> (B, img_channels, r * 2**steps, r * 2**steps) image in [-1, 1]."""

    def __init__(self, in_channels: int, img_channels: int, steps: int, sn: Wrap = no_sn) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"the decoder needs at least one up-sampling step, got {steps}")
        widths = [in_channels] + [max(MIN_WIDTH, in_channels // 2 ** (i + 1)) for i in range(steps)]
        self.blocks = nn.Sequential(*(_UpGLU(a, b, sn) for a, b in zip(widths, widths[1:])))
        self.out = init_layer(nn.Conv2d(widths[-1], img_channels, 3, padding=1, bias=False), sn)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.blocks(features)))
