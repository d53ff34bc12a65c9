"""Mode seeking: a term of the generator's loss that pushes different noise to different images.

Mao, Lee, Tseng, Ma, Yang. "Mode Seeking Generative Adversarial Networks for Diverse Image Synthesis", CVPR 2019
(arXiv:1903.05628): G minimises 1 / (|G(z1) - G(z2)| / |z1 - z2|) (sagan.losses.mode_seeking) over the batch's
two halves, whose labels the loop pairs (sagan.training.steps.fake_labels).
"""

from __future__ import annotations

import torch

from sagan.losses import mode_seeking
from sagan.regularize.base import Regularizer
from sagan.training.terms import GInputs


class ModeSeeking(Regularizer):
    """`weight` x MSGAN's term in G's loss; its last unweighted value is logged as "mode_seeking"."""

    name = "mode_seeking"

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = float(weight)

    def g_loss(self, inputs: GInputs) -> torch.Tensor:
        value = mode_seeking(inputs.fake, inputs.z)
        self.last = {"mode_seeking": value.detach()}
        return self.weight * value
