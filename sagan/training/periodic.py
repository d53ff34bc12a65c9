"""The work between training steps: the train record, alarms, progress, sample grids, evaluation, the stop check.

`due(cfg, step)` says what is due after a step; `Bookkeeping` does rank 0's part of it (the train record with
losses, speed, gradient norms, health and diversity; the collapse alarm; the progress bar; the sample grid).
Checkpoints are written by the loop itself (sagan.train), evaluation by `evaluate_during_training`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torchvision.utils import save_image

from sagan.config import TrainConfig, save_yaml
from sagan.errors import SaganError
from sagan.runtime import Runtime
from sagan.sampling import standing_statistics
from sagan.stats import StatsWriter
from sagan.training.health import CollapseAlarm, health_stats, sample_diversity
from sagan.training.progress import Progress
from sagan.training.state import TrainingParts
from sagan.training.steps import ema_decay_at


@dataclass
class StepResult:
    """What one training step reports: the last D update's loss and logits, G's loss, and (on steps that log)
    the gradient norms of G and D before G's optimiser step."""

    loss_d: torch.Tensor
    loss_g: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor
    images: int  # real images D saw in the step (on this rank)
    grad_norms: dict[str, float] | None = None


@dataclass
class Due:
    """The periodic work due after a step. `publish`: something is shown or kept (a grid, a checkpoint, a score),
    so G_ema gets its standing statistics and the train record its diversity."""

    log: bool
    sample: bool
    evaluate: bool
    checkpoint: bool

    @property
    def publish(self) -> bool:
        return self.sample or self.evaluate or self.checkpoint


def due(cfg: TrainConfig, step: int) -> Due:
    """What is due after step `step` (counted from 1); the last step samples and checkpoints."""
    last = step == cfg.max_steps
    return Due(log=step % cfg.log_every == 0, sample=step % cfg.sample_every == 0 or last,
               evaluate=bool(cfg.eval_every and step % cfg.eval_every == 0),
               checkpoint=step % cfg.checkpoint_every == 0 or last)


def prepare_run_folder(run: Path, rt: Runtime) -> Path:
    """Make the run folder (rank 0) and prove it writable now, not after an hour of training."""
    if rt.is_main:
        try:
            (run / "samples").mkdir(parents=True, exist_ok=True)
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
            probe = run / "checkpoints" / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SaganError(f"cannot write the run folder {run}: {exc.strerror}; choose another --out") from None
    return run


def take_back_run_folder(run: Path, rt: Runtime) -> None:
    """Undo prepare_run_folder for a run that failed before it wrote anything (a wrong data path must not leave an
    empty run folder behind): only empty folders are removed, so nothing written is ever touched."""
    if rt.is_main:
        for folder in (run / "samples", run / "checkpoints", run):
            with contextlib.suppress(OSError):  # not empty, or not there: keep it
                folder.rmdir()


def announce(cfg: TrainConfig, rt: Runtime, parts: TrainingParts, run: Path) -> None:
    """Write the resolved config into the run folder and say on stderr what trains where (rank 0)."""
    if not rt.is_main:
        return
    save_yaml(cfg, run / "config.yaml")
    mcfg, data = parts.mcfg, parts.data
    n_g = sum(p.numel() for p in parts.g_plain.parameters())
    n_d = sum(p.numel() for p in parts.d_plain.parameters())
    condition = f"conditional on {mcfg.num_classes} classes" if mcfg.num_classes else "unconditional"
    print(f"training {mcfg.name} (G {n_g / 1e6:.2f}M, D {n_d / 1e6:.2f}M parameters, {condition}) on "
          f"{data.source} at {mcfg.resolution} px; {rt.precision} on {rt.device}, {torch.get_num_threads()} "
          f"threads x {rt.world_size} process(es); run folder {run}", file=sys.stderr)
    if data.skipped:
        print(f"skipped {data.skipped} unreadable image file(s) in {cfg.data}", file=sys.stderr)


def grad_norms(g_plain: nn.Module, d_plain: nn.Module) -> dict[str, float]:
    """The total gradient norm of G and of D, as their .grad hold them now."""
    grads = {k: [p.grad for p in net.parameters() if p.grad is not None] for k, net in (("g", g_plain), ("d", d_plain))}
    return {f"grad_norm_{k}": float(nn.utils.get_total_norm(g)) for k, g in grads.items()}


def sample_grid(g_ema: nn.Module, fixed_z: torch.Tensor, fixed_y: torch.Tensor | None, rt: Runtime, path: Path,
                rows: int = 8) -> None:
    """G_ema's images of the fixed batch as one PNG grid."""
    g_ema.eval()
    with torch.no_grad():
        images = g_ema(fixed_z.to(rt.device), None if fixed_y is None else fixed_y.to(rt.device)).float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, path, nrow=rows, normalize=True, value_range=(-1, 1), padding=1)


def standing(g_ema: nn.Module, cfg: TrainConfig) -> None:
    """Give G_ema its own batch-norm statistics before it is shown or saved (when cfg.standing_samples)."""
    if cfg.standing_samples:
        standing_statistics(g_ema, num=cfg.standing_samples, seed=cfg.seed)


class Bookkeeping:
    """Rank 0's record of the run: metrics.jsonl and TensorBoard, the collapse alarm, the progress bar, the sample
    grids. On other ranks every method does nothing (and `stats` is None)."""

    def __init__(self, cfg: TrainConfig, rt: Runtime, run: Path) -> None:
        self.cfg, self.rt, self.run = cfg, rt, run
        self.stats = StatsWriter(run) if rt.is_main else None
        self.alarm = CollapseAlarm()
        self.progress = Progress(cfg.max_steps, cfg.max_minutes, enabled=rt.is_main)
        self.window_start, self.window_images = time.time(), 0  # images/s over the last logged window

    def after_step(self, step: int, parts: TrainingParts, result: StepResult, work: Due) -> None:
        """Count the step's images; then, when due, G_ema's standing statistics, the train record, the grid."""
        cfg = self.cfg
        self.window_images += cfg.batch_size * cfg.n_dis * self.rt.world_size
        if not self.rt.is_main:
            return
        if work.publish:
            standing(parts.g_ema, cfg)  # G_ema's own BN statistics for what is published now
        if work.log or work.publish:
            self._record(step, parts, result, work.publish)
        if work.sample:
            path = self.run / "samples" / f"step_{step:09d}.png"
            sample_grid(parts.g_ema, parts.fixed_z, parts.fixed_y, self.rt, path)

    def _record(self, step: int, parts: TrainingParts, result: StepResult, publish: bool) -> None:
        now = time.time()
        speed = self.window_images / max(now - self.window_start, 1e-9)
        self.window_start, self.window_images = now, 0
        log = {"loss_d": float(result.loss_d), "loss_g": float(result.loss_g), "d_real": float(result.d_real.mean()),
               "d_fake": float(result.d_fake.mean()), "images_per_sec": round(speed, 2),
               "lr_g": parts.opt_g.param_groups[0]["lr"], "lr_d": parts.opt_d.param_groups[0]["lr"],
               # G_ema's decay in the step just done (ema_decay, or ema_kimg's per-step decay, after the warm-up)
               "ema_decay": ema_decay_at(step - 1, self.cfg.ema_decay_per_step(self.rt.world_size),
                                         self.cfg.ema_start)}
        log.update(result.grad_norms or {})
        log.update(parts.augment.stats() if parts.augment is not None else {})
        log.update(parts.terms.stats())
        log.update(health_stats(parts.g_plain, parts.d_plain))
        if publish:  # the G_ema that sampling uses, standing statistics included; free of extra forwards
            log["diversity"] = sample_diversity(parts.g_ema, parts.fixed_z, parts.fixed_y, self.rt.device)
        event = self.alarm.update(step, log)
        if event:
            self.stats.log(step, {"event": event}, kind="alarm")
            self.progress.write(f"warning at step {step}: {event}")
        self.stats.log(step, log)
        self.progress.update(step, log, self.alarm.active)

    def alarm_event(self, step: int, event: str) -> None:
        """An event for the run's alarm record (rank 0)."""
        if self.stats:
            self.stats.log(step, {"event": event}, kind="alarm")

    def write(self, message: str) -> None:
        """A line on stderr that does not break the progress bar (rank 0)."""
        if self.rt.is_main:
            self.progress.write(message)

    def close(self) -> None:
        """Close the bar and the record files; closing twice is harmless."""
        self.progress.close()
        if self.stats:
            self.stats.close()
            self.stats = None


def stop_requested(cfg: TrainConfig, rt: Runtime, signalled: bool, started: float) -> tuple[bool, bool]:
    """(interrupted, out of time), agreed by every rank: all must leave the loop at the same step, or the next
    collective hangs."""
    out_of_time = bool(cfg.max_minutes) and (time.time() - started) / 60 >= cfg.max_minutes
    if not rt.distributed:
        return signalled, out_of_time
    flags = torch.tensor([float(signalled), float(out_of_time)])
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return bool(flags[0]), bool(flags[1])


def evaluate_during_training(cfg: TrainConfig, g_ema: nn.Module, step: int, stats: StatsWriter | None, rt: Runtime,
                             best: dict | None, save_best: Callable[[int], None]) -> dict | None:
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
