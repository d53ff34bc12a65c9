"""sagan: Self-Attention GANs you can trust.

Public API: `create_model`, `list_models`, `ModelConfig`, `GAN`; training, sampling and evaluation live in
`sagan.train`, `sagan.sampling`, `sagan.metrics` and `sagan.checkpoint`.
"""

import os

# OpenMP threads that spin while waiting make 2 torch threads slower than 1 as soon as another process holds a
# core (sagan_32 bf16: 4.18 s/iter spinning vs 3.31 s passive with one busy loop beside it; 1.74 vs 1.73 s on an
# idle machine; benchmarks/README.md). Must be set before torch starts its OpenMP runtime; users can override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sagan.models import GAN, ModelConfig, create_model, list_models  # noqa: E402
from sagan.version import __version__  # noqa: E402

__all__ = ["GAN", "ModelConfig", "create_model", "list_models", "train", "evaluate", "load_generator", "__version__"]


def __getattr__(name: str):
    # train/evaluate/load_generator pull in data, metrics and TensorBoard: import them on first use only
    if name == "train":
        from sagan.train import train

        return train
    if name == "evaluate":
        from sagan.metrics import evaluate

        return evaluate
    if name == "load_generator":
        from sagan.checkpoint import load_generator

        return load_generator
    raise AttributeError(f"module 'sagan' has no attribute {name!r}")
