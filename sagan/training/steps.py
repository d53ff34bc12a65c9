"""One discriminator update, one generator update, and the generator's moving average (G_ema).

The recipe is SAGAN's (arXiv:1805.08318, section 5): the hinge loss and TTUR, with real and fake batches through D
together. Extra loss terms (sagan.training.terms) are added to either update's loss before its finite check.
"""

from __future__ import annotations

import torch
from torch import nn

from sagan.augment import Augment
from sagan.runtime import Runtime
from sagan.training.terms import DInputs, GInputs, LossTerms


def generate(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None, rt: Runtime,
             keep_graph: bool) -> torch.Tensor:
    """Fakes for a step: with G's graph when the G step will back-propagate through them, else without."""
    with torch.set_grad_enabled(keep_graph), rt.autocast():
        return generator(z, y)


def fake_labels(num_classes: int, n: int, paired: bool, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """Random labels for n fakes (None for an unconditional model); `paired`: the two halves share them, as the
    mode-seeking term compares the halves pairwise."""
    if not num_classes:
        return None
    if paired:
        return torch.randint(0, num_classes, (n // 2,), device=device).repeat(2)
    return torch.randint(0, num_classes, (n,), device=device)


def d_step(discriminator: nn.Module, opt_d: torch.optim.Optimizer, loss_fn, real: torch.Tensor,
           y_real: torch.Tensor | None, fake: torch.Tensor, y_fake: torch.Tensor | None, rt: Runtime,
           augment: Augment | None = None, terms: LossTerms | None = None, step: int = 0, update: int | None = None):
    """One discriminator update; returns (loss, D(real) logits, D(fake) logits). `fake` is detached here.

    Real and fake go through D as one batch: one spectral-norm power iteration per step and larger matmuls.
    `augment` (DiffAugment) transforms that batch, each image with its own random draw. `terms` add their D terms
    (given `step`, the training step, and `update`, the count of D updates before this one: `step` by default)
    to the loss, computed under the same autocast as D's forward.
    Raises FloatingPointError before stepping when the loss is not finite on any rank, so the weights stay finite.
    """
    fake = fake.detach().to(real.dtype)
    with rt.autocast():
        y = None if y_real is None else torch.cat([y_real, y_fake])
        both = torch.cat([real, fake])
        logits = discriminator(both if augment is None else augment(both), y).float()
    real_logits, fake_logits = logits.split(real.shape[0])
    loss = loss_fn(real_logits, fake_logits)
    if terms:
        with rt.autocast():  # terms that run D again run it as the update's forward did
            extra = terms.d_loss(DInputs(step, step if update is None else update, discriminator, real, y_real,
                                         fake, y_fake, real_logits, fake_logits, augment, rt))
        loss = loss if extra is None else loss + extra.float()
    if not rt.all_finite(loss):
        raise FloatingPointError("discriminator")
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return loss.detach(), real_logits.detach(), fake_logits.detach()


def g_step(discriminator: nn.Module, opt_g: torch.optim.Optimizer, loss_fn, fake: torch.Tensor,
           y: torch.Tensor | None, rt: Runtime, step_optimizer: bool = True,
           regulariser: torch.Tensor | None = None, augment: Augment | None = None, terms: LossTerms | None = None,
           step: int = 0, z: torch.Tensor | None = None, real: torch.Tensor | None = None,
           y_real: torch.Tensor | None = None, pair_with_real: bool = False) -> torch.Tensor:
    """One generator update through `fake` (made by `generate(..., keep_graph=True)` from noise `z`), with
    `regulariser` (a scalar computed from `fake`) and the G terms of `terms` (which see `step`, `z` and the step's
    last real batch `real`, `y_real`) added to the loss; the optimiser is stepped unless step_optimizer is False.
    `augment` (DiffAugment) transforms the fakes before D, and G's gradients flow back through it.
    `pair_with_real`: D also scores `real` in the same forward, and the loss is `loss_fn(D(fake), D(real))`, for
    the losses that compare the two (sagan.losses.NEEDS_REAL_IN_G: RpGAN).

    `discriminator` is the plain module: its weights get no gradient (requires_grad off, which also skips
    their weight-gradient kernels) and, in a distributed run, no synchronisation.
    """
    if pair_with_real and real is None:
        raise ValueError("pair_with_real needs the real batch")
    discriminator.requires_grad_(False)
    try:
        with rt.autocast():
            x = fake if not pair_with_real else torch.cat([fake, real.detach().to(fake.dtype)])
            yy = y if not pair_with_real or y is None else torch.cat([y, y_real])
            logits = discriminator(x if augment is None else augment(x), yy).float()
        if pair_with_real:
            fake_logits, real_logits = logits.split(fake.shape[0])
            loss = loss_fn(fake_logits, real_logits)
        else:
            fake_logits = logits
            loss = loss_fn(fake_logits)
        if regulariser is not None:
            loss = loss + regulariser
        if terms:
            with rt.autocast():
                extra = terms.g_loss(GInputs(step, discriminator, fake, y, z, fake_logits, real, y_real, augment, rt))
            loss = loss if extra is None else loss + extra.float()
        if not rt.all_finite(loss):
            raise FloatingPointError("generator")
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        discriminator.requires_grad_(True)
    if step_optimizer:
        opt_g.step()
    return loss.detach()


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BN stats, SN vectors) copied."""
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def ema_decay_at(step: int, decay: float, start: int = 0) -> float:
    """G_ema's decay at a step: 0 (copy) before `start`, then min(decay, (1 + t) / (10 + t)).

    The warm-up (as in TensorFlow's ExponentialMovingAverage with num_updates) keeps G_ema from averaging
    in the untrained first weights, which matters for CPU runs of only a few thousand steps.
    """
    if step < start:
        return 0.0
    t = step - start
    return min(decay, (1.0 + t) / (10.0 + t))
