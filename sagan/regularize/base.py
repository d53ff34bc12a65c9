"""What the terms here share beyond the loop's `LossTerm` interface (sagan.training.terms): the last values.

A term computes its value as a tensor in the update and must not turn it into a float there (a device sync per
step); `Regularizer` keeps the last unweighted values in `self.last` and converts them only when the train record
asks for `stats()`, every log_every steps.
"""

from __future__ import annotations

import torch

from sagan.training.terms import LossTerm


class Regularizer(LossTerm):
    """A `LossTerm` whose `stats()` are the last unweighted values it recorded in `self.last` (e.g. {"r1": t})."""

    def __init__(self) -> None:
        self.last: dict[str, torch.Tensor] = {}

    def stats(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.last.items()}
