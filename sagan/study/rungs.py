"""Successive halving (Jamieson & Talwalkar 2016; the synchronous form of ASHA, Li et al. 2020): every
configuration is screened at a short budget, the best 1/eta of each rung is promoted to a budget eta times longer.

Pure bookkeeping, no training: how many configurations each rung holds, each rung's step budget, and which
configurations a rung's scores promote (and why, in words for the study's tables).

Why not Optuna's SuccessiveHalvingPruner/HyperbandPruner: they decide inside a running trial from the
intermediate values reported so far, so what they prune depends on the order in which runs finish and on a
storage that lives beside the run folders. Here the run folders are the only truth: a rung's promotions are a
function of that rung's scores alone, the same after a kill and a rerun, and the few lines below say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def rung_sizes(n: int, eta: int, rungs: int | None = None) -> list[int]:
    """How many configurations each rung runs: n, then n // eta (at least 1), ...; `rungs` None runs until one
    configuration is left (1 + floor(log_eta n) rungs)."""
    if rungs is None:
        rungs = 1
        while eta**rungs <= n:
            rungs += 1
    sizes = [n]
    for _ in range(rungs - 1):
        sizes.append(max(1, sizes[-1] // eta))
    return sizes


def rung_budgets(first: int, eta: int, rungs: int) -> list[int]:
    """The step budget of each rung: first, first * eta, first * eta**2, ..."""
    return [first * eta**r for r in range(rungs)]


def rank(scores: Mapping[str, float | None], maximize: bool) -> list[str]:
    """Configuration ids best first; a run without a score (it failed) ranks last; ties keep the id order, so the
    ranking is the same on every rerun."""

    def key(item: tuple[str, float | None]) -> tuple:
        name, score = item
        if score is None or math.isnan(score):
            return (1, 0.0, name)
        return (0, -score if maximize else score, name)

    return [name for name, _ in sorted(scores.items(), key=key)]


def promote(scores: Mapping[str, float | None], keep: int, maximize: bool) -> list[str]:
    """The `keep` best configurations with a score, best first."""
    return [name for name in rank(scores, maximize) if scores[name] is not None
            and not math.isnan(scores[name])][:keep]


def why(name: str, order: Sequence[str], promoted: Sequence[str], keep: int, scores: Mapping[str, float | None],
        last: bool) -> str:
    """The words for one configuration's fate in a rung."""
    place = f"rank {order.index(name) + 1} of {len(order)}"
    if scores[name] is None or math.isnan(scores[name]):
        return f"{place}: no score (the run failed); not promoted"
    if name in promoted:
        return f"{place}: in the best {keep}; " + ("a finalist" if last else "promoted")
    return f"{place}: outside the best {keep}; stops here"
