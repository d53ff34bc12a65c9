"""What every generator and discriminator here shares: a stack of stages with attention after chosen ones.

A family (resnet, dcgan) supplies its stage blocks and its ends; the trunk, the attention placement and the
z -> 4x4 projection live here once.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sagan.models.config import ModelConfig
from sagan.nn import norm_layer, sn_wrapper
from sagan.nn.attention import attention_layers
from sagan.nn.spectral import init_layer


class StagedGenerator(nn.Module):
    """z -> linear -> (B, C0, 4, 4) -> bottom() -> [stage, attention?]* ; subclasses add blocks and the output."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.sn, self.norm = sn_wrapper(cfg.g_spectral_norm), norm_layer(cfg.num_classes)
        self.widths = cfg.g_widths()
        self.z_dim, self.num_classes, self.bottom_width = cfg.z_dim, cfg.num_classes, self.widths[0]
        self.resolution = cfg.resolution
        self.linear = init_layer(nn.Linear(cfg.z_dim, self.widths[0] * 4 * 4), self.sn)
        self.attention, after = attention_layers(cfg.g_resolutions(), self.widths, cfg.g_attention, self.sn)
        self.attend_bottom, self.attend_after = after[0], after[1:]

    def set_blocks(self, blocks: Iterable[nn.Module]) -> None:
        self.blocks = nn.ModuleList(blocks)

    def bottom(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """What happens to the 4x4 map before the first stage (nothing, by default)."""
        return h

    def trunk(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.bottom_width, 4, 4)  # (B, C0, 4, 4)
        h = self.bottom(h, y)
        if self.attend_bottom:
            h = self.attention[self.attend_bottom](h)
        for block, where in zip(self.blocks, self.attend_after):
            h = block(h, y)
            if where:
                h = self.attention[where](h)
        return h  # (B, C_last, H, W)


class StagedDiscriminator(nn.Module):
    """image -> [stage, attention?]* ; subclasses add blocks and the head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.sn = sn_wrapper(cfg.d_spectral_norm)
        self.widths, self.resolutions = cfg.d_widths(), cfg.d_resolutions()
        self.in_widths = [cfg.img_channels] + self.widths[:-1]
        self.attention, self.attend_after = attention_layers(self.resolutions, self.widths, cfg.d_attention, self.sn)

    def set_blocks(self, blocks: Iterable[nn.Module]) -> None:
        self.blocks = nn.ModuleList(blocks)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block, where in zip(self.blocks, self.attend_after):
            h = block(h)
            if where:
                h = self.attention[where](h)
        return h  # (B, C_last, h, w)
