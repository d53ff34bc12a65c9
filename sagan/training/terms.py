"""Extra loss terms of the discriminator's and the generator's updates: where a regulariser plugs in.

A term is a `LossTerm`: it looks at one update's inputs and logits (`DInputs` in D's step, `GInputs` in G's), and
returns a scalar to add to that update's loss, or None where it does not apply (a lazy penalty every k steps, or a
term of the other network). The sum goes through the same finite check as the loss itself, so a non-finite term
stops the run like a non-finite loss. A term that keeps state across steps (moving anchors, running means) returns
it from `state_dict`; checkpoints store it under "loss_terms" and a resume hands it back to `load_state_dict`.
`stats` adds values to each train record (metrics.jsonl, TensorBoard).

The terms themselves (R1/R2, LeCam, bCR, FastGAN's reconstruction, mode seeking) are in sagan.regularize, whose
`loss_terms(cfg, model)` turns a config into the run's `LossTerms`. To add one: a subclass of `LossTerm` there and
one line in `loss_terms`; the loop, the update functions and the checkpoint code stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sagan.augment import Augment
from sagan.runtime import Runtime


@dataclass
class DInputs:
    """One discriminator update as a term sees it. The logits are float and carry D's graph; `discriminator` is
    the module the update calls (DDP-wrapped in a distributed run), for a term that needs another forward pass
    (R1 on reals with requires_grad, consistency on augmented copies)."""

    step: int  # the training step (0-based) this update belongs to; all n_dis updates of a step share it
    update: int  # D updates before this one in the run (step * n_dis + i): the clock of lazy terms
    discriminator: nn.Module
    real: torch.Tensor  # (B, C, H, W), in [-1, 1], not augmented (mirrored with cfg.mirror)
    y_real: torch.Tensor | None
    fake: torch.Tensor  # (B, C, H, W), detached from G
    y_fake: torch.Tensor | None
    real_logits: torch.Tensor  # (B,)
    fake_logits: torch.Tensor  # (B,)
    augment: Augment | None
    rt: Runtime


@dataclass
class GInputs:
    """One generator update as a term sees it: the fakes with G's graph, their noise, D's logits for them (float,
    with the graph), and the step's last real batch (for terms that pair fakes with reals)."""

    step: int
    discriminator: nn.Module  # the plain module; its weights get no gradient in G's update
    fake: torch.Tensor  # (B, C, H, W), with G's graph
    y_fake: torch.Tensor | None
    z: torch.Tensor | None  # (B, z_dim)
    fake_logits: torch.Tensor  # (B,)
    real: torch.Tensor | None
    y_real: torch.Tensor | None
    augment: Augment | None
    rt: Runtime


class LossTerm:
    """An extra term of D's and/or G's loss; override what applies. `name` keys its state and its stats."""

    name = "term"

    def d_loss(self, inputs: DInputs) -> torch.Tensor | None:
        """A scalar to add to D's loss in this update, or None."""
        return None

    def g_loss(self, inputs: GInputs) -> torch.Tensor | None:
        """A scalar to add to G's loss in this update, or None."""
        return None

    def stats(self) -> dict[str, float]:
        """Values for the train record (logged every log_every steps)."""
        return {}

    def state_dict(self) -> dict:
        """What a resume needs to continue exactly as an uninterrupted run would (plain values and tensors)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what `state_dict` returned."""


class LossTerms:
    """The run's terms, applied in order; empty when the config asks for none."""

    def __init__(self, terms: list[LossTerm]) -> None:
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"loss terms need distinct names, got {names}")
        self.terms = terms

    def __bool__(self) -> bool:
        return bool(self.terms)

    def names(self) -> list[str]:
        """The terms' names, in the order they are applied."""
        return [t.name for t in self.terms]

    def d_loss(self, inputs: DInputs) -> torch.Tensor | None:
        return _total(t.d_loss(inputs) for t in self.terms)

    def g_loss(self, inputs: GInputs) -> torch.Tensor | None:
        return _total(t.g_loss(inputs) for t in self.terms)

    def stats(self) -> dict[str, float]:
        return {k: v for t in self.terms for k, v in t.stats().items()}

    def state_dict(self) -> dict[str, dict]:
        """{name: state} of the terms that keep any."""
        states = {t.name: t.state_dict() for t in self.terms}
        return {name: state for name, state in states.items() if state}

    def load_state_dict(self, states: dict[str, dict]) -> None:
        """A term absent from `states` (new in this session, or stateless) starts fresh."""
        for t in self.terms:
            if t.name in states:
                t.load_state_dict(states[t.name])


def _total(values) -> torch.Tensor | None:
    total = None
    for value in values:
        if value is not None:
            total = value if total is None else total + value
    return total

