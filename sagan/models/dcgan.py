"""DCGAN-style networks of strided (transposed) convolutions, optionally with attention and SN.

Radford, Metz, Chintala, ICLR 2016 (arXiv:1511.06434). With spectral norm and attention at 32x32 the same
classes build the well-known CelebA tutorial SAGAN (`sagan_celeba128`): G with BN and ReLU, D with
LeakyReLU and no BN, as in that tutorial, but with SN on every layer where its code skipped or broke it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sagan.models.config import ModelConfig
from sagan.nn import DownConv, ProjectionHead, UpConv, norm_layer, sn_wrapper
from sagan.nn.attention import attention_layers
from sagan.nn.blocks import conv, init_layer


class DCGANGenerator(nn.Module):
    """z -> linear -> 4x4 -> (4x4 stride-2 transposed conv, BN, ReLU)* -> 3x3 conv -> tanh."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sn, norm = sn_wrapper(cfg.g_spectral_norm), norm_layer(cfg.num_classes)
        widths, resolutions = cfg.g_widths(), cfg.g_resolutions()
        self.z_dim, self.num_classes, self.bottom_width = cfg.z_dim, cfg.num_classes, widths[0]
        self.linear = init_layer(nn.Linear(cfg.z_dim, widths[0] * 4 * 4), sn)
        self.bottom_bn = norm(widths[0])
        self.blocks = nn.ModuleList(UpConv(a, b, norm, sn) for a, b in zip(widths, widths[1:]))
        self.attention, after = attention_layers(resolutions, widths, cfg.g_attention, sn)
        self.attend_bottom, self.attend_after = after[0], after[1:]
        self.out_conv = conv(widths[-1], cfg.img_channels, 3, sn)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.bottom_width, 4, 4)  # (B, C0, 4, 4)
        h = F.relu(self.bottom_bn(h, y))
        if self.attend_bottom:
            h = self.attention[self.attend_bottom](h)
        for block, where in zip(self.blocks, self.attend_after):
            h = block(h, y)
            if where:
                h = self.attention[where](h)
        return torch.tanh(self.out_conv(h))  # (B, C, H, W)


class DCGANDiscriminator(nn.Module):
    """image -> (4x4 stride-2 conv, LeakyReLU)* down to 4x4 -> flatten -> linear (+ projection)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sn = sn_wrapper(cfg.d_spectral_norm)
        widths, resolutions = cfg.d_widths(), cfg.d_resolutions()
        ins = [cfg.img_channels] + widths[:-1]
        self.blocks = nn.ModuleList(DownConv(a, b, sn) for a, b in zip(ins, widths))
        self.attention, self.attend_after = attention_layers(resolutions, widths, cfg.d_attention, sn)
        self.head = ProjectionHead(widths[-1] * 4 * 4, cfg.num_classes, sn)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for block, where in zip(self.blocks, self.attend_after):
            h = block(h)
            if where:
                h = self.attention[where](h)
        return self.head(h.flatten(1), y)  # (B,)
