"""A generator/discriminator pair built from a ModelConfig."""

from __future__ import annotations

from torch import nn

from sagan.models.config import ModelConfig
from sagan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from sagan.models.resnet import ResNetDiscriminator, ResNetGenerator

NETWORKS = {
    "resnet": (ResNetGenerator, ResNetDiscriminator),
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
}


class GAN(nn.Module):
    """Holds `generator` and `discriminator` and the `config` that rebuilds both; no training logic."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        generator_cls, discriminator_cls = NETWORKS[config.arch]
        self.generator = generator_cls(config)
        self.discriminator = discriminator_cls(config)

    def forward(self, *args, **kwargs):
        raise TypeError("call gan.generator(z, y) or gan.discriminator(x, y)")
