"""Spectral normalisation helpers over PyTorch's own parametrization.

Miyato, Kataoka, Koyama, Yoshida. "Spectral Normalization for Generative Adversarial Networks",
ICLR 2018 (arXiv:1802.05957). SAGAN (arXiv:1805.08318, section 4) applies it to every layer of both
networks.

We use `torch.nn.utils.parametrizations.spectral_norm` rather than our own power iteration: it already
reshapes a ConvTranspose2d weight around its output dimension (dim=1), keeps the power-iteration
vectors `_u`/`_v` as buffers (so they persist in the state dict) and freezes them in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm, spectral_norm

Wrap = Callable[[nn.Module], nn.Module]


def sn(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-6) -> nn.Module:
    """Spectrally normalise `module.weight` (Conv, ConvTranspose, Linear, Embedding), in place."""
    return spectral_norm(module, n_power_iterations=n_power_iterations, eps=eps)


def init_layer(module: nn.Module, sn: Wrap) -> nn.Module:
    """Xavier-uniform weights and zero biases, then `sn`: the one rule for every conv, linear and embedding layer
    of both networks (attention convs and the projection head included), as in the authors' released code,
    which gives every layer the Glorot-uniform initialiser. The conditional batch norm's gain and bias tables
    (ones and zeros) are the exception.

    The initialisation comes before `sn` so that the power-iteration vectors start from the final weight.
    """
    nn.init.xavier_uniform_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return sn(module)


def no_sn(module: nn.Module) -> nn.Module:
    """The identity wrapper: the same layer without spectral normalisation."""
    return module


def sn_wrapper(enabled: bool) -> Wrap:
    """`sn` when enabled, else `no_sn`: lets a model take spectral norm as data."""
    return sn if enabled else no_sn


def _spectral_parametrization(module: nn.Module) -> _SpectralNorm | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if isinstance(p, _SpectralNorm):
            return p
    return None


def is_spectral(module: nn.Module) -> bool:
    """Whether `module.weight` is spectrally normalised."""
    return _spectral_parametrization(module) is not None


@torch.no_grad()
def sigma_estimate(module: nn.Module) -> float:
    """The current power-iteration estimate u^T W v of the raw weight's largest singular value.

    It is a lower bound on the true value (u and v are unit vectors), and it is what the layer
    divides its weight by in the next forward pass.
    """
    p = _spectral_parametrization(module)
    if p is None:
        raise ValueError(f"{type(module).__name__} is not spectrally normalised")
    w = p._reshape_weight_to_matrix(module.parametrizations.weight.original)
    return float(torch.dot(p._u, torch.mv(w, p._v)))


@torch.no_grad()
def true_sigma(module: nn.Module, normalised: bool = False) -> float:
    """The exact largest singular value of the (raw or normalised) weight seen as a matrix."""
    p = _spectral_parametrization(module)
    if normalised:
        w = module.weight
        dim = p.dim if p is not None else 0
    else:
        w = module.parametrizations.weight.original if p is not None else module.weight
        dim = p.dim if p is not None else 0
    w = w.movedim(dim, 0).flatten(1)
    return float(torch.linalg.matrix_norm(w.float(), ord=2))


def sigma_estimates(model: nn.Module) -> dict[str, float]:
    """Sigma estimate of every spectrally normalised layer, keyed by the layer's qualified name."""
    return {name: sigma_estimate(m) for name, m in model.named_modules() if is_spectral(m)}
