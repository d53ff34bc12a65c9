"""The peer in benchmarks/bench_train.py --peer: torch-mimicry's SAGAN-32 (torch-mimicry 0.1.16), trained by its
own `train_step` methods with `sagan train`'s optimiser settings, so the two libraries' iterations compare.

Only `torch_mimicry.nets` and `torch_mimicry.training.metric_log` are imported: the package's __init__ (which pulls
the TensorFlow-based metrics) is bypassed by registering bare package modules in sys.modules.
"""

from __future__ import annotations

import sys
from pathlib import Path

PEER = "mimicry_sagan_32"
PEER_PACKAGE = "torch-mimicry==0.1.16"


def import_mimicry_nets():
    """torch_mimicry's SAGAN-32 module and MetricLog class, without running the package's __init__.

    torch_mimicry/__init__.py imports its metrics (TensorFlow); bare package modules registered in
    sys.modules let `torch_mimicry.nets` and `torch_mimicry.training.metric_log` import on their own.
    """
    import importlib
    import importlib.util
    import types

    spec = importlib.util.find_spec("torch_mimicry")
    if spec is None:
        raise SystemExit(f"--peer needs {PEER_PACKAGE}: pip install --no-deps {PEER_PACKAGE}")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, folder in (("torch_mimicry", root), ("torch_mimicry.training", root / "training")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(folder)]
            sys.modules[name] = module
    sagan_32 = importlib.import_module("torch_mimicry.nets.sagan.sagan_32")
    metric_log = importlib.import_module("torch_mimicry.training.metric_log")
    return sagan_32, metric_log.MetricLog



def build_peer(dtype, memory_format, batch: int, n_dis: int, num_classes: int, device: str = "cpu"):
    """mimicry's SAGAN-32 trained by its own train_step methods (hinge loss), under autocast for bf16."""
    import contextlib

    import torch

    from sagan.config import TrainConfig

    recipe = TrainConfig()
    sagan_32, MetricLog = import_mimicry_nets()
    num_classes = num_classes or 10  # its SAGAN is conditional (CBN + projection); 0 classes fails to build
    g = sagan_32.SAGANGenerator32(num_classes=num_classes).to(device, memory_format=memory_format)
    d = sagan_32.SAGANDiscriminator32(num_classes=num_classes).to(device, memory_format=memory_format)
    opt_g = torch.optim.Adam(g.parameters(), recipe.lr_g, betas=(recipe.beta1, recipe.beta2))
    opt_d = torch.optim.Adam(d.parameters(), recipe.lr_d, betas=(recipe.beta1, recipe.beta2))
    real = (torch.rand(batch, 3, 32, 32, device=device) * 2 - 1).contiguous(memory_format=memory_format)

    def autocast():
        return torch.autocast(torch.device(device).type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def step():
        log = MetricLog()
        for _ in range(n_dis):
            with autocast():
                d.train_step((real, torch.randint(0, num_classes, (batch,), device=device)), g, opt_d, log,
                             device=device)
        with autocast():
            g.train_step((real, None), d, opt_g, log, device=device)

    return step, sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())
