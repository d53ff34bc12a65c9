"""Balanced consistency regularisation (bCR): D should not change its mind about an augmented image.

Zhao, Singh, Lee, Zhang, Odena, Zhang. "Improved Consistency Regularization for GANs", AAAI 2021
(arXiv:2002.04724), section 3.1: with a semantics-preserving transform T,

    L_bCR = lambda_real * E[|D(x) - D(T(x))|^2] + lambda_fake * E[|D(G(z)) - D(T(G(z)))|^2]

added to D's loss only (the paper: lambda_real = lambda_fake = 10, T a random flip and a shift of a few pixels).
Consistency on reals alone is CR (Zhang et al., ICLR 2020, arXiv:1910.12027); adding the fakes balances it, so
D does not learn that augmentation artefacts mean "fake". Here T is built from the project's DiffAugment
operations (sagan.augment), with an optional random left-right flip.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sagan.augment import diff_augment, parse_policy, random_flip
from sagan.regularize.base import Regularizer
from sagan.training.terms import DInputs

Transform = Callable[[torch.Tensor], torch.Tensor]


def consistency_transform(policy: str, flip: bool = True) -> Transform:
    """bCR's T: a random left-right flip (each image with probability 1/2) when `flip`, then DiffAugment's
    `policy` ('translation', 'cutout', 'color', comma-separated) applied to every image."""
    names = parse_policy(policy)

    def transform(x: torch.Tensor) -> torch.Tensor:
        return diff_augment(random_flip(x) if flip else x, names, 1.0)

    return transform


class BalancedConsistency(Regularizer):
    """real_weight * mean((D(x) - D(T(x)))^2) + fake_weight * mean((D(G(z)) - D(T(G(z))))^2).

    D(x) and D(G(z)) are the logits of the D step's own forward; one more forward computes D(T(.)) of the sides
    whose weight is not zero. Gradients flow through both sides, as in the paper.
    """

    name = "bcr"

    def __init__(self, real_weight: float, fake_weight: float, transform: Transform) -> None:
        super().__init__()
        self.real_weight, self.fake_weight, self.transform = float(real_weight), float(fake_weight), transform

    def d_loss(self, inputs: DInputs) -> torch.Tensor | None:
        sides = [side for side in (("bcr_real", self.real_weight, inputs.real, inputs.y_real, inputs.real_logits),
                                   ("bcr_fake", self.fake_weight, inputs.fake.detach(), inputs.y_fake,
                                    inputs.fake_logits)) if side[1]]
        if not sides:
            return None
        x = torch.cat([side[2] for side in sides])
        y = None if sides[0][3] is None else torch.cat([side[3] for side in sides])
        transformed = inputs.discriminator(self.transform(x), y).float().split([side[2].shape[0] for side in sides])
        total, self.last = None, {}
        for (name, weight, _, _, logits), logits_t in zip(sides, transformed):
            value = (logits.float() - logits_t).square().mean()
            self.last[name] = value.detach()
            total = weight * value if total is None else total + weight * value
        return total
