"""What a run holds, what its checkpoints store of it, and how a resume restores it.

`TrainingParts` is what the build stage makes (networks, optimisers, data order, augmentation, loss terms);
`Counters` is where the run stands (step, best score, training time). A checkpoint is `checkpoint_state` of both
plus every rank's RNG state; `restore` loads the newest one back, so that a resumed run continues bit for bit as
an uninterrupted one would, except for the learning rates, which come from the config.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sagan.augment import Augment
from sagan.checkpoint import latest_checkpoint, load_gan_state
from sagan.config import TrainConfig
from sagan.errors import CheckpointError
from sagan.models import ModelConfig
from sagan.runtime import Runtime
from sagan.training.terms import LossTerms


@dataclass
class TrainingParts:
    """Everything the loop trains with. `generator`/`discriminator` are what the steps call (compiled and
    DDP-wrapped when asked); `g_plain`/`d_plain` are the modules themselves, which checkpoints store."""

    mcfg: ModelConfig
    data: Any  # sagan.data's ImageData or shard data
    g_plain: nn.Module
    d_plain: nn.Module
    g_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: Any  # the endless, resumable loader (state_dict / load_state_dict)
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]
    augment: Augment | None
    terms: LossTerms
    fixed_z: torch.Tensor  # the sample grids' and the diversity signal's batch
    fixed_y: torch.Tensor | None
    memory_format: torch.memory_format
    generator: nn.Module | None = None
    discriminator: nn.Module | None = None

    def __post_init__(self) -> None:
        self.generator = self.g_plain if self.generator is None else self.generator
        self.discriminator = self.d_plain if self.discriminator is None else self.discriminator


@dataclass
class Counters:
    """Where the run stands: the step done, the best evaluation so far, and the clock."""

    step: int = 0
    best: dict | None = None  # {"score", "metric", "value", "step"} of checkpoints/best.pt
    trained_before: float = 0.0  # seconds of training in earlier sessions
    saved_step: int = -1  # the step of this run's newest checkpoint (-1: none yet)
    last_path: Path | None = None  # the newest checkpoint this session wrote (rank 0)
    started: float = 0.0  # time.time() when this session's loop began
    first_step: int = 0  # the step this session began at
    images_seen: int = 0  # real images this rank's D saw in this session

    def begin_session(self) -> None:
        """Start this session's clock and step count (just before the loop)."""
        self.started, self.first_step = time.time(), self.step

    def train_seconds(self) -> float:
        """Wall clock of training up to now, over all sessions."""
        return self.trained_before + time.time() - self.started


def rng_state(rt: Runtime) -> dict:
    """Every rank's RNG state (a collective in a distributed run: every rank must call it)."""
    state = {"torch": torch.get_rng_state()}
    if rt.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(rt.device)
    if rt.distributed:  # every rank draws its own noise (Runtime.noise_seed): keep each rank's state
        gathered = [None] * rt.world_size
        dist.all_gather_object(gathered, state)
        return {"ranks": gathered}
    return {"ranks": [state]}


def set_rng_state(rt: Runtime, state: dict) -> None:
    """Restore this rank's RNG state from `rng_state`'s output; the number of processes must match."""
    ranks = state["ranks"]
    if len(ranks) != rt.world_size:
        raise CheckpointError(f"the checkpoint was written by {len(ranks)} processes, this run has {rt.world_size}; "
                              "resume with the same number of processes")
    mine = ranks[rt.rank]
    torch.set_rng_state(mine["torch"])
    if rt.device.type == "cuda" and "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], rt.device)


def checkpoint_state(parts: TrainingParts, counters: Counters, cfg: TrainConfig, rt: Runtime, at_step: int,
                     rng: dict) -> dict:
    """The dict a checkpoint of step `at_step` stores: enough to resume exactly, and to rebuild G alone."""
    state = {
        "model": parts.mcfg.to_dict(), "train_config": cfg.to_dict(), "step": at_step, "best": counters.best,
        "generator": parts.g_plain.state_dict(), "discriminator": parts.d_plain.state_dict(),
        "generator_ema": parts.g_ema.state_dict(), "opt_g": parts.opt_g.state_dict(),
        "opt_d": parts.opt_d.state_dict(), "batches": parts.batches.state_dict(), "rng": rng,
        "precision": rt.precision, "train_seconds": counters.train_seconds(),
        "augment": parts.augment.state_dict() if parts.augment is not None else None,
    }
    terms = parts.terms.state_dict()
    if terms:  # only runs with stateful loss terms carry the key
        state["loss_terms"] = terms
    return state


def restore(parts: TrainingParts, cfg: TrainConfig, rt: Runtime, run: Path) -> Counters:
    """Load the run's newest checkpoint into `parts` (when cfg.resume and there is one); its counters, or zeros."""
    resumed = latest_checkpoint(run) if cfg.resume else None
    if resumed is None:
        return Counters()
    path, state = resumed
    if state["model"] != parts.mcfg.to_dict():
        raise CheckpointError(f"{path} holds model {state['model']['name']} with other settings than this run's "
                              f"{parts.mcfg.name}; use another --out, or the same --model and data to resume")
    load_gan_state(parts.g_plain, state["generator"], "generator", path)
    load_gan_state(parts.d_plain, state["discriminator"], "discriminator", path)
    load_gan_state(parts.g_ema, state["generator_ema"], "generator_ema", path)
    parts.opt_g.load_state_dict(state["opt_g"])
    parts.opt_d.load_state_dict(state["opt_d"])
    changed = [*set_learning_rate(parts.opt_d, cfg.lr_d, "lr_d"), *set_learning_rate(parts.opt_g, cfg.lr_g, "lr_g")]
    parts.batches.load_state_dict(state["batches"])
    set_rng_state(rt, state["rng"])
    if parts.augment is not None and state.get("augment"):
        parts.augment.load_state_dict(state["augment"])
    parts.terms.load_state_dict(state.get("loss_terms") or {})
    step = state["step"]
    if rt.is_main:
        print(f"resuming {run} from {path.name} (step {step})", file=sys.stderr)
        if changed:
            print(f"learning rates from the config, not the checkpoint: {', '.join(changed)}", file=sys.stderr)
    return Counters(step=step, best=state.get("best"), trained_before=state.get("train_seconds", 0.0),
                    saved_step=step)


def set_learning_rate(opt: torch.optim.Optimizer, lr: float, name: str) -> list[str]:
    """Give every param group the config's rate: load_state_dict restored the saved one, and a resume with
    lowered rates (the advice after a NaN) must train with them. Returns what changed, for the log."""
    saved = {group["lr"] for group in opt.param_groups}
    for group in opt.param_groups:
        group["lr"] = lr
    return [f"{name} {lr:g} (the checkpoint had {old:g})" for old in sorted(saved) if old != lr]
