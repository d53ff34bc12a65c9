"""ResNet SNGAN / SAGAN: one generator and one discriminator class for every resolution.

Miyato et al., ICLR 2018 (arXiv:1802.05957), appendix B; Zhang et al., ICML 2019 (arXiv:1805.08318).
The architecture table (widths per stage, where attention sits) comes from a `ModelConfig`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sagan.models.config import ModelConfig
from sagan.nn import BatchNorm, DBlock, GBlock, ProjectionHead, norm_layer, sn_wrapper
from sagan.nn.attention import attention_layers
from sagan.nn.blocks import conv, init_layer


class ResNetGenerator(nn.Module):
    """z (B, z_dim) [+ class y (B,)] -> image (B, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sn, norm = sn_wrapper(cfg.g_spectral_norm), norm_layer(cfg.num_classes)
        widths, resolutions = cfg.g_widths(), cfg.g_resolutions()
        self.z_dim, self.num_classes, self.bottom_width = cfg.z_dim, cfg.num_classes, widths[0]
        self.linear = init_layer(nn.Linear(cfg.z_dim, widths[0] * 4 * 4), sn)
        self.blocks = nn.ModuleList(GBlock(a, b, norm, sn) for a, b in zip(widths, widths[1:]))
        self.attention, after = attention_layers(resolutions, widths, cfg.g_attention, sn)
        self.attend_bottom, self.attend_after = after[0], after[1:]
        self.out_bn = BatchNorm(widths[-1])
        self.out_conv = conv(widths[-1], cfg.img_channels, 3, sn)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.bottom_width, 4, 4)  # (B, C0, 4, 4)
        if self.attend_bottom:
            h = self.attention[self.attend_bottom](h)
        for block, where in zip(self.blocks, self.attend_after):
            h = block(h, y)
            if where:
                h = self.attention[where](h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))  # (B, C, H, W)


class ResNetDiscriminator(nn.Module):
    """image (B, C, H, W) [+ class y (B,)] -> one logit per image (B,)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sn = sn_wrapper(cfg.d_spectral_norm)
        widths, resolutions = cfg.d_widths(), cfg.d_resolutions()
        ins = [cfg.img_channels] + widths[:-1]
        res_in = [cfg.resolution] + resolutions[:-1]
        self.blocks = nn.ModuleList(
            DBlock(a, b, sn, downsample=r_out < r_in, optimized=(i == 0))
            for i, (a, b, r_in, r_out) in enumerate(zip(ins, widths, res_in, resolutions))
        )
        self.attention, self.attend_after = attention_layers(resolutions, widths, cfg.d_attention, sn)
        self.head = ProjectionHead(widths[-1], cfg.num_classes, sn)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for block, where in zip(self.blocks, self.attend_after):
            h = block(h)
            if where:
                h = self.attention[where](h)
        h = F.relu(h).sum(dim=(2, 3))  # (B, C): global sum pooling
        return self.head(h, y)  # (B,)
