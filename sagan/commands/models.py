"""`sagan models`: every registered model with its size, attention placement and attention memory."""

from __future__ import annotations

import argparse

import torch

from sagan.models import GAN, MODELS
from sagan.nn import attention_memory_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=64, help="batch size for the attention memory figures")
    parser.add_argument("--num-classes", type=int, default=0, help="count conditional parameters for this many classes")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def run(args: argparse.Namespace) -> int:
    header = (f"{'model':<17}{'px':>4}{'G params':>11}{'D params':>11}  {'SN':<6}{'attention (G | D)':<20}"
              f"{'attn MiB':>10}  description")
    print(header)
    print("-" * len(header))
    for name, cfg in MODELS.items():
        with torch.device("meta"):  # counts parameters without allocating them
            gan = GAN(cfg.replace(num_classes=args.num_classes))
        n_g = sum(p.numel() for p in gan.generator.parameters())
        n_d = sum(p.numel() for p in gan.discriminator.parameters())
        sn = ("G" if cfg.g_spectral_norm else "") + ("D" if cfg.d_spectral_norm else "") or "-"
        g_where = ",".join(f"{r}x{r}" for r in cfg.g_attention) or "-"
        d_where = ",".join(f"{r}x{r}" for r in cfg.d_attention) or "-"
        where = f"{g_where} | {d_where}"
        # G's attention sees the batch once per step; D's sees real and fake, so twice the batch.
        memory = sum(attention_memory_bytes(args.batch_size, r, r) for r in cfg.g_attention)
        memory += sum(attention_memory_bytes(2 * args.batch_size, r, r) for r in cfg.d_attention)
        print(f"{name:<17}{cfg.resolution:>4}{n_g / 1e6:>10.2f}M{n_d / 1e6:>10.2f}M  {sn:<6}{where:<20}"
              f"{_mib(memory) if memory else '-':>10}  {cfg.description}")
    print(
        f"\nattn MiB: fp32 memory of the (N x N/4) attention matrices that the explicit path would hold for one "
        f"forward pass at batch {args.batch_size} (D sees real and fake: 2x batch); the fused path used in "
        "training keeps O(N) instead. Parameter counts are for "
        + (f"{args.num_classes} classes." if args.num_classes else "unconditional models.")
    )
    return 0
