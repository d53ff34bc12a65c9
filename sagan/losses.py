"""GAN losses as plain functions of discriminator logits.

Hinge: Lim & Ye 2017 (arXiv:1705.02894), used by SAGAN (arXiv:1805.08318, eq. 3).
Non-saturating: Goodfellow et al. 2014 (arXiv:1406.2661).
Mode seeking: Mao, Lee, Tseng, Ma, Yang, CVPR 2019 (arXiv:1903.05628), an optional generator regulariser.
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


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's term for G to minimise: 1 / (mean|G(z1) - G(z2)| / mean|z1 - z2| + eps).

    The pairs are the batch's first and second halves, which must share their labels in a conditional model.
    """
    image_a, image_b = fake.float().chunk(2)
    z_a, z_b = z.float().chunk(2)
    return 1.0 / ((image_a - image_b).abs().mean() / (z_a - z_b).abs().mean() + eps)


LOSSES = {"hinge": (hinge_d, hinge_g), "ns": (ns_d, ns_g)}
