"""Extra terms of the discriminator's loss from recent GAN papers, each off unless its config key sets it.

- R1 / R2 gradient penalties, lazily applied (gradient.py; Mescheder et al. 2018, R3GAN 2024, StyleGAN2 2020);
- LeCam regularisation with moving anchors (lecam.py; Tseng et al. 2021);
- balanced consistency regularisation, bCR (consistency.py; Zhao et al. 2021);
- FastGAN's reconstruction loss through D's decoder (reconstruction.py; Liu et al. 2021).

Every term has the interface of `base.Regularizer` (see base.py): `penalty(step, discriminator, real, y_real,
logits_real, fake, y_fake, logits_fake) -> tensor or None`, `stats()`, `state_dict()`, `load_state_dict()`.
`build_regularizers(cfg, model)` returns the set a run's config asks for, called as one.
"""

from __future__ import annotations

from sagan.config import TrainConfig
from sagan.errors import ConfigError
from sagan.models.config import ModelConfig
from sagan.regularize.base import Regularizer, RegularizerSet
from sagan.regularize.consistency import BalancedConsistency, consistency_transform
from sagan.regularize.gradient import GradientPenalty, gradient_penalty
from sagan.regularize.lecam import LeCam, lecam_penalty
from sagan.regularize.reconstruction import Reconstruction, reconstruction_loss

__all__ = [
    "Regularizer", "RegularizerSet", "GradientPenalty", "gradient_penalty", "LeCam", "lecam_penalty",
    "BalancedConsistency", "consistency_transform", "Reconstruction", "reconstruction_loss", "build_regularizers",
]


def build_regularizers(cfg: TrainConfig, model: ModelConfig) -> RegularizerSet:
    """The discriminator regularisers `cfg` switches on, for the model `model` (empty with the defaults).

    Raises ConfigError when recon_weight is set for a discriminator without a decoder.
    """
    regs: list[Regularizer] = []
    if cfg.r1_gamma:
        regs.append(GradientPenalty(cfg.r1_gamma, "real", cfg.reg_every))
    if cfg.r2_gamma:
        regs.append(GradientPenalty(cfg.r2_gamma, "fake", cfg.reg_every))
    if cfg.lecam_weight:
        regs.append(LeCam(cfg.lecam_weight, cfg.lecam_decay))
    if cfg.bcr_real or cfg.bcr_fake:
        regs.append(BalancedConsistency(cfg.bcr_real, cfg.bcr_fake,
                                        consistency_transform(cfg.bcr_augment, cfg.bcr_flip)))
    if cfg.recon_weight:
        if not model.d_recon:
            raise ConfigError(f"recon_weight needs a discriminator with a decoder, which {model.name} has not: "
                              "add model_args.d_recon=8 (the D feature-map size it decodes)")
        regs.append(Reconstruction(cfg.recon_weight))
    return RegularizerSet(regs)
