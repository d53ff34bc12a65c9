"""Extra terms of the discriminator's and the generator's losses from GAN papers, each off unless its config key
sets it (mode seeking excepted, which the default recipe uses):

- R1 / R2 gradient penalties, lazily applied (gradient.py; Mescheder et al. 2018, R3GAN 2024, StyleGAN2 2020);
- LeCam regularisation with moving anchors (lecam.py; Tseng et al. 2021);
- balanced consistency regularisation, bCR (consistency.py; Zhao et al. 2021);
- FastGAN's reconstruction loss through D's decoder (reconstruction.py; Liu et al. 2021);
- MSGAN's mode-seeking term in G's loss (mode_seeking.py; Mao et al. 2019).

Every term is a `sagan.training.terms.LossTerm`: the training loop's D and G updates add what its `d_loss` /
`g_loss` return, log its `stats()` and checkpoint its `state_dict()`. `loss_terms(cfg, model)` returns the
terms a run's config asks for.
"""

from __future__ import annotations

from sagan.config import TrainConfig
from sagan.errors import ConfigError
from sagan.models.config import ModelConfig
from sagan.regularize.base import Regularizer
from sagan.regularize.consistency import BalancedConsistency, consistency_transform
from sagan.regularize.gradient import GradientPenalty, gradient_penalty
from sagan.regularize.lecam import LeCam, lecam_penalty
from sagan.regularize.mode_seeking import ModeSeeking
from sagan.regularize.reconstruction import Reconstruction, reconstruction_loss
from sagan.training.terms import LossTerm, LossTerms

__all__ = [
    "Regularizer", "GradientPenalty", "gradient_penalty", "LeCam", "lecam_penalty", "BalancedConsistency",
    "consistency_transform", "Reconstruction", "reconstruction_loss", "ModeSeeking", "check_model", "loss_terms",
]


def check_model(cfg: TrainConfig, model: ModelConfig) -> None:
    """Raise ConfigError when a term `cfg` switches on needs a part the model lacks (recon_weight: D's decoder);
    `sagan train` checks this before it loads any data, and --dry-run too."""
    if cfg.recon_weight and not model.d_recon:
        raise ConfigError(f"recon_weight needs a discriminator with a decoder, which {model.name} has not: "
                          "add model_args.d_recon=8 (the D feature-map size it decodes)")


def loss_terms(cfg: TrainConfig, model: ModelConfig) -> LossTerms:
    """The extra loss terms `cfg` switches on, for the model `model`: the one place the config turns them on.

    Raises ConfigError when recon_weight is set for a discriminator without a decoder (`check_model`).
    """
    check_model(cfg, model)
    terms: list[LossTerm] = []
    if cfg.mode_seeking:
        terms.append(ModeSeeking(cfg.mode_seeking))
    if cfg.r1_gamma:
        terms.append(GradientPenalty(cfg.r1_gamma, "real", cfg.reg_every))
    if cfg.r2_gamma:
        terms.append(GradientPenalty(cfg.r2_gamma, "fake", cfg.reg_every))
    if cfg.lecam_weight:
        terms.append(LeCam(cfg.lecam_weight, cfg.lecam_decay))
    if cfg.bcr_real or cfg.bcr_fake:
        terms.append(BalancedConsistency(cfg.bcr_real, cfg.bcr_fake,
                                         consistency_transform(cfg.bcr_augment, cfg.bcr_flip)))
    if cfg.recon_weight:
        terms.append(Reconstruction(cfg.recon_weight))
    return LossTerms(terms)
