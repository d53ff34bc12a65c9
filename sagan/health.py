"""Training-health signals: attention gains, spectral-norm sigmas, sample diversity, and a collapse alarm."""

from __future__ import annotations

import torch
from torch import nn

from sagan.nn import SelfAttention, sigma_estimates


def attention_gains(net: nn.Module, prefix: str) -> dict[str, float]:
    """gamma of every attention block, keyed like "gamma/G.16" (16: the feature-map resolution)."""
    out = {}
    for name, m in net.named_modules():
        if isinstance(m, SelfAttention):
            out[f"gamma/{prefix}.{name.split('.')[-1]}"] = float(m.gamma.detach())
    return out


def sigma_summary(net: nn.Module, prefix: str) -> dict[str, float]:
    """Largest, mean and smallest sigma estimate over the spectrally normalised layers of a network."""
    sigmas = list(sigma_estimates(net).values())
    if not sigmas:
        return {}
    return {f"sigma/{prefix}.max": max(sigmas), f"sigma/{prefix}.mean": sum(sigmas) / len(sigmas),
            f"sigma/{prefix}.min": min(sigmas)}


def health_stats(generator: nn.Module, discriminator: nn.Module) -> dict[str, float]:
    """Gains and sigma summaries of both networks."""
    out = attention_gains(generator, "G") | attention_gains(discriminator, "D")
    return out | sigma_summary(generator, "G") | sigma_summary(discriminator, "D")


@torch.no_grad()
def sample_diversity(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None, device: torch.device) -> float:
    """Mean pairwise L2 distance between G's images of a fixed batch, per pixel: falls towards 0 in collapse."""
    was_training = generator.training
    generator.eval()
    x = generator(z.to(device), None if y is None else y.to(device)).float().flatten(1)
    generator.train(was_training)
    n = x.shape[0]
    d = torch.cdist(x, x)
    return float(d.sum() / (n * (n - 1)) / x.shape[1] ** 0.5)


class CollapseAlarm:
    """Raises an event when diversity falls far below its early value, or D separates perfectly for long.

    - mode collapse: diversity < `ratio` x the median of the first `warmup` readings;
    - D wins outright: mean D(real) - D(fake) above `margin` (hinge margin is 2) for `patience` readings.

    Each episode is reported once: a condition that persists, or flickers around its threshold, stays one
    episode until it has been clear for `cooldown` readings in a row. `active` holds the message of the
    current episode (None when healthy); the trainer shows it on the progress line.
    """

    def __init__(self, ratio: float = 0.25, warmup: int = 5, margin: float = 4.0, patience: int = 10,
                 cooldown: int = 3) -> None:
        self.ratio, self.warmup, self.margin, self.patience = ratio, warmup, margin, patience
        self.cooldown = cooldown
        self.early: list[float] = []
        self.separated = 0
        self.clear = 0
        self.active: str | None = None
        self._kind: str | None = None

    def check(self, log: dict) -> tuple[str, str] | None:
        """(kind, message) of the condition this reading shows, or None; updates the running counts."""
        problem = None
        diversity = log.get("diversity")
        if diversity is not None:
            if len(self.early) < self.warmup:
                self.early.append(diversity)
            else:
                reference = sorted(self.early)[len(self.early) // 2]
                if diversity < self.ratio * reference:
                    message = (f"possible mode collapse: sample diversity {diversity:.3f} is below "
                               f"{self.ratio:g}x its early value {reference:.3f}")
                    problem = ("collapse", message)
        gap = log.get("d_real", 0.0) - log.get("d_fake", 0.0)
        self.separated = self.separated + 1 if gap > self.margin else 0
        if problem is None and self.separated >= self.patience:
            message = (f"D separates real from fake perfectly (D(real) - D(fake) = {gap:.2f} for "
                       f"{self.separated} readings): G may have stopped learning")
            problem = ("separation", message)
        return problem

    def update(self, step: int, log: dict) -> str | None:
        """Feed one log record; returns a message when an alarm starts (once per episode)."""
        problem = self.check(log)
        if problem is None:
            self.clear += 1
            if self.clear >= self.cooldown:
                self._kind, self.active = None, None
            return None
        self.clear = 0
        kind, message = problem
        started = message if kind != self._kind else None
        self._kind, self.active = kind, message
        return started
