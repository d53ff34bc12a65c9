"""What every generator and discriminator here shares: a stack of stages with attention after chosen ones.

A family (resnet, dcgan) supplies its stage blocks and its ends; the trunk, the attention placement, the
z -> 4x4 projection and FastGAN's optional parts (skip-layer excitation in G, D's reconstruction decoder) live
here once.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sagan.models.config import ModelConfig
from sagan.nn import norm_layer, sn_wrapper
from sagan.nn.attention import attention_layers
from sagan.nn.decoder import ReconstructionDecoder
from sagan.nn.excitation import SkipExcitation
from sagan.nn.spectral import init_layer


class StagedGenerator(nn.Module):
    """z -> linear -> (B, C0, 4, 4) -> bottom() -> [stage, excitation?, attention?]* ; subclasses add blocks and
    the output. An excitation (cfg.g_sle) gates a stage's output by the output of the stage at cfg.sle_source."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.sn, self.norm = sn_wrapper(cfg.g_spectral_norm), norm_layer(cfg.num_classes)
        self.widths = cfg.g_widths()
        self.z_dim, self.num_classes, self.bottom_width = cfg.z_dim, cfg.num_classes, self.widths[0]
        self.resolution = cfg.resolution
        self.linear = init_layer(nn.Linear(cfg.z_dim, self.widths[0] * 4 * 4), self.sn)
        self.attention, after = attention_layers(cfg.g_resolutions(), self.widths, cfg.g_attention, self.sn)
        self.attend_bottom, self.attend_after = after[0], after[1:]
        self.stage_resolutions = cfg.g_resolutions()[1:]
        resolutions = cfg.g_resolutions()
        self.excitation = nn.ModuleDict({
            str(r): SkipExcitation(self.widths[resolutions.index(cfg.sle_source(r))], self.widths[resolutions.index(r)],
                                   self.sn)
            for r in cfg.g_sle
        })
        self.excitation_source = {r: cfg.sle_source(r) for r in cfg.g_sle}

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
        sources = set(self.excitation_source.values())
        kept = {4: h} if 4 in sources else {}  # stage outputs that gate later stages, by resolution
        for block, where, r in zip(self.blocks, self.attend_after, self.stage_resolutions):
            h = block(h, y)
            if r in self.excitation_source:
                h = self.excitation[str(r)](kept[self.excitation_source[r]], h)
            if where:
                h = self.attention[where](h)
            if r in sources and r not in kept:
                kept[r] = h
        return h  # (B, C_last, H, W)


class StagedDiscriminator(nn.Module):
    """image -> [stage, attention?]* ; subclasses add blocks and the head.

    With cfg.d_recon, `decoder` turns the output of the last stage at that resolution back into an image; a
    subclass's `forward(x, y, reconstruct=True)` returns (logits, reconstruction) and its default forward is
    unchanged. The decoder is part of D, so D's optimiser trains it.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.sn = sn_wrapper(cfg.d_spectral_norm)
        self.widths, self.resolutions = cfg.d_widths(), cfg.d_resolutions()
        self.in_widths = [cfg.img_channels] + self.widths[:-1]
        self.attention, self.attend_after = attention_layers(self.resolutions, self.widths, cfg.d_attention, self.sn)
        self.decoder, self.decode_stage = None, None
        if cfg.d_recon:
            # the last (deepest) stage at that resolution: the features the head's decision is built on
            self.decode_stage = len(self.resolutions) - 1 - self.resolutions[::-1].index(cfg.d_recon)
            steps = (cfg.recon_resolution() // cfg.d_recon).bit_length() - 1
            self.decoder = ReconstructionDecoder(self.widths[self.decode_stage], cfg.img_channels, steps, self.sn)

    def set_blocks(self, blocks: Iterable[nn.Module]) -> None:
        self.blocks = nn.ModuleList(blocks)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk_and_tap(x, None)[0]  # (B, C_last, h, w)

    def trunk_and_tap(self, x: torch.Tensor, tap: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The trunk's output and, when `tap` is a stage index, that stage's output (after its attention)."""
        h, tapped = x, None
        for i, (block, where) in enumerate(zip(self.blocks, self.attend_after)):
            h = block(h)
            if where:
                h = self.attention[where](h)
            if i == tap:
                tapped = h
        return h, tapped

    def trunk_for(self, x: torch.Tensor, reconstruct: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The trunk's output, and the decoder's image when `reconstruct` (which needs cfg.d_recon)."""
        if not reconstruct:
            return self.trunk(x), None
        if self.decoder is None:
            raise ValueError("this discriminator has no reconstruction decoder: build it with d_recon set")
        h, tapped = self.trunk_and_tap(x, self.decode_stage)
        return h, self.decoder(tapped)
