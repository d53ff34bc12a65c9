"""One readable training loop: n_dis discriminator steps, one generator step, EMA, checkpoints.

The recipe is SAGAN's (arXiv:1805.08318, section 5): spectral norm in G and D, the hinge loss, and TTUR
(Heusel et al. 2017, arXiv:1706.08500) with lr_G 1e-4, lr_D 4e-4 and Adam betas (0.0, 0.9).

A run is a sequence of stages (`_train`): build the parts (networks, optimisers, data order, augmentation, loss
terms), restore them from the newest checkpoint, wrap the networks (compile, DDP), then the loop: one training
step (`train_step`), the periodic work after it (sagan.training.periodic), and the checkpoint. The updates
themselves are in sagan.training.steps; extra loss terms (regularisers) plug into them through the interface of
sagan.training.terms, and sagan.regularize holds them and turns the config into the run's set.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from sagan.augment import Augment, random_flip
from sagan.checkpoint import checkpoint_path, export_generator, prune_checkpoints, save_checkpoint
from sagan.config import TrainConfig
from sagan.data import batches_for, load_data, to_model_range
from sagan.errors import ConfigError, SaganError
from sagan.losses import LOSSES, NEEDS_REAL_IN_G
from sagan.models import GAN, model_config
from sagan.regularize import check_model, loss_terms
from sagan.runtime import Runtime, check_same_start, setup_runtime, shutdown_runtime
from sagan.sampling import fixed_batch
from sagan.training.periodic import (
    Bookkeeping,
    StepResult,
    announce,
    due,
    evaluate_during_training,
    grad_norms,
    prepare_run_folder,
    sample_grid,
    standing,
    stop_requested,
    take_back_run_folder,
)
from sagan.training.state import Counters, TrainingParts, checkpoint_state, restore, rng_state
from sagan.training.steps import d_step, ema_decay_at, fake_labels, g_step, generate, update_ema

__all__ = ["Interrupted", "build", "d_step", "ema_decay_at", "fake_labels", "g_step", "generate", "train",
           "train_step", "update_ema"]


class Interrupted(Exception):
    """Raised inside the loop after SIGINT/SIGTERM, once the current step has finished."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + int(signum)


def train(cfg: TrainConfig) -> dict:
    """Train a GAN as `cfg` says; returns a summary (steps, images/s, run folder, last checkpoint)."""
    cfg.validate()
    check_model(cfg, model_config(cfg.model, **cfg.model_args))  # before any data is loaded
    rt = setup_runtime(cfg.device, cfg.precision, cfg.threads, cfg.deterministic, cfg.dist_timeout)
    try:
        return _train(cfg, rt)
    finally:
        shutdown_runtime(rt)


def _train(cfg: TrainConfig, rt: Runtime) -> dict:
    """The stages of a run, in order; each is a function below or in sagan.training."""
    new_folder = not Path(cfg.out).exists()
    run = prepare_run_folder(Path(cfg.out), rt)
    try:
        parts = build_parts(cfg, rt)
    except BaseException:
        if new_folder:
            take_back_run_folder(run, rt)
        raise
    cfg = cfg.with_class_names(parts.data.class_names if parts.mcfg.num_classes else [])  # config, checkpoints
    counters = restore(parts, cfg, rt, run)  # a new run's counters are zeros
    check_same_start(rt, counters.step, str(run))
    wrap_networks(parts, cfg, rt)
    announce(cfg, rt, parts, run)
    _loop(parts, counters, cfg, rt, run)
    return _finish(parts, counters, cfg, rt, run)


# ---- build ------------------------------------------------------------------------------------------------------

def build(cfg: TrainConfig, rt: Runtime):
    """Load the data and build the model the config names: (data, gan)."""
    data = load_data(cfg.data, model_config(cfg.model).resolution, root=cfg.data_root, labels=cfg.labels,
                     label_column=cfg.label_column, allow_unlabelled=cfg.allow_unlabelled)
    overrides = {"img_channels": data.channels, "num_classes": data.num_classes if cfg.conditional else 0,
                 **cfg.model_args}
    gan = GAN(model_config(cfg.model, **overrides))
    if cfg.batch_size > len(data) // rt.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the data set's {len(data)} images"
                          + (f" split over {rt.world_size} processes" if rt.distributed else ""))
    return data, gan


def build_parts(cfg: TrainConfig, rt: Runtime) -> TrainingParts:
    """The networks on the device, G_ema, both Adam optimisers, the data order, the losses, augmentation and
    loss terms, and the fixed batch of the sample grids: everything a checkpoint restores, not yet restored."""
    torch.manual_seed(cfg.seed)
    data, gan = build(cfg, rt)  # the same initial weights on every rank
    if rt.distributed:
        torch.manual_seed(rt.noise_seed(cfg.seed))  # but each rank its own z and fake labels
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    gan = gan.to(rt.device, memory_format=memory_format)
    g, d = gan.generator, gan.discriminator
    d_loss, g_loss = LOSSES[cfg.loss]
    fixed_z, fixed_y = fixed_batch(gan.config.num_classes, gan.config.z_dim, cfg.seed)  # from a seed of its own
    augment = Augment(cfg.augment, cfg.augment_p, cfg.ada_kimg) if cfg.augment else None
    return TrainingParts(
        mcfg=gan.config, data=data, g_plain=g, d_plain=d, g_ema=copy.deepcopy(g).eval().requires_grad_(False),
        opt_g=torch.optim.Adam(g.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2)),
        opt_d=torch.optim.Adam(d.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2)),
        batches=batches_for(data, cfg.batch_size, cfg.seed, rt.rank, rt.world_size),  # tar shards or the rest
        d_loss=d_loss, g_loss=g_loss, augment=augment, terms=loss_terms(cfg, gan.config), fixed_z=fixed_z,
        fixed_y=fixed_y, memory_format=memory_format)


def wrap_networks(parts: TrainingParts, cfg: TrainConfig, rt: Runtime) -> None:
    """What the steps call: compiled and DDP-wrapped networks when asked (after the restore, into the plain ones)."""
    generator, discriminator = parts.g_plain, parts.d_plain
    if cfg.compile:
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)
    if rt.distributed:
        generator, discriminator = DDP(generator), DDP(discriminator)
    parts.generator, parts.discriminator = generator, discriminator


# ---- the loop ---------------------------------------------------------------------------------------------------

def train_step(parts: TrainingParts, cfg: TrainConfig, rt: Runtime, step: int, measure_grads: bool) -> StepResult:
    """Training step `step` (0-based): n_dis D updates on real batches against fresh fakes, one G update, EMA."""
    num_classes, z_dim, images = parts.mcfg.num_classes, parts.mcfg.z_dim, 0

    def labels(batch_labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not num_classes:
            return None
        if batch_labels is not None:
            return batch_labels.to(rt.device)
        return fake_labels(num_classes, n, paired=bool(cfg.mode_seeking), device=rt.device)

    for i in range(cfg.n_dis):
        real_u8, real_labels = next(parts.batches)
        real = to_model_range(real_u8.to(rt.device)).contiguous(memory_format=parts.memory_format)
        if cfg.mirror:
            real = random_flip(real)  # the data set's mirror images (StyleGAN2-ADA's --mirror)
        y_real, y_fake = labels(real_labels, real.shape[0]), labels(None, real.shape[0])
        z = torch.randn(real.shape[0], z_dim, device=rt.device)
        shared = cfg.reuse_fakes and i == cfg.n_dis - 1  # the G step will reuse these fakes
        fake = generate(parts.generator if shared else parts.g_plain, z, y_fake, rt, keep_graph=shared)
        loss_d, d_real, d_fake = d_step(parts.discriminator, parts.opt_d, parts.d_loss, real, y_real, fake, y_fake,
                                        rt, parts.augment, parts.terms, step, update=step * cfg.n_dis + i)
        if parts.augment is not None:
            parts.augment.observe(d_real)  # ADA: steer p by sign(D(real)); a no-op at a fixed p
        images += real.shape[0]
    if not cfg.reuse_fakes:
        z = torch.randn(cfg.batch_size, z_dim, device=rt.device)
        y_fake = labels(None, cfg.batch_size)
        fake = generate(parts.generator, z, y_fake, rt, keep_graph=True)
    loss_g = g_step(parts.d_plain, parts.opt_g, parts.g_loss, fake, y_fake, rt, step_optimizer=False,
                    augment=parts.augment, terms=parts.terms, step=step, z=z, real=real, y_real=y_real,
                    pair_with_real=cfg.loss in NEEDS_REAL_IN_G)  # RpGAN: D on the last D update's reals
    norms = grad_norms(parts.g_plain, parts.d_plain) if measure_grads else None
    parts.opt_g.step()
    update_ema(parts.g_ema, parts.g_plain, ema_decay_at(step, cfg.ema_decay_per_step(rt.world_size), cfg.ema_start))
    return StepResult(loss_d, loss_g, d_real, d_fake, images, norms)


def _loop(parts: TrainingParts, c: Counters, cfg: TrainConfig, rt: Runtime, run: Path) -> None:
    """Steps until max_steps, the time budget or a signal, each followed by its periodic work; then the last
    checkpoint. A non-finite loss stops the run without saving: the last periodic checkpoint is the resume point."""
    book = Bookkeeping(cfg, rt, run)
    c.begin_session()
    with _signals_caught() as caught:
        try:
            while c.step < cfg.max_steps:
                result = train_step(parts, cfg, rt, c.step, measure_grads=rt.is_main and due(cfg, c.step + 1).log)
                c.step, c.images_seen = c.step + 1, c.images_seen + result.images
                work = due(cfg, c.step)
                book.after_step(c.step, parts, result, work)  # standing statistics, train record, sample grid
                if work.evaluate:
                    c.best = evaluate_during_training(cfg, parts.g_ema, c.step, book.stats, rt, c.best,
                                                      lambda at: _save_best(parts, c, cfg, rt, run, at))
                if work.checkpoint:
                    _save(parts, c, cfg, rt, run)
                interrupted, out_of_time = stop_requested(cfg, rt, bool(caught), c.started)
                if interrupted:
                    raise Interrupted(caught[0] if caught else signal.SIGTERM)
                if out_of_time:
                    book.write(f"time budget of {cfg.max_minutes:g} min reached at step {c.step}")
                    break
            if c.saved_step != c.step:
                standing(parts.g_ema, cfg)
                _save(parts, c, cfg, rt, run)
        except Interrupted:
            standing(parts.g_ema, cfg)
            _save(parts, c, cfg, rt, run)
            book.close()
            if rt.is_main:
                print(f"interrupted: saved {c.last_path} at step {c.step}; run the same command to resume",
                      file=sys.stderr)
            raise
        except FloatingPointError as exc:
            # Every rank stops here together (Runtime.all_finite). The state in memory is finite but half a step on
            # (D stepped, data and RNG moved on), so nothing is saved: the last periodic checkpoint is the resume point.
            book.alarm_event(c.step, f"non-finite {exc} loss")
            clean = c.saved_step
            where = (f"the last clean checkpoint is step {clean} ({checkpoint_path(run, clean)}); run the same "
                     "command to resume from it" if clean >= 0 else "no checkpoint had been written yet; run the "
                     "command again")
            raise SaganError(f"the {exc} loss became NaN or infinite at step {c.step + 1}, so the run stopped "
                             f"without saving that step; {where} after lowering the learning rates (--set lr_d=..., "
                             "lr_g=...) or with --precision fp32") from None
        finally:
            book.close()


@contextlib.contextmanager
def _signals_caught() -> Iterator[list[int]]:
    """SIGINT and SIGTERM append to the yielded list instead of stopping the process mid-step; the loop checks it
    after each step (and a second signal during the last checkpoint's writing cannot tear it)."""
    caught: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: caught.insert(0, signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# ---- checkpoints ------------------------------------------------------------------------------------------------

def _save(parts: TrainingParts, c: Counters, cfg: TrainConfig, rt: Runtime, run: Path) -> None:
    """Checkpoint step c.step (rank 0 writes; every rank takes part in gathering the RNG states), keep the newest
    cfg.keep_checkpoints."""
    rng = rng_state(rt)  # a collective in distributed runs
    c.saved_step = c.step
    if rt.is_main:
        c.last_path = save_checkpoint(checkpoint_state(parts, c, cfg, rt, c.step, rng), checkpoint_path(run, c.step))
        prune_checkpoints(run, cfg.keep_checkpoints)


def _save_best(parts: TrainingParts, c: Counters, cfg: TrainConfig, rt: Runtime, run: Path, at_step: int) -> None:
    # rank 0 alone: no collective, so rank 0's RNG only; best.pt is for sampling and evaluation
    rng = {"ranks": [{"torch": torch.get_rng_state()}]}
    save_checkpoint(checkpoint_state(parts, c, cfg, rt, at_step, rng), run / "checkpoints" / "best.pt")


# ---- finish -----------------------------------------------------------------------------------------------------

def _finish(parts: TrainingParts, c: Counters, cfg: TrainConfig, rt: Runtime, run: Path) -> dict:
    """The run's summary; on rank 0 also the final sample grid and G_ema exported for sampling."""
    elapsed = time.time() - c.started
    summary = {"run": str(run), "steps": c.step, "steps_this_session": c.step - c.first_step,
               "minutes": round(elapsed / 60, 2), "checkpoint": str(c.last_path) if c.last_path else None,
               "images_per_sec": round(c.images_seen * rt.world_size / max(elapsed, 1e-9), 1),
               "precision": rt.precision, "device": str(rt.device), "world_size": rt.world_size,
               "train_minutes_total": round((c.trained_before + elapsed) / 60, 4)}
    if rt.is_main:
        sample_grid(parts.g_ema, parts.fixed_z, parts.fixed_y, rt, run / "samples" / "final.png")
        labels = ({"labels": cfg.labels, "label_column": cfg.label_column, "allow_unlabelled": cfg.allow_unlabelled}
                  if cfg.labels else None)
        export_generator(parts.g_ema, parts.mcfg, run / "generator", {"step": c.step, "ema": True, "data": cfg.data,
                                                                      "labels": labels,
                                                                      "class_names": cfg.class_names})
    return summary
