"""FastGAN's self-supervised discriminator: D's features must be enough to redraw the real image.

Liu, Zhu, Song, Elgammal. "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image
Synthesis" (FastGAN), ICLR 2021 (arXiv:2101.04775), section 3.2: a small decoder (sagan.nn.decoder, built into
the discriminator by the model option `d_recon`) maps one of D's feature maps back to an image, and D minimises
the reconstruction error against the real image down-sampled to the decoder's size, on reals only. The term
reaches only D and its decoder, which D's optimiser trains. FastGAN measures the error with LPIPS plus MSE; here
it is the mean squared error alone, so no pretrained network is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sagan.regularize.base import Regularizer
from sagan.training.terms import DInputs


def reconstruction_loss(discriminator: nn.Module, real: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """mean((decoder(D's features of real) - real down-sampled to the decoder's size)^2).

    `discriminator` must accept `reconstruct=True` and return (logits, image), as a model built with d_recon does.
    """
    _, image = discriminator(real, y, reconstruct=True)
    target = real.detach().float()
    if target.shape[-2:] != image.shape[-2:]:
        target = F.interpolate(target, size=image.shape[-2:], mode="area")  # the mean of each pixel block
    return F.mse_loss(image.float(), target)


class Reconstruction(Regularizer):
    """weight * reconstruction_loss(D, real) at every D step (one more D forward, on the reals only)."""

    name = "recon"

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = float(weight)

    def d_loss(self, inputs: DInputs) -> torch.Tensor | None:
        if not self.weight:
            return None
        value = reconstruction_loss(inputs.discriminator, inputs.real, inputs.y_real)
        self.last = {"recon": value.detach()}
        return self.weight * value
