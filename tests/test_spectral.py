import pytest
import torch
from torch import nn

from sagan.nn import is_spectral, sigma_estimate, sigma_estimates, sn, true_sigma

LAYERS = {
    "conv": lambda: nn.Conv2d(16, 32, 3),
    "conv_transpose": lambda: nn.ConvTranspose2d(16, 32, 4, 2, 1),  # output dim is 1, not 0
    "linear": lambda: nn.Linear(40, 24),
    "embedding": lambda: nn.Embedding(10, 64),
}


def _matrix(module: nn.Module, w: torch.Tensor) -> torch.Tensor:
    dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
    return w.movedim(dim, 0).flatten(1)


def _forward(module: nn.Module) -> None:
    if isinstance(module, nn.Embedding):
        module(torch.arange(10))
    elif isinstance(module, nn.Linear):
        module(torch.randn(2, 40))
    else:
        module(torch.randn(2, 16, 8, 8))


@pytest.mark.parametrize("kind", LAYERS)
def test_normalised_weight_has_unit_spectral_norm(kind):
    torch.manual_seed(0)
    layer = sn(LAYERS[kind]())
    with torch.no_grad():  # scale the raw weight far from 1 so that a missing normalisation shows
        layer.parametrizations.weight.original.mul_(7.0)
    for _ in range(30):
        _forward(layer)
    sigma = torch.linalg.matrix_norm(_matrix(layer, layer.weight.detach()), ord=2)
    assert abs(float(sigma) - 1.0) < 0.01, f"{kind}: largest singular value {float(sigma):.4f}"
    assert abs(true_sigma(layer, normalised=True) - 1.0) < 0.01


@pytest.mark.parametrize("kind", LAYERS)
def test_estimate_never_exceeds_the_true_value(kind):
    torch.manual_seed(1)
    layer = sn(LAYERS[kind]())
    truth = true_sigma(layer)
    for _ in range(10):
        _forward(layer)
        assert sigma_estimate(layer) <= truth * (1 + 1e-5)
    assert sigma_estimate(layer) > 0.9 * truth


@pytest.mark.parametrize("kind", LAYERS)
def test_power_iteration_vectors_persist_and_freeze_in_eval(kind):
    torch.manual_seed(2)
    layer = sn(LAYERS[kind]())
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    assert "parametrizations.weight.0._u" in state and "parametrizations.weight.0._v" in state
    _forward(layer)
    u_after_train_step = layer.parametrizations.weight[0]._u.clone()
    assert not torch.equal(u_after_train_step, state["parametrizations.weight.0._u"])
    layer.eval()
    _forward(layer)
    _forward(layer)
    assert torch.equal(layer.parametrizations.weight[0]._u, u_after_train_step)
    # a fresh layer loading the state dict continues from the same vectors
    torch.manual_seed(99)
    clone = sn(LAYERS[kind]())
    clone.load_state_dict(layer.state_dict())
    clone.eval()
    assert torch.equal(clone.parametrizations.weight[0]._u, u_after_train_step)
    assert torch.equal(clone.weight, layer.weight)


def test_sigma_estimates_cover_every_normalised_layer():
    model = nn.Sequential(sn(nn.Conv2d(3, 8, 3)), nn.ReLU(), nn.Conv2d(8, 8, 3), sn(nn.Linear(4, 4)))
    sigmas = sigma_estimates(model)
    assert set(sigmas) == {"0", "3"}
    assert not is_spectral(model[2])
    with pytest.raises(ValueError):
        sigma_estimate(model[2])
