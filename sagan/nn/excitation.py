"""Skip-layer excitation (SLE): a low-resolution feature map gates the channels of a high-resolution one.

Liu, Zhu, Song, Elgammal. "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image
Synthesis" (FastGAN), ICLR 2021 (arXiv:2101.04775), section 3.1 and its released `SEBlock`: the small map is
average-pooled to 4x4, a 4x4 conv (no padding) takes it to 1x1 with the big map's channel count, then Swish, a
1x1 conv and a sigmoid; the big map is multiplied channel-wise by that gate. It gives G a shortcut for gradients
from the output stages back to the early ones, one of FastGAN's two ingredients for fast convergence.
"""

from __future__ import annotations

import torch
from torch import nn

from sagan.nn.spectral import Wrap, init_layer, no_sn


class SkipExcitation(nn.Module):
    """y = x_high * sigmoid(f(x_low)), with f(x_low) of shape (B, C_high, 1, 1): a per-image channel gate."""

    def __init__(self, low_channels: int, high_channels: int, sn: Wrap = no_sn) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        # no biases, as in FastGAN's SEBlock
        self.squeeze = init_layer(nn.Conv2d(low_channels, high_channels, 4, bias=False), sn)
        self.excite = init_layer(nn.Conv2d(high_channels, high_channels, 1, bias=False), sn)

    def gate(self, low: torch.Tensor) -> torch.Tensor:
        """The channel gate in (0, 1) that `low` (B, C_low, h, w) sets: (B, C_high, 1, 1)."""
        return torch.sigmoid(self.excite(nn.functional.silu(self.squeeze(self.pool(low)))))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """high (B, C_high, H, W) gated by low (B, C_low, h, w) -> (B, C_high, H, W)."""
        return high * self.gate(low)
