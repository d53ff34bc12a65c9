"""sagan: Self-Attention GANs you can trust.

Public API: `create_model`, `list_models`, `ModelConfig`, `GAN`; training, sampling and evaluation live in
`sagan.train`, `sagan.sampling`, `sagan.metrics` and `sagan.checkpoint`.
"""

from sagan.models import GAN, ModelConfig, create_model, list_models

__version__ = "0.1.0"
__all__ = ["GAN", "ModelConfig", "create_model", "list_models", "__version__"]
