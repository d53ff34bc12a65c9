"""Batch norms that take a class label, and the projection head of a conditional discriminator.

Conditional batch norm: de Vries et al., "Modulating early visual processing by language", NeurIPS 2017
(arXiv:1707.00683); Dumoulin et al. 2017. Projection discriminator: Miyato & Koyama, "cGANs with
Projection Discriminator", ICLR 2018 (arXiv:1802.05637). SAGAN uses both for its ImageNet models.
"""

from __future__ import annotations

import torch
from torch import nn

from sagan.nn.spectral import Wrap, init_layer, no_sn


class BatchNorm(nn.BatchNorm2d):
    """Plain batch norm with the conditional interface `forward(x, y)`; the label is ignored."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose per-channel gain and bias are looked up by class (gain starts at 1, bias at 0).

    The gain and bias embeddings are not spectrally normalised, as in the authors' code: dividing a
    table of ones by its largest singular value would shrink every gain to 1/sqrt(C).
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("a conditional model needs class labels y")
        h = self.bn(x)
        return h * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


def norm_layer(num_classes: int):
    """A factory `f(channels)` of conditional batch norm when num_classes > 0, else plain batch norm."""
    if num_classes > 0:
        return lambda channels: ConditionalBatchNorm(channels, num_classes)
    return lambda channels: BatchNorm(channels)


class ProjectionHead(nn.Module):
    """D's last layer: logit = linear(h) + <embed(y), h>, the second term only for conditional models."""

    def __init__(self, in_features: int, num_classes: int = 0, sn: Wrap = no_sn) -> None:
        super().__init__()
        self.linear = init_layer(nn.Linear(in_features, 1), sn)
        self.embed = init_layer(nn.Embedding(num_classes, in_features), sn) if num_classes > 0 else None

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.linear(h).squeeze(1)  # (B,)
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional model needs class labels y")
            out = out + (self.embed(y) * h).sum(1)
        return out
