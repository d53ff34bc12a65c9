"""ResNet SNGAN / SAGAN: one generator and one discriminator class for every resolution.

Miyato et al., ICLR 2018 (arXiv:1802.05957), appendix B; Zhang et al., ICML 2019 (arXiv:1805.08318).
The architecture table (widths per stage, where attention sits) comes from a `ModelConfig`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sagan.models.config import ModelConfig
from sagan.models.staged import StagedDiscriminator, StagedGenerator
from sagan.nn import BatchNorm, DBlock, GBlock, ProjectionHead
from sagan.nn.blocks import conv


class ResNetGenerator(StagedGenerator):
    """z (B, z_dim) [+ class y (B,)] -> image (B, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        w = self.widths
        self.set_blocks(GBlock(a, b, self.norm, self.sn) for a, b in zip(w, w[1:]))
        self.out_bn = BatchNorm(w[-1])
        self.out_conv = conv(w[-1], cfg.img_channels, 3, self.sn)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.trunk(z, y)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))  # (B, C, H, W)


class ResNetDiscriminator(StagedDiscriminator):
    """image (B, C, H, W) [+ class y (B,)] -> one logit per image (B,)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        res_in = [cfg.resolution] + self.resolutions[:-1]
        self.set_blocks(
            DBlock(a, b, self.sn, downsample=r_out < r_in, optimized=(i == 0))
            for i, (a, b, r_in, r_out) in enumerate(zip(self.in_widths, self.widths, res_in, self.resolutions))
        )
        self.head = ProjectionHead(self.widths[-1], cfg.num_classes, self.sn)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, reconstruct: bool = False):
        """Logits (B,); with `reconstruct`, (logits, the decoder's image of x (B, C, r, r))."""
        h, image = self.trunk_for(x, reconstruct)
        logits = self.head(F.relu(h).sum(dim=(2, 3)), y)  # global sum pooling: (B, C) -> (B,)
        return (logits, image) if reconstruct else logits
