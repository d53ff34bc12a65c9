"""GAN losses as plain functions of discriminator logits.

Hinge: Lim & Ye 2017 (arXiv:1705.02894), used by SAGAN (arXiv:1805.08318, eq. 3).
Non-saturating: Goodfellow et al. 2014 (arXiv:1406.2661).
Mode seeking: Mao, Lee, Tseng, Ma, Yang, CVPR 2019 (arXiv:1903.05628), an optional generator regulariser.
Relativistic pairing (RpGAN): Jolicoeur-Martineau 2019 (arXiv:1807.00734), the loss of R3GAN (Huang, Gokaslan,
Kuleshov, Tompkin, "The GAN is dead; long live the GAN! A Modern GAN Baseline", NeurIPS 2024, arXiv:2501.05441),
which pairs it with the R1 and R2 penalties of sagan.regularize.

Every generator loss takes `(fake, real=None)`: D's logits on the fakes and, for the losses in NEEDS_REAL_IN_G,
on a batch of reals of the same size, which the generator step must then compute too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -fake.mean()


def ns_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[softplus(-D(x))] + E[softplus(D(G(z)))]: binary cross-entropy on logits."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def ns_g(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """E[softplus(-D(G(z)))]: the non-saturating generator loss."""
    return F.softplus(-fake).mean()


def rpgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[softplus(-(D(x_i) - D(G(z_i))))]: each real is paired with the fake at the same batch position."""
    _check_pairs(real, fake)
    return F.softplus(-(real - fake)).mean()


def rpgan_g(fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """E[softplus(-(D(G(z_i)) - D(x_i)))]: the mirror of rpgan_d; needs D's logits on reals (`real`)."""
    if real is None:
        raise ValueError("the RpGAN generator loss needs D's logits on a batch of reals as well as on the fakes")
    _check_pairs(real, fake)
    return F.softplus(-(fake - real)).mean()


def _check_pairs(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape != fake.shape:
        raise ValueError(f"RpGAN pairs reals with fakes one to one: got {tuple(real.shape)} and {tuple(fake.shape)}")


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's term for G to minimise: 1 / (mean|G(z1) - G(z2)| / mean|z1 - z2| + eps).

    The pairs are the batch's first and second halves, which must share their labels in a conditional model.
    """
    image_a, image_b = fake.float().chunk(2)
    z_a, z_b = z.float().chunk(2)
    return 1.0 / ((image_a - image_b).abs().mean() / (z_a - z_b).abs().mean() + eps)


LOSSES = {"hinge": (hinge_d, hinge_g), "ns": (ns_d, ns_g), "rpgan": (rpgan_d, rpgan_g)}
NEEDS_REAL_IN_G = frozenset({"rpgan"})  # losses whose G loss also takes D's logits on reals
