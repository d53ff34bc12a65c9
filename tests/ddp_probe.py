"""`sagan` under torchrun with the hooks a distributed test needs (a script, not a test module).

PROBE_RECORD=DIR: each rank saves the noise and fake labels of its first fake batch to DIR/rank<R>.pt.
PROBE_NAN=R:K: rank R's generator loss is NaN at its K-th call (the other ranks stay finite).
"""

import os
import sys
from pathlib import Path

import torch

import sagan.train as train_module
from sagan.cli import main

rank = int(os.environ.get("RANK", "0"))

if os.environ.get("PROBE_RECORD"):
    record = Path(os.environ["PROBE_RECORD"]) / f"rank{rank}.pt"
    real_generate = train_module.generate

    def generate(generator, z, y, rt, keep_graph):
        if not record.exists():
            torch.save({"z": z.detach().cpu(), "y": None if y is None else y.cpu()}, record)
        return real_generate(generator, z, y, rt, keep_graph)

    train_module.generate = generate

if os.environ.get("PROBE_NAN"):
    nan_rank, nan_call = map(int, os.environ["PROBE_NAN"].split(":"))
    if rank == nan_rank:
        d_loss, g_loss = train_module.LOSSES["hinge"]
        calls = {"n": 0}

        def poisoned_g_loss(fake_logits):
            calls["n"] += 1
            return g_loss(fake_logits) * (float("nan") if calls["n"] == nan_call else 1.0)

        train_module.LOSSES["hinge"] = (d_loss, poisoned_g_loss)

sys.exit(main(sys.argv[1:]))
