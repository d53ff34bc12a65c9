"""A small Fashion-MNIST classifier used as a domain feature extractor.

Inception-v3 features are the lingua franca of GAN scores, but on 28x28 grey clothes they measure mostly
how ImageNet sees upsampled blobs. A classifier trained on the data set itself gives features that know the
domain, and a class histogram of generated samples (mode coverage). Scores from it carry `_fmnist` in their
names so they are never mistaken for FID. The weights are trained by `scripts/train_fmnist_classifier.py`
and shipped in `sagan/weights/`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FMNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# Pixel statistics of the Fashion-MNIST training set, in [0, 1].
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class FmnistNet(nn.Module):
    """A 5-layer CNN for (B, 1, 28, 28) uint8 images: `features` (B, 128) and `logits` (B, 10)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 64, 128), num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.body = nn.Sequential(
            _conv(1, w1), nn.MaxPool2d(2),  # (B, w1, 14, 14)
            _conv(w1, w2), _conv(w2, w3), nn.MaxPool2d(2),  # (B, w3, 7, 7)
            _conv(w3, w4),  # (B, w4, 7, 7)
        )  # fmt: skip
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(w4, num_classes)
        self.feature_dim = w4
        self.num_classes = num_classes

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1, 28, 28) -> normalised float, on the model's device."""
        x = images.to(self.head.weight.device, torch.float32) / 255.0
        return (x - FMNIST_MEAN) / FMNIST_STD

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, 128) after global average pooling, logits (B, 10)) of uint8 images."""
        h = self.body(self.preprocess(images))
        feats = F.adaptive_avg_pool2d(h, 1).flatten(1)  # (B, w4)
        return feats, self.head(self.dropout(feats))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[1]
