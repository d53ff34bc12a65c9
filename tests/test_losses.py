"""The losses' values on known logits."""

import math

import pytest
import torch

from sagan.losses import LOSSES, NEEDS_REAL_IN_G, hinge_d, hinge_g, ns_d, ns_g, rpgan_d, rpgan_g


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_rpgan_pairs_each_real_with_the_fake_beside_it():
    real, fake = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    # D: softplus(-(real - fake)) per pair; G: softplus(-(fake - real)), the mirror
    assert rpgan_d(real, fake).item() == pytest.approx((softplus(-2) + softplus(0) + softplus(2)) / 3)
    assert rpgan_g(fake, real).item() == pytest.approx((softplus(2) + softplus(0) + softplus(-2)) / 3)
    swapped = rpgan_d(real, fake.flip(0)).item()  # pairing, not batch means: another pairing, another loss
    assert swapped == pytest.approx((softplus(-1) + softplus(0) + softplus(1)) / 3)


def test_rpgan_only_sees_differences():
    torch.manual_seed(0)
    real, fake = torch.randn(16), torch.randn(16)
    assert torch.allclose(rpgan_d(real + 5, fake + 5), rpgan_d(real, fake))
    assert torch.allclose(rpgan_g(fake - 3, real - 3), rpgan_g(fake, real))


def test_rpgan_needs_reals_in_the_generator_step_and_equal_batches():
    assert "rpgan" in LOSSES and NEEDS_REAL_IN_G == {"rpgan"}
    with pytest.raises(ValueError, match="needs D's logits on a batch of reals"):
        rpgan_g(torch.zeros(2))
    with pytest.raises(ValueError, match="one to one"):
        rpgan_d(torch.zeros(2), torch.zeros(3))


def test_hinge_and_ns_on_known_logits_ignore_reals_in_the_generator_loss():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert hinge_d(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1.5) / 2)
    assert hinge_g(fake).item() == pytest.approx(0.75) and hinge_g(fake, real).item() == pytest.approx(0.75)
    expected_d = (softplus(-2) + softplus(-0.5)) / 2 + (softplus(-2) + softplus(0.5)) / 2
    assert ns_d(real, fake).item() == pytest.approx(expected_d)
    assert ns_g(fake, real).item() == pytest.approx((softplus(2) + softplus(-0.5)) / 2)
