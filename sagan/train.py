"""One readable training loop: n_dis discriminator steps, one generator step, EMA, checkpoints.

The recipe is SAGAN's (arXiv:1805.08318, section 5): spectral norm in G and D, the hinge loss, and TTUR
(Heusel et al. 2017, arXiv:1706.08500) with lr_G 1e-4, lr_D 4e-4 and Adam betas (0.0, 0.9).
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torchvision.utils import save_image

from sagan.augment import Augment
from sagan.checkpoint import (
    checkpoint_path,
    export_generator,
    latest_checkpoint,
    load_gan_state,
    prune_checkpoints,
    save_checkpoint,
)
from sagan.config import TrainConfig, save_yaml
from sagan.data import load_data, to_model_range
from sagan.errors import CheckpointError, ConfigError, SaganError
from sagan.health import CollapseAlarm, health_stats, sample_diversity
from sagan.losses import LOSSES, mode_seeking
from sagan.models import GAN, model_config
from sagan.progress import Progress
from sagan.runtime import Runtime, check_same_start, setup_runtime, shutdown_runtime
from sagan.sampling import fixed_batch, standing_statistics
from sagan.shards import batches_for
from sagan.stats import StatsWriter


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
           augment: Augment | None = None):
    """One discriminator update; returns (loss, D(real) logits, D(fake) logits). `fake` is detached here.

    Real and fake go through D as one batch: one spectral-norm power iteration per step and larger matmuls.
    `augment` (DiffAugment) transforms that batch, each image with its own random draw.
    Raises FloatingPointError before stepping when the loss is not finite on any rank, so the weights stay finite.
    """
    with rt.autocast():
        y = None if y_real is None else torch.cat([y_real, y_fake])
        both = torch.cat([real, fake.detach().to(real.dtype)])
        logits = discriminator(both if augment is None else augment(both), y).float()
    d_real, d_fake = logits.detach().split(real.shape[0])
    loss = loss_fn(*logits.split(real.shape[0]))
    if not rt.all_finite(loss):
        raise FloatingPointError("discriminator")
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return loss.detach(), d_real, d_fake


def g_step(discriminator: nn.Module, opt_g: torch.optim.Optimizer, loss_fn, fake: torch.Tensor,
           y: torch.Tensor | None, rt: Runtime, step_optimizer: bool = True,
           regulariser: torch.Tensor | None = None, augment: Augment | None = None) -> torch.Tensor:
    """One generator update through `fake` (made by `generate(..., keep_graph=True)`), with `regulariser`
    (a scalar computed from `fake`) added to the loss; the optimiser is stepped unless step_optimizer is False.
    `augment` (DiffAugment) transforms the fakes before D, and G's gradients flow back through it.

    `discriminator` is the plain module: its weights get no gradient (requires_grad off, which also skips
    their weight-gradient kernels) and, in a distributed run, no synchronisation.
    """
    discriminator.requires_grad_(False)
    try:
        with rt.autocast():
            loss = loss_fn(discriminator(fake if augment is None else augment(fake), y).float())
        if regulariser is not None:
            loss = loss + regulariser
        if not rt.all_finite(loss):
            raise FloatingPointError("generator")
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        discriminator.requires_grad_(True)
    if step_optimizer:
        opt_g.step()
    return loss.detach()


class Interrupted(Exception):
    """Raised inside the loop after SIGINT/SIGTERM, once the current step has finished."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + int(signum)


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


def _unwrap(module: nn.Module) -> nn.Module:
    module = module.module if isinstance(module, DDP) else module
    return getattr(module, "_orig_mod", module)  # torch.compile wrapper


def _rng_state(rt: Runtime) -> dict:
    state = {"torch": torch.get_rng_state()}
    if rt.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(rt.device)
    if rt.distributed:  # every rank draws its own noise (Runtime.noise_seed): keep each rank's state
        gathered = [None] * rt.world_size
        dist.all_gather_object(gathered, state)
        return {"ranks": gathered}
    return {"ranks": [state]}


def _set_rng_state(rt: Runtime, state: dict) -> None:
    ranks = state["ranks"]
    if len(ranks) != rt.world_size:
        raise CheckpointError(f"the checkpoint was written by {len(ranks)} processes, this run has {rt.world_size}; "
                              "resume with the same number of processes")
    mine = ranks[rt.rank]
    torch.set_rng_state(mine["torch"])
    if rt.device.type == "cuda" and "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], rt.device)


def _sample_grid(g_ema: nn.Module, fixed_z: torch.Tensor, fixed_y: torch.Tensor | None, rt: Runtime, path: Path,
                 rows: int) -> None:
    g_ema.eval()
    with torch.no_grad():
        images = g_ema(fixed_z.to(rt.device), None if fixed_y is None else fixed_y.to(rt.device)).float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, path, nrow=rows, normalize=True, value_range=(-1, 1), padding=1)


def _standing(g_ema: nn.Module, cfg: TrainConfig) -> None:
    if cfg.standing_samples:
        standing_statistics(g_ema, num=cfg.standing_samples, seed=cfg.seed)


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


def train(cfg: TrainConfig) -> dict:
    """Train a GAN as `cfg` says; returns a summary (steps, images/s, run folder, last checkpoint)."""
    cfg.validate()
    rt = setup_runtime(cfg.device, cfg.precision, cfg.threads, cfg.deterministic, cfg.dist_timeout)
    try:
        return _train(cfg, rt)
    finally:
        shutdown_runtime(rt)


def _train(cfg: TrainConfig, rt: Runtime) -> dict:
    run = Path(cfg.out)
    if rt.is_main:
        try:
            (run / "samples").mkdir(parents=True, exist_ok=True)
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
            probe = run / "checkpoints" / ".write-test"
            probe.write_bytes(b"")  # fail now, not after an hour of training
            probe.unlink()
        except OSError as exc:
            raise SaganError(f"cannot write the run folder {run}: {exc.strerror}; choose another --out") from None
    torch.manual_seed(cfg.seed)
    data, gan = build(cfg, rt)  # the same initial weights on every rank
    cfg = cfg.with_class_names(data.class_names if gan.config.num_classes else [])  # kept in config and checkpoints
    if rt.distributed:
        torch.manual_seed(rt.noise_seed(cfg.seed))  # but each rank its own z and fake labels
    mcfg = gan.config
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    gan = gan.to(rt.device, memory_format=memory_format)
    g_ema = copy.deepcopy(gan.generator).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(gan.generator.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(gan.discriminator.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    batches = batches_for(data, cfg.batch_size, cfg.seed, rt.rank, rt.world_size)  # tar shards or the rest
    d_loss_fn, g_loss_fn = LOSSES[cfg.loss]
    augment = Augment(cfg.augment, cfg.augment_p, cfg.ada_kimg) if cfg.augment else None

    fixed_z, fixed_y = fixed_batch(mcfg.num_classes, mcfg.z_dim, cfg.seed)  # sample grids and diversity

    step, best, trained_before = 0, None, 0.0  # trained_before: seconds of training in earlier sessions
    resumed = latest_checkpoint(run) if cfg.resume else None
    if resumed is not None:
        path, state = resumed
        if state["model"] != mcfg.to_dict():
            raise CheckpointError(f"{path} holds model {state['model']['name']} with other settings than this run's "
                                  f"{mcfg.name}; use another --out, or the same --model and data to resume")
        load_gan_state(gan.generator, state["generator"], "generator", path)
        load_gan_state(gan.discriminator, state["discriminator"], "discriminator", path)
        load_gan_state(g_ema, state["generator_ema"], "generator_ema", path)
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        batches.load_state_dict(state["batches"])
        _set_rng_state(rt, state["rng"])
        if augment is not None and state.get("augment"):
            augment.load_state_dict(state["augment"])
        step, best, trained_before = state["step"], state.get("best"), state.get("train_seconds", 0.0)
        if rt.is_main:
            print(f"resuming {run} from {path.name} (step {step})", file=sys.stderr)
    check_same_start(rt, step, str(run))

    generator, discriminator = gan.generator, gan.discriminator
    if cfg.compile:
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)
    if rt.distributed:
        generator, discriminator = DDP(generator), DDP(discriminator)
    g_plain, d_plain = _unwrap(generator), _unwrap(discriminator)

    stats = StatsWriter(run) if rt.is_main else None
    if rt.is_main:
        save_yaml(cfg, run / "config.yaml")
        n_g = sum(p.numel() for p in g_plain.parameters())
        n_d = sum(p.numel() for p in d_plain.parameters())
        condition = f"conditional on {mcfg.num_classes} classes" if mcfg.num_classes else "unconditional"
        print(f"training {mcfg.name} (G {n_g / 1e6:.2f}M, D {n_d / 1e6:.2f}M parameters, {condition}) on "
              f"{data.source} at {mcfg.resolution} px; {rt.precision} on {rt.device}, {torch.get_num_threads()} "
              f"threads x {rt.world_size} process(es); run folder {run}", file=sys.stderr)
        if data.skipped:
            print(f"skipped {data.skipped} unreadable image file(s) in {cfg.data}", file=sys.stderr)
    alarm = CollapseAlarm()
    progress = Progress(cfg.max_steps, cfg.max_minutes, enabled=rt.is_main)

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def state_at(at_step: int, rng: dict) -> dict:
        return {
            "model": mcfg.to_dict(), "train_config": cfg.to_dict(), "step": at_step, "best": best,
            "generator": g_plain.state_dict(), "discriminator": d_plain.state_dict(),
            "generator_ema": g_ema.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "batches": batches.state_dict(), "rng": rng, "precision": rt.precision,
            "train_seconds": trained_before + time.time() - t_start,  # wall clock of training up to at_step
            "augment": augment.state_dict() if augment is not None else None,
        }

    saved_at = {"step": step if resumed is not None else -1}  # the newest checkpoint of this run

    def save(at_step: int) -> Path | None:
        rng = _rng_state(rt)  # a collective in distributed runs: every rank takes part
        saved_at["step"] = at_step
        if not rt.is_main:
            return None
        path = save_checkpoint(state_at(at_step, rng), checkpoint_path(run, at_step))
        prune_checkpoints(run, cfg.keep_checkpoints)
        return path

    def save_best(at_step: int) -> None:
        # rank 0 alone: no collective, so rank 0's RNG only; best.pt is for sampling and evaluation
        save_checkpoint(state_at(at_step, {"ranks": [{"torch": torch.get_rng_state()}]}),
                        run / "checkpoints" / "best.pt")

    def labels_for(batch_labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not mcfg.num_classes:
            return None
        if batch_labels is not None:
            return batch_labels.to(rt.device)
        return fake_labels(mcfg.num_classes, n, paired=bool(cfg.mode_seeking), device=rt.device)

    start_step, t_start, last_path = step, time.time(), None
    images_seen, t_window, window_images = 0, time.time(), 0
    log: dict = {}
    try:
        while step < cfg.max_steps:
            # ---- discriminator: n_dis steps on real batches against fresh fakes -------------------
            for i in range(cfg.n_dis):
                real_u8, real_labels = next(batches)
                real = to_model_range(real_u8.to(rt.device)).contiguous(memory_format=memory_format)
                y_real, y_fake = labels_for(real_labels, real.shape[0]), labels_for(None, real.shape[0])
                z = torch.randn(real.shape[0], mcfg.z_dim, device=rt.device)
                shared = cfg.reuse_fakes and i == cfg.n_dis - 1  # the G step will reuse these fakes
                fake = generate(generator if shared else g_plain, z, y_fake, rt, keep_graph=shared)
                loss_d, d_real, d_fake = d_step(discriminator, opt_d, d_loss_fn, real, y_real, fake, y_fake, rt,
                                                augment)
                if augment is not None:
                    augment.observe(d_real)  # ADA: steer p by sign(D(real)); a no-op at a fixed p
                images_seen += real.shape[0]
            # ---- generator: one step ---------------------------------------------------------------------
            if not cfg.reuse_fakes:
                z = torch.randn(cfg.batch_size, mcfg.z_dim, device=rt.device)
                y_fake = labels_for(None, cfg.batch_size)
                fake = generate(generator, z, y_fake, rt, keep_graph=True)
            regulariser = cfg.mode_seeking * mode_seeking(fake, z) if cfg.mode_seeking else None
            loss_g = g_step(d_plain, opt_g, g_loss_fn, fake, y_fake, rt, step_optimizer=False, regulariser=regulariser,
                            augment=augment)
            grad_norms = None
            if rt.is_main and (step + 1) % cfg.log_every == 0:
                grads = {k: [p.grad for p in net.parameters() if p.grad is not None]
                         for k, net in (("g", g_plain), ("d", d_plain))}
                grad_norms = {f"grad_norm_{k}": float(nn.utils.get_total_norm(g)) for k, g in grads.items()}
            opt_g.step()
            update_ema(g_ema, g_plain, ema_decay_at(step, cfg.ema_decay, cfg.ema_start))
            step += 1
            window_images += cfg.batch_size * cfg.n_dis * rt.world_size

            # ---- bookkeeping on rank 0 -------------------------------------------------------------------
            publish = (step % cfg.sample_every == 0 or step == cfg.max_steps or step % cfg.checkpoint_every == 0
                       or bool(cfg.eval_every and step % cfg.eval_every == 0))
            if rt.is_main and publish:
                _standing(g_ema, cfg)  # G_ema's own BN statistics for what is published now
            if rt.is_main and (step % cfg.log_every == 0 or publish):
                now = time.time()
                speed = window_images / max(now - t_window, 1e-9)
                t_window, window_images = now, 0
                log = {"loss_d": float(loss_d), "loss_g": float(loss_g), "d_real": float(d_real.mean()),
                       "d_fake": float(d_fake.mean()), "images_per_sec": round(speed, 2),
                       "lr_g": opt_g.param_groups[0]["lr"], "lr_d": opt_d.param_groups[0]["lr"]}
                log.update(grad_norms or {})
                log.update(augment.stats() if augment is not None else {})
                log.update(health_stats(g_plain, d_plain))
                if publish:  # the G_ema that sampling uses, standing statistics included; free of extra forwards
                    log["diversity"] = sample_diversity(g_ema, fixed_z, fixed_y, rt.device)
                event = alarm.update(step, log)
                if event:
                    stats.log(step, {"event": event}, kind="alarm")
                    progress.write(f"warning at step {step}: {event}")
                stats.log(step, log)
                progress.update(step, log, alarm.active)
            if rt.is_main and (step % cfg.sample_every == 0 or step == cfg.max_steps):
                _sample_grid(g_ema, fixed_z, fixed_y, rt, run / "samples" / f"step_{step:09d}.png", 8)
            if cfg.eval_every and step % cfg.eval_every == 0:
                best = _evaluate_during_training(cfg, g_ema, step, stats, rt, best, save_best)
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                last_path = save(step) or last_path
            interrupted = stop["signal"] is not None
            out_of_time = bool(cfg.max_minutes) and (time.time() - t_start) / 60 >= cfg.max_minutes
            if rt.distributed:  # every rank must leave the loop at the same step, or the next collective hangs
                flags = torch.tensor([float(interrupted), float(out_of_time)])
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                interrupted, out_of_time = bool(flags[0]), bool(flags[1])
            if interrupted:
                raise Interrupted(stop["signal"] or signal.SIGTERM)
            if out_of_time:
                if rt.is_main:
                    progress.write(f"time budget of {cfg.max_minutes:g} min reached at step {step}")
                break
        if saved_at["step"] != step:
            _standing(g_ema, cfg)
            last_path = save(step) or last_path
    except Interrupted:
        _standing(g_ema, cfg)
        last_path = save(step) or last_path
        if rt.is_main:
            progress.close()
            print(f"interrupted: saved {last_path} at step {step}; run the same command to resume", file=sys.stderr)
        raise
    except FloatingPointError as exc:
        # Every rank stops here together (Runtime.all_finite). The state in memory is finite but half a step on
        # (D stepped, data and RNG moved on), so nothing is saved: the last periodic checkpoint is the resume point.
        if stats:
            stats.log(step, {"event": f"non-finite {exc} loss"}, kind="alarm")
        clean = saved_at["step"]
        where = (f"the last clean checkpoint is step {clean} ({checkpoint_path(run, clean)}); run the same command "
                 "to resume from it" if clean >= 0 else "no checkpoint had been written yet; run the command again")
        raise SaganError(f"the {exc} loss became NaN or infinite at step {step + 1}, so the run stopped without "
                         f"saving that step; {where} after lowering the learning rates (--set lr_d=..., lr_g=...) "
                         "or with --precision fp32") from None
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if stats:
            stats.close()
        progress.close()

    elapsed = time.time() - t_start
    summary = {"run": str(run), "steps": step, "steps_this_session": step - start_step,
               "minutes": round(elapsed / 60, 2), "checkpoint": str(last_path) if last_path else None,
               "images_per_sec": round(images_seen * rt.world_size / max(elapsed, 1e-9), 1),
               "precision": rt.precision, "device": str(rt.device), "world_size": rt.world_size,
               "train_minutes_total": round((trained_before + elapsed) / 60, 4)}
    if rt.is_main:
        _sample_grid(g_ema, fixed_z, fixed_y, rt, run / "samples" / "final.png", 8)
        labels = ({"labels": cfg.labels, "label_column": cfg.label_column, "allow_unlabelled": cfg.allow_unlabelled}
                  if cfg.labels else None)
        export_generator(g_ema, mcfg, run / "generator", {"step": step, "ema": True, "data": cfg.data,
                                                          "labels": labels, "class_names": cfg.class_names})
    return summary


def _evaluate_during_training(cfg, g_ema, step, stats, rt, best, save_best):
    """Score G_ema on a small sample; keep checkpoints/best.pt for the best score so far (rank 0)."""
    if not rt.is_main:
        return best
    from sagan.metrics import evaluate_generator  # imported late: feature extractors are heavy

    scores = evaluate_generator(g_ema, against=cfg.data, num=cfg.eval_num, seed=cfg.seed, data_root=cfg.data_root,
                                step=step, ema=True, labels=cfg.labels, label_column=cfg.label_column,
                                allow_unlabelled=cfg.allow_unlabelled)
    flat = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    stats.log(step, flat, kind="eval")
    names = {cfg.eval_metric, "fid" if cfg.eval_metric == "fd" else cfg.eval_metric}  # Inception's FD is "fid"
    key = next((k for k in flat if k in names or k.startswith(cfg.eval_metric + "_")), None)
    if key is None or not math.isfinite(flat[key]):
        return best
    lower_is_better = not key.startswith(("precision", "recall", "is", "density", "coverage"))
    score = flat[key] if lower_is_better else -flat[key]
    if best is None or score < best["score"]:
        best = {"score": score, "metric": key, "value": flat[key], "step": step}
        save_best(step)
    return best
