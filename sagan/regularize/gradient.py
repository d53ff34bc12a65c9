"""R1 and R2: zero-centred gradient penalties on the discriminator's input, applied lazily.

Mescheder, Geiger, Nowozin. "Which Training Methods for GANs do actually Converge?", ICML 2018
(arXiv:1801.04406), eqs. 9 and 10: R1 = gamma/2 * E_real[|grad_x D(x)|^2], R2 the same on fakes. R3GAN (Huang,
Gokaslan, Kuleshov, Tompkin, "The GAN is dead; long live the GAN! A Modern GAN Baseline", NeurIPS 2024,
arXiv:2501.05441) uses both with the relativistic pairing loss (sagan.losses.rpgan_d).

Lazy regularisation (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020,
arXiv:1912.04958, section 4.1): the penalty is computed only every `every` D steps and multiplied by `every`,
so its average weight stays gamma while its cost (a second D forward and a double backward) falls k-fold. The
interval counts D updates (`DInputs.update`), so with n_dis > 1 it is not tied to the generator's steps.

With DiffAugment on, D sees augmented images; the gradient is taken with respect to the image before the
augmentation, through it (as StyleGAN2-ADA does), with a fresh draw of the augmentation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from sagan.regularize.base import Regularizer
from sagan.training.terms import DInputs


def gradient_penalty(discriminator: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                     augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """E_x[|grad_x D(x, y)|^2]: the squared norm of D's input gradient per sample, averaged over the batch; with
    `augment`, of D(augment(x)) with respect to x.

    Differentiable with respect to D's parameters (the gradient is taken with create_graph=True).
    """
    x = x.detach().requires_grad_(True)
    # attention through the plain-maths kernel: CUDA's fused attention kernels have no double backward, and the
    # maths kernel's (N, N/4) matrix is small at the sizes attention sits at (32x32 and below)
    with sdpa_kernel([SDPBackend.MATH]):
        logits = discriminator(x if augment is None else augment(x), y)
    (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


class GradientPenalty(Regularizer):
    """R1 (on reals, `target="real"`) or R2 (on fakes, `target="fake"`): gamma/2 * E[|grad_x D(x)|^2], computed
    every `every` D updates (update % every == 0) and then scaled by `every`."""

    def __init__(self, gamma: float, target: str = "real", every: int = 1) -> None:
        super().__init__()
        if target not in ("real", "fake"):
            raise ValueError(f"target must be 'real' or 'fake', got {target!r}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.gamma, self.target, self.every = float(gamma), target, int(every)
        self.name = "r1" if target == "real" else "r2"

    def d_loss(self, inputs: DInputs) -> torch.Tensor | None:
        if not self.gamma or inputs.update % self.every:
            return None
        x, y = (inputs.real, inputs.y_real) if self.target == "real" else (inputs.fake, inputs.y_fake)
        value = gradient_penalty(inputs.discriminator, x, y, inputs.augment)
        self.last = {self.name: value.detach()}
        return (self.gamma / 2 * self.every) * value
