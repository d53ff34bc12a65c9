"""LeCam regularisation: D's outputs are pulled towards moving anchors of its outputs on the other side.

Tseng, Jiang, Liu, Yang, Yang. "Regularizing Generative Adversarial Networks under Limited Data", CVPR 2021
(arXiv:2104.03310), eq. 3 and the authors' released code: anchors alpha_R, alpha_F are exponential moving averages
of the batch means of D(real) and D(fake) (decay 0.99), updated with the current batch before the penalty

    R_LC = E[relu(D(x) - alpha_F)^2] + E[relu(alpha_R - D(G(z)))^2],

which bounds how far D's real and fake outputs can drift apart (a weighted LeCam divergence), so D does not
overfit a small data set. The anchors are the regulariser's state and go into the checkpoint.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from sagan.regularize.base import Regularizer
from sagan.training.terms import DInputs


def lecam_penalty(logits_real: torch.Tensor, logits_fake: torch.Tensor, anchor_real: torch.Tensor | float,
                  anchor_fake: torch.Tensor | float) -> torch.Tensor:
    """mean(relu(D(real) - anchor_fake)^2) + mean(relu(anchor_real - D(fake))^2)."""
    return ((logits_real.float() - anchor_fake).relu().square().mean()
            + (anchor_real - logits_fake.float()).relu().square().mean())


class LeCam(Regularizer):
    """weight * R_LC with anchors (EMAs of the batch means of D(real), D(fake)) updated at every call.

    The first update sets the anchors to the first batch's means (the authors' code copies during a warm-up);
    later ones move them by (1 - decay). In a distributed run the means are averaged over processes, so every
    process holds the same anchors.
    """

    name = "lecam"

    def __init__(self, weight: float, decay: float = 0.99) -> None:
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.weight, self.decay = float(weight), float(decay)
        self.anchors = torch.zeros(2)  # (anchor_real, anchor_fake)
        self.updates = 0

    @property
    def anchor_real(self) -> float:
        return float(self.anchors[0])

    @property
    def anchor_fake(self) -> float:
        return float(self.anchors[1])

    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        """Move the anchors towards this batch's mean D(real) and mean D(fake)."""
        means = torch.stack([logits_real.detach().float().mean(), logits_fake.detach().float().mean()])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(means)
            means /= dist.get_world_size()
        decay = self.decay if self.updates else 0.0
        self.anchors = self.anchors.to(means.device) * decay + means * (1 - decay)
        self.updates += 1

    def d_loss(self, inputs: DInputs) -> torch.Tensor | None:
        if not self.weight:
            return None
        self.update(inputs.real_logits, inputs.fake_logits)
        value = lecam_penalty(inputs.real_logits, inputs.fake_logits, self.anchors[0], self.anchors[1])
        self.last = {"lecam": value.detach(), "lecam_anchor_real": self.anchors[0],
                     "lecam_anchor_fake": self.anchors[1]}
        return self.weight * value

    def state_dict(self) -> dict:
        return {"anchor_real": self.anchor_real, "anchor_fake": self.anchor_fake, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.anchors = torch.tensor([state["anchor_real"], state["anchor_fake"]], dtype=torch.float32)
        self.updates = int(state["updates"])
