"""Building blocks: self-attention, spectral norm helpers, (conditional) batch norm, G and D blocks, and FastGAN's
skip-layer excitation and reconstruction decoder."""

from sagan.nn.attention import SelfAttention, attention_memory_bytes
from sagan.nn.blocks import DBlock, DownConv, GBlock, UpConv
from sagan.nn.decoder import ReconstructionDecoder
from sagan.nn.excitation import SkipExcitation
from sagan.nn.norm import BatchNorm, ConditionalBatchNorm, ProjectionHead, norm_layer
from sagan.nn.spectral import is_spectral, no_sn, sigma_estimate, sigma_estimates, sn, sn_wrapper, true_sigma

__all__ = [
    "SelfAttention", "attention_memory_bytes", "GBlock", "DBlock", "UpConv", "DownConv", "BatchNorm",
    "ConditionalBatchNorm", "ProjectionHead", "norm_layer", "sn", "no_sn", "sn_wrapper", "is_spectral",
    "sigma_estimate", "sigma_estimates", "true_sigma", "SkipExcitation", "ReconstructionDecoder",
]
