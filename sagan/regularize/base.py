"""The one interface every discriminator regulariser here has, and the set a training loop holds.

A discriminator step calls `penalty(step, discriminator, real, y_real, logits_real, fake, y_fake, logits_fake)`
after its own forward and adds what comes back (a weighted scalar, or None when the term is skipped this step)
to D's loss before its backward:

- `step`: a counter of discriminator steps (lazy terms act when step % interval == 0);
- `discriminator`: the module the step calls (its forward may be run again: R1, R2, bCR, reconstruction);
- `real`, `fake`: D's inputs in this step, after any augmentation (`fake` detached from G);
- `y_real`, `y_fake`: their labels (None for an unconditional model);
- `logits_real`, `logits_fake`: D's outputs on them in this step's forward, (B,) each, still attached to the
  graph (LeCam and bCR back-propagate through them).

Call it inside the same autocast as D's forward. `stats()` gives the last unweighted values for the log,
`state_dict()` / `load_state_dict()` what a checkpoint must hold to resume exactly.
"""

from __future__ import annotations

import torch
from torch import nn


class Regularizer:
    """A term of D's loss; subclasses set `name` and implement `penalty` (stateless ones keep the empty state)."""

    name = ""

    def __init__(self) -> None:
        self.last: dict[str, torch.Tensor] = {}  # unweighted values of the last penalty, for stats()

    def penalty(self, step: int, discriminator: nn.Module, real: torch.Tensor, y_real: torch.Tensor | None,
                logits_real: torch.Tensor, fake: torch.Tensor, y_fake: torch.Tensor | None,
                logits_fake: torch.Tensor) -> torch.Tensor | None:
        """The weighted term to add to D's loss at this step, or None when it is skipped."""
        raise NotImplementedError

    def stats(self) -> dict[str, float]:
        """The last unweighted values, e.g. {"r1": 0.02}; converted to floats (a device sync) only here."""
        return {k: float(v) for k, v in self.last.items()}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`'s output (nothing for a stateless term)."""


class RegularizerSet:
    """The regularisers a run uses, called as one: the sum of their terms, their stats and their state by name."""

    def __init__(self, regularizers: list[Regularizer]) -> None:
        self.regularizers = list(regularizers)

    def __bool__(self) -> bool:
        return bool(self.regularizers)

    def __iter__(self):
        return iter(self.regularizers)

    def names(self) -> list[str]:
        return [r.name for r in self.regularizers]

    def penalty(self, step: int, discriminator: nn.Module, real: torch.Tensor, y_real: torch.Tensor | None,
                logits_real: torch.Tensor, fake: torch.Tensor, y_fake: torch.Tensor | None,
                logits_fake: torch.Tensor) -> torch.Tensor | None:
        """The sum of the terms that act at this step, or None when none does."""
        total = None
        for reg in self.regularizers:
            term = reg.penalty(step, discriminator, real, y_real, logits_real, fake, y_fake, logits_fake)
            if term is not None:
                total = term if total is None else total + term
        return total

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for reg in self.regularizers:
            out.update(reg.stats())
        return out

    def state_dict(self) -> dict:
        return {reg.name: reg.state_dict() for reg in self.regularizers}

    def load_state_dict(self, state: dict) -> None:
        """Resume each regulariser from its entry; one the checkpoint lacks (switched on since) starts fresh."""
        for reg in self.regularizers:
            if reg.name in state:
                reg.load_state_dict(state[reg.name])
