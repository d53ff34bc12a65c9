"""Differentiable augmentation for small data sets, and its adaptive probability.

DiffAugment (Zhao, Liu, Lin, Zhu, Han, NeurIPS 2020, arXiv:2006.10738): the same kind of random, differentiable
augmentation T goes to reals and fakes wherever D sees them, in D's step (D(T(x)), D(T(G(z)))) and in G's step
(D(T(G(z))), gradients flowing back through T), so D cannot memorise a small set and G is not taught to
reproduce the augmentations. Three policies from the paper, on images in [-1, 1]:

- `translation`: shift by up to 1/8 of the image size each way, filled with 0 (mid-grey);
- `cutout`: zero a square of half the image size at a random centre (clipped at the border);
- `color`: brightness +U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5), then clamped to [-1, 1].

Each operation is applied to each image independently with probability p (1 in DiffAugment). `augment_p: auto`
steers p as ADA does (Karras et al., NeurIPS 2020, arXiv:2006.06676): r_t = E[sign(D(real))] over the last
ADA_INTERVAL D steps is held near ADA_TARGET by moving p up or down by (images seen) / (ada_kimg * 1000).

All randomness comes from torch's global RNG (on the images' device), which checkpoints store, so a resumed run
draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from sagan.errors import ConfigError, did_you_mean

POLICIES = ("translation", "cutout", "color")
ADA_TARGET = 0.6  # ADA's target for r_t = E[sign(D(real))]
ADA_INTERVAL = 4  # D steps between adjustments of p, as in ADA


def parse_policy(text: str | None) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' (or None) -> () (off). Raises ConfigError."""
    names = tuple(part.strip() for part in (text or "").split(",") if part.strip())
    for name in names:
        if name not in POLICIES:
            raise ConfigError(f"unknown augment policy {name!r} in augment={text!r}{did_you_mean(name, POLICIES)}; "
                              f"choose from {', '.join(POLICIES)}, comma-separated ('' for none)")
    if len(set(names)) != len(names):
        raise ConfigError(f"augment={text!r} names a policy twice; give each of {', '.join(POLICIES)} at most once")
    return names


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _per_sample(x: torch.Tensor, p: float) -> torch.Tensor:
    """A (B, 1, 1, 1) bool mask, True with probability p for each image."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p


def translation(x: torch.Tensor, p: float = 1.0, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by whole pixels, up to `ratio` of its size each way; uncovered pixels become 0."""
    b, _, h, w = x.shape
    ph, pw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    apply = _per_sample(x, p)
    dy = torch.randint(-ph, ph + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-pw, pw + 1, (b, 1, 1), device=x.device)
    if ph == 0 and pw == 0:
        return x
    padded = F.pad(x, [pw, pw, ph, ph])  # zeros around: (B, C, H + 2ph, W + 2pw)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + ph + dy  # (B, H, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) + pw + dx  # (B, 1, W)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    shifted = padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    return torch.where(apply, shifted, x)


def cutout(x: torch.Tensor, p: float = 1.0, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of `ratio` times the image's size in each image, centred anywhere (clipped at the border)."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    apply = _per_sample(x, p)
    cy = torch.randint(0, h, (b, 1, 1, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1, 1, 1), device=x.device)
    top, left = cy - sh // 2, cx - sw // 2
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    inside = (rows >= top) & (rows < top + sh) & (cols >= left) & (cols < left + sw)  # (B, 1, H, W)
    return torch.where(apply & inside, torch.zeros((), dtype=x.dtype, device=x.device), x)


def color(x: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """Random brightness, saturation and contrast per image, as DiffAugment's `color`, clamped to [-1, 1]."""
    b = x.shape[0]
    apply = _per_sample(x, p)
    brightness, saturation, contrast = torch.rand(3, b, 1, 1, 1, device=x.device).to(x.dtype)
    y = x + (brightness - 0.5)
    mean = y.mean(dim=1, keepdim=True)  # per pixel, over channels: grey images are left as they are
    y = (y - mean) * (saturation * 2) + mean
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * (contrast + 0.5) + mean
    return torch.where(apply, y.clamp(-1, 1), x)


OPS = {"translation": translation, "cutout": cutout, "color": color}


def random_flip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror each image of x (B, C, H, W) left-right with probability p: the data set's x-flips (StyleGAN2-ADA's
    `--mirror`, for data whose mirror images are as likely as the images) and bCR's flip. Not among the
    policies, which are the DiffAugment paper's three."""
    return torch.where(_per_sample(x, p), x.flip(-1), x)


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...], p: float = 1.0) -> torch.Tensor:
    """Apply each operation of `policy` to each image of `x` (B, C, H, W) independently with probability p.

    The identity (no random numbers drawn) when p is 0 or the policy is empty; keeps shape, dtype and memory
    format; differentiable with respect to x.
    """
    names = parse_policy(policy) if isinstance(policy, str) else policy
    if p <= 0 or not names:
        return x
    out = x
    for name in names:
        out = OPS[name](out, p)
    return out.to(x.dtype).contiguous(memory_format=_memory_format(x))


class Augment:
    """The training loop's augmentation: `augment(x)` for every batch D sees, `observe(d_real)` after each D step.

    With `adaptive`, p starts at 0 and moves as ADA's: every ADA_INTERVAL D steps, r_t = mean(sign(D(real)))
    over those steps (over all processes of a distributed run); p += sign(r_t - ADA_TARGET) * images / (kimg *
    1000), clamped to [0, 1], so p can go from 0 to 1 in `kimg` thousand real images. Its state (p and the running
    sums) is part of the checkpoint.
    """

    def __init__(self, policy: str, p: float | str = 1.0, kimg: float = 20.0) -> None:
        self.policy = parse_policy(policy)
        self.adaptive = p == "auto"
        self.p = 0.0 if self.adaptive else float(p)
        self.kimg = kimg
        self.rt: float | None = None  # the last r_t, for the log
        self._sum: torch.Tensor | None = None  # (sum of sign(D(real)), count) since the last adjustment
        self._steps = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.policy, self.p)

    def observe(self, d_real: torch.Tensor) -> None:
        """Count one D step's logits on reals; adjust p every ADA_INTERVAL calls (a no-op at a fixed p)."""
        if not self.adaptive:
            return
        signs = torch.stack([d_real.detach().float().sign().sum(), torch.tensor(float(d_real.numel()),
                                                                                device=d_real.device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(signs)  # every step, so every rank holds the same sums (and checkpoint)
        self._sum = signs if self._sum is None else self._sum.to(signs.device) + signs
        self._steps += 1
        if self._steps < ADA_INTERVAL:
            return
        total, count = self._sum.tolist()
        self.rt = total / count
        step = count / (self.kimg * 1000)
        self.p = min(max(self.p + (step if self.rt > ADA_TARGET else -step if self.rt < ADA_TARGET else 0.0), 0.0),
                     1.0)
        self._sum, self._steps = None, 0

    def stats(self) -> dict:
        """What metrics.jsonl logs: the probability, and r_t once one has been measured."""
        out = {"augment_p": self.p}
        if self.rt is not None:
            out["ada_rt"] = self.rt
        return out

    def state_dict(self) -> dict:
        sums = [0.0, 0.0] if self._sum is None else self._sum.tolist()
        return {"policy": ",".join(self.policy), "p": self.p, "adaptive": self.adaptive, "rt": self.rt,
                "sum": sums, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        """Resume p and the running sums; a fixed p keeps the config's value (it may have been changed)."""
        if not self.adaptive:
            return
        self.p, self.rt = float(state["p"]), state["rt"]
        if state["adaptive"]:
            self._steps = int(state["steps"])
            self._sum = torch.tensor(state["sum"]) if self._steps else None
