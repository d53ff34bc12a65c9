"""Smoke checks that `sagan train` does not cover on its own: fp16 with a gradient scaler, and one-process DDP.

    python benchmarks/gpu_smoke.py fp16 [--device cuda] [--model sagan_32] [--steps 20] [--batch-size 32]
    torchrun --standalone --nproc-per-node 1 benchmarks/gpu_smoke.py ddp [--backend nccl] [--steps 20]

A plain script for benchmarks/gpu_check.sh, not a test (tests/test_gpu_check.py runs both on the CPU).

fp16: `sagan train` runs in fp32 or bf16 (sagan/runtime.py); fp16 needs loss scaling, which the loop does not
do. This runs the loop's recipe (hinge loss, TTUR Adam, reuse of the D step's fakes) under fp16 autocast with
one torch.amp.GradScaler per network, on random images, and checks that the losses stay finite and that the
scalers end with a finite scale.
ddp: the training loop's own d_step/g_step with G and D wrapped in DistributedDataParallel, in a process
group started from torchrun's environment (a group of one process is enough to exercise nccl or gloo).
Prints one JSON line: {"check", "steps", "seconds", "images_per_sec", "loss_d", "loss_g", ...}; exit 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sagan.config import TrainConfig
from sagan.losses import LOSSES
from sagan.models import create_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fp16(args) -> dict:
    """n steps of D then G under fp16 autocast with gradient scaling."""
    device = torch.device(args.device)
    recipe = TrainConfig()
    gan = create_model(args.model, num_classes=10, g_ch=args.width, d_ch=args.width) if args.width else \
        create_model(args.model, num_classes=10)
    g, d, cfg = gan.generator.to(device), gan.discriminator.to(device), gan.config
    opt_g = torch.optim.Adam(g.parameters(), recipe.lr_g, betas=(recipe.beta1, recipe.beta2))
    opt_d = torch.optim.Adam(d.parameters(), recipe.lr_d, betas=(recipe.beta1, recipe.beta2))
    scale_g, scale_d = torch.amp.GradScaler(device.type), torch.amp.GradScaler(device.type)
    d_loss_fn, g_loss_fn = LOSSES[recipe.loss]
    b = args.batch_size
    real = torch.rand(b, cfg.img_channels, cfg.resolution, cfg.resolution, device=device) * 2 - 1
    y = torch.randint(0, 10, (b,), device=device)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        with torch.autocast(device.type, dtype=torch.float16):
            fake = g(torch.randn(b, cfg.z_dim, device=device), y)  # (B, C, H, W), fp16
            logits = d(torch.cat([real, fake.detach()]), torch.cat([y, y])).float()
        loss_d = d_loss_fn(*logits.split(b))
        opt_d.zero_grad(set_to_none=True)
        scale_d.scale(loss_d).backward()
        scale_d.step(opt_d)  # skipped, and the scale lowered, when a gradient overflowed
        scale_d.update()
        d.requires_grad_(False)
        with torch.autocast(device.type, dtype=torch.float16):
            loss_g = g_loss_fn(d(fake, y).float())
        opt_g.zero_grad(set_to_none=True)
        scale_g.scale(loss_g).backward()
        d.requires_grad_(True)
        scale_g.step(opt_g)
        scale_g.update()
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            raise SystemExit(f"gpu_smoke fp16: non-finite loss (D {float(loss_d)}, G {float(loss_g)})")
    _sync(device)
    seconds = time.perf_counter() - t0
    scales = [scale_d.get_scale(), scale_g.get_scale()]
    if not all(0 < s < float("inf") for s in scales):
        raise SystemExit(f"gpu_smoke fp16: gradient scales ended at {scales}")
    finite = all(torch.isfinite(p).all() for p in [*g.parameters(), *d.parameters()])
    if not finite:
        raise SystemExit("gpu_smoke fp16: non-finite weights")
    return {"check": "fp16", "model": args.model, "device": str(device), "steps": args.steps,
            "seconds": round(seconds, 3), "images_per_sec": round(args.steps * b / seconds, 1),
            "loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()), "scale_d": scales[0],
            "scale_g": scales[1]}


def ddp(args) -> dict:
    """n steps of the loop's d_step/g_step with DDP-wrapped networks, in torchrun's process group."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from sagan.runtime import resolve_device
    from sagan.train import d_step, g_step, generate

    local_rank = int(__import__("os").environ.get("LOCAL_RANK", "0"))
    device = resolve_device(args.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(args.backend)
    try:
        from sagan.runtime import Runtime

        rt = Runtime(device, None, dist.get_rank(), dist.get_world_size())
        recipe = TrainConfig()
        gan = create_model(args.model, num_classes=0, g_ch=args.width, d_ch=args.width) if args.width else \
            create_model(args.model, num_classes=0)
        g, d = DDP(gan.generator.to(device)), DDP(gan.discriminator.to(device))
        cfg = gan.config
        opt_g = torch.optim.Adam(g.parameters(), recipe.lr_g, betas=(recipe.beta1, recipe.beta2))
        opt_d = torch.optim.Adam(d.parameters(), recipe.lr_d, betas=(recipe.beta1, recipe.beta2))
        d_loss_fn, g_loss_fn = LOSSES[recipe.loss]
        b = args.batch_size
        real = torch.rand(b, cfg.img_channels, cfg.resolution, cfg.resolution, device=device) * 2 - 1
        before = [p.detach().clone() for p in g.parameters()]
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fake = generate(g, torch.randn(b, cfg.z_dim, device=device), None, rt, keep_graph=True)
            loss_d, _, _ = d_step(d, opt_d, d_loss_fn, real, None, fake, None, rt)
            loss_g = g_step(d.module, opt_g, g_loss_fn, fake, None, rt)
        _sync(device)
        seconds = time.perf_counter() - t0
        moved = any(not torch.equal(a, p) for a, p in zip(before, g.parameters()))
        if not moved:
            raise SystemExit("gpu_smoke ddp: the generator's weights did not change")
        return {"check": "ddp", "backend": dist.get_backend(), "world_size": dist.get_world_size(),
                "device": str(device), "steps": args.steps, "seconds": round(seconds, 3),
                "images_per_sec": round(args.steps * b / seconds, 1), "loss_d": float(loss_d),
                "loss_g": float(loss_g)}
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", choices=["fp16", "ddp"])
    p.add_argument("--device", help="default: cuda for fp16, the local rank's GPU (or the CPU) for ddp")
    p.add_argument("--backend", default="nccl")
    p.add_argument("--model", default="sagan_32")
    p.add_argument("--width", type=int, default=0, help="g_ch = d_ch (default: the model's paper widths)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if args.check == "fp16" else "auto")
    torch.manual_seed(0)
    result = fp16(args) if args.check == "fp16" else ddp(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
