"""Where and how a run executes: device, precision, threads, determinism, and the distributed group."""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from sagan.errors import ConfigError, SaganError


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for fp32
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        """bf16 autocast when the run is in bf16, else a no-op context."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def all_finite(self, value: torch.Tensor) -> bool:
        """Whether `value` is finite on every rank: one small all-reduce in a distributed run, so that all ranks
        step, or all stop, together (a rank that stopped alone would leave the others waiting in DDP's
        gradient all-reduce)."""
        finite = torch.isfinite(value).all().to(torch.float32).reshape(1)
        if self.distributed:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def noise_seed(self, seed: int) -> int:
        """The seed of this rank's noise stream: every rank draws its own z and fake labels (or G would make
        the same fakes on every rank), while the models are initialised from `seed` alike on all ranks."""
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    @property
    def precision(self) -> str:
        return "fp32" if self.dtype is None else "bf16"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 dot products (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") and (
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but this machine has no CUDA GPU; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 or None (fp32). "auto" picks bf16 where the hardware has fast bf16 maths."""
    if precision == "fp32":
        return None
    fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16()
    if precision == "bf16" and device.type == "cuda" and not fast:
        raise ConfigError("this GPU has no bf16 support; use --precision fp32")
    return torch.bfloat16 if (precision == "bf16" or fast) else None


def warn_on_shared_rendezvous_store(rank: int) -> None:
    """Warn (rank 0) when torchrun may restart the group while its workers share the agent's rendezvous store.

    The shared store outlives a restart, so the restarted workers can read the dead group's addresses and fail to
    connect or hang (pytorch/pytorch#135712; here 4 of 11 restarts without it). The variable is read by torchrun
    itself, so it has to be set before torchrun starts.
    """
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    if rank == 0 and restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        warnings.warn("torchrun --max-restarts with a shared rendezvous store: a restart can fail to reconnect "
                      "(pytorch/pytorch#135712); run `export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1` before torchrun",
                      stacklevel=2)


def setup_runtime(device: str, precision: str, threads: int, deterministic: bool, timeout_s: float) -> Runtime:
    """Start the distributed group when launched by torchrun, pick device and precision, set threads."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if world_size > 1 and not dist.is_initialized():
        warn_on_shared_rendezvous_store(rank)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Runtime(dev, resolve_dtype(precision, dev), rank, world_size)


def check_same_start(rt: Runtime, step: int, run: str) -> None:
    """Every rank must resume from the same step: on several machines each reads the run folder itself, so a
    folder that is not on storage all of them see makes one start over while another resumes."""
    if not rt.distributed:
        return
    steps = [None] * rt.world_size
    dist.all_gather_object(steps, step)
    if len(set(steps)) > 1:
        raise SaganError(f"the processes found different checkpoints in {run} (steps by rank: {steps}); every machine "
                         "must see the same run folder (shared storage), or start afresh with --fresh")


def shutdown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()
