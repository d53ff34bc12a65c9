"""DCGAN-style networks of strided (transposed) convolutions, optionally with attention and SN.

Radford, Metz, Chintala, ICLR 2016 (arXiv:1511.06434). With spectral norm and attention at 32x32 the same
classes build the well-known CelebA tutorial SAGAN (`sagan_celeba128`): G with BN and ReLU, D with
LeakyReLU and no BN, as in that tutorial, but with SN on every layer where its code skipped or broke it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sagan.models.config import ModelConfig
from sagan.models.staged import StagedDiscriminator, StagedGenerator
from sagan.nn import DownConv, ProjectionHead, UpConv
from sagan.nn.blocks import conv


class DCGANGenerator(StagedGenerator):
    """z -> linear -> 4x4 -> BN, ReLU -> (4x4 stride-2 transposed conv, BN, ReLU)* -> 3x3 conv -> tanh."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        w = self.widths
        self.bottom_bn = self.norm(w[0])
        self.set_blocks(UpConv(a, b, self.norm, self.sn) for a, b in zip(w, w[1:]))
        self.out_conv = conv(w[-1], cfg.img_channels, 3, self.sn)

    def bottom(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return F.relu(self.bottom_bn(h, y))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.out_conv(self.trunk(z, y)))  # (B, C, H, W)


class DCGANDiscriminator(StagedDiscriminator):
    """image -> (4x4 stride-2 conv, LeakyReLU)* down to 4x4 -> flatten -> linear (+ projection)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.set_blocks(DownConv(a, b, self.sn) for a, b in zip(self.in_widths, self.widths))
        self.head = ProjectionHead(self.widths[-1] * 4 * 4, cfg.num_classes, self.sn)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, reconstruct: bool = False):
        """Logits (B,); with `reconstruct`, (logits, the decoder's image of x (B, C, r, r))."""
        h, image = self.trunk_for(x, reconstruct)
        logits = self.head(h.flatten(1), y)  # (B,)
        return (logits, image) if reconstruct else logits
