"""GAN losses as plain functions of discriminator logits.

Hinge: Lim & Ye 2017 (arXiv:1705.02894), used by SAGAN (arXiv:1805.08318, eq. 3).
Non-saturating: Goodfellow et al. 2014 (arXiv:1406.2661).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -fake.mean()


def ns_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[softplus(-D(x))] + E[softplus(D(G(z)))]: binary cross-entropy on logits."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def ns_g(fake: torch.Tensor) -> torch.Tensor:
    """E[softplus(-D(G(z)))]: the non-saturating generator loss."""
    return F.softplus(-fake).mean()


LOSSES = {"hinge": (hinge_d, hinge_g), "ns": (ns_d, ns_g)}
