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


class _Episode:
    """One alarm condition: its message while it lasts, and how many clear readings in a row it has had."""

    def __init__(self) -> None:
        self.active: str | None = None
        self.clear = 0

    def update(self, message: str | None, cooldown: int) -> str | None:
        """Feed one judged reading (`message` None when clear); the message when an episode starts."""
        if message is None:
            self.clear += 1
            if self.clear >= cooldown:
                self.active = None
            return None
        self.clear = 0
        started = message if self.active is None else None
        self.active = message
        return started


class CollapseAlarm:
    """Raises an event when diversity falls far below its best so far, or D separates perfectly for long.

    - mode collapse: diversity < `ratio` x the highest diversity reading so far, judged from the reading after
      the first `warmup` ones. Diversity is measured only when the trainer publishes (samples, checkpoints),
      so a run has few readings: a short run must still be judged, hence the running best (one reading is
      enough) rather than the median of several early ones; a quarter of it is far below any healthy wobble;
    - D wins outright: mean D(real) - D(fake) above `margin` (hinge margin is 2) for `patience` readings.

    Each episode is reported once: a condition that persists, or flickers around its threshold, stays one
    episode until it has been clear for `cooldown` readings of its own signal in a row. A record without a
    diversity reading (most of them: only publishing steps have one) says nothing about collapse, so it neither
    continues nor ends a collapse episode. `active` holds the message of the current episode (None when
    healthy); the trainer shows it on the progress line.
    """

    def __init__(self, ratio: float = 0.25, warmup: int = 1, margin: float = 4.0, patience: int = 10,
                 cooldown: int = 3) -> None:
        self.ratio, self.warmup, self.margin, self.patience = ratio, warmup, margin, patience
        self.cooldown = cooldown
        self.readings = 0
        self.best = 0.0
        self.separated = 0
        self._collapse, self._separation = _Episode(), _Episode()

    @property
    def active(self) -> str | None:
        return self._collapse.active or self._separation.active

    def _collapse_message(self, diversity: float) -> str | None:
        self.readings += 1
        judged = self.readings > self.warmup
        message = None
        if judged and diversity < self.ratio * self.best:
            message = (f"possible mode collapse: sample diversity {diversity:.3f} is below {self.ratio:g}x its "
                       f"best so far {self.best:.3f}")
        self.best = max(self.best, diversity)
        return message

    def _separation_message(self, log: dict) -> str | None:
        gap = log.get("d_real", 0.0) - log.get("d_fake", 0.0)
        self.separated = self.separated + 1 if gap > self.margin else 0
        if self.separated < self.patience:
            return None
        return (f"D separates real from fake perfectly (D(real) - D(fake) = {gap:.2f} for {self.separated} "
                "readings): G may have stopped learning")

    def update(self, step: int, log: dict) -> str | None:
        """Feed one log record; returns a message when an alarm starts (once per episode)."""
        started = []
        if log.get("diversity") is not None:
            started.append(self._collapse.update(self._collapse_message(log["diversity"]), self.cooldown))
        started.append(self._separation.update(self._separation_message(log), self.cooldown))
        return "; ".join(m for m in started if m) or None
