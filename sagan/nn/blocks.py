"""Generator and discriminator blocks: residual (SNGAN/SAGAN) and plain strided (DCGAN).

Residual blocks: Miyato et al., "Spectral Normalization for GANs", ICLR 2018, appendix B (arXiv:1802.05957),
as used by SAGAN (arXiv:1805.08318). DCGAN blocks: Radford, Metz, Chintala, ICLR 2016 (arXiv:1511.06434).
Norm and spectral norm are injected (`norm=`, `sn=`), never switched on flags. Every block takes
`forward(x, y)`; discriminator blocks ignore the label.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sagan.nn.resample import conv3x3_avgpool, upsample_conv3x3
from sagan.nn.spectral import Wrap, init_layer

Norm = Callable[[int], nn.Module]


def conv(in_ch: int, out_ch: int, kernel: int, sn: Wrap, stride: int = 1, padding: int | None = None) -> nn.Module:
    """A Conv2d with 'same' padding by default, initialised and optionally spectrally normalised."""
    padding = kernel // 2 if padding is None else padding
    return init_layer(nn.Conv2d(in_ch, out_ch, kernel, stride, padding), sn)


class GBlock(nn.Module):
    """Residual up block: BN-ReLU-up-conv3-BN-ReLU-conv3, plus an up-sampled 1x1-conv shortcut.

    Computed with the up-sampling fused into conv1 (`upsample_conv3x3`) and after the shortcut's 1x1 conv.
    """

    def __init__(self, in_ch: int, out_ch: int, norm: Norm, sn: Wrap, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.bn1, self.conv1 = norm(in_ch), conv(in_ch, out_ch, 3, sn)
        self.bn2, self.conv2 = norm(out_ch), conv(out_ch, out_ch, 3, sn)
        self.shortcut = conv(in_ch, out_ch, 1, sn) if (in_ch != out_ch or upsample) else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.bn1(x, y))
        if self.upsample:  # up-sampling fused into conv1, and done after the 1x1 shortcut (they commute)
            h = upsample_conv3x3(h, self.conv1.weight, self.conv1.bias)
            skip = F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")
        else:
            h = self.conv1(h)
            skip = self.shortcut(x) if self.shortcut is not None else x
        return self.conv2(F.relu(self.bn2(h, y))) + skip


class DBlock(nn.Module):
    """Residual down block: ReLU-conv3-ReLU-conv3-avgpool, plus a 1x1-conv-avgpool shortcut.

    `optimized=True` is SNGAN's first block, which sees raw pixels: no ReLU before the first conv.
    Computed with the pooling fused into conv2 (`conv3x3_avgpool`) and before the shortcut's 1x1 conv.
    """

    def __init__(self, in_ch: int, out_ch: int, sn: Wrap, downsample: bool = True, optimized: bool = False):
        super().__init__()
        self.downsample, self.optimized = downsample, optimized
        self.conv1, self.conv2 = conv(in_ch, out_ch, 3, sn), conv(out_ch, out_ch, 3, sn)
        needs_shortcut = optimized or in_ch != out_ch or downsample
        self.shortcut = conv(in_ch, out_ch, 1, sn) if needs_shortcut else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _conv2_pool(self, h: torch.Tensor) -> torch.Tensor:
        if self.downsample:  # pooling fused into conv2
            return conv3x3_avgpool(h, self.conv2.weight, self.conv2.bias)
        return self.conv2(h)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self._conv2_pool(F.relu(self.conv1(x if self.optimized else F.relu(x))))
        # The 1x1 shortcut pools first (pooling and a 1x1 conv commute): 4x fewer FLOPs than conv-then-pool.
        return h + (self.shortcut(self._pool(x)) if self.shortcut is not None else x)


class UpConv(nn.Module):
    """DCGAN up block: 4x4 stride-2 transposed conv, batch norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, norm: Norm, sn: Wrap) -> None:
        super().__init__()
        self.conv = init_layer(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1), sn)
        self.bn = norm(out_ch)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x), y))


class DownConv(nn.Module):
    """DCGAN down block: 4x4 stride-2 conv, LeakyReLU(0.1), no batch norm."""

    def __init__(self, in_ch: int, out_ch: int, sn: Wrap) -> None:
        super().__init__()
        self.conv = conv(in_ch, out_ch, 4, sn, stride=2, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return F.leaky_relu(self.conv(x), 0.1)
