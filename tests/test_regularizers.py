"""What each discriminator regulariser computes (R1, R2, lazy intervals, LeCam, bCR, reconstruction), and that
the stateful ones resume exactly."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sagan.augment import random_flip
from sagan.config import TrainConfig, apply_overrides
from sagan.errors import ConfigError
from sagan.models import create_model
from sagan.nn import SelfAttention
from sagan.regularize import (
    BalancedConsistency,
    GradientPenalty,
    LeCam,
    ModeSeeking,
    Reconstruction,
    consistency_transform,
    gradient_penalty,
    lecam_penalty,
    loss_terms,
    reconstruction_loss,
)
from sagan.training.terms import DInputs, LossTerms

pytestmark = pytest.mark.usefixtures("one_thread")


class LinearD(nn.Module):
    """D(x) = sum(a * x) per image: its input gradient is `a` for every image."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())
        self.calls: list[int] = []  # batch sizes of the forwards

    def forward(self, x, y=None):
        self.calls.append(x.shape[0])
        return (self.a * x).flatten(1).sum(1)


class QuadraticD(nn.Module):
    """D(x) = |x|^2 / 2 per image: its input gradient is x itself, different for every image."""

    def forward(self, x, y=None):
        return x.square().flatten(1).sum(1) / 2


def _batch(n=4, seed=0, shape=(3, 4, 4)):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def _inputs(update=0, d=None, real=None, fake=None, y_real=None, y_fake=None, real_logits=None, fake_logits=None,
            augment=None):
    """A D update's inputs as the training loop hands them to a term (no runtime: the terms here use none)."""
    return DInputs(update, update, d, real, y_real, fake, y_fake, real_logits, fake_logits, augment, None)


def _call(term, update, d, real, fake, y_real=None, y_fake=None):
    """A term as a D update calls it: D's own logits on this update's inputs, attached to the graph."""
    logits = d(torch.cat([real, fake]), None if y_real is None else torch.cat([y_real, y_fake]))
    logits_real, logits_fake = logits.split(real.shape[0])
    return term.d_loss(_inputs(update, d, real, fake, y_real, y_fake, logits_real, logits_fake))


# ---- R1 / R2 -------------------------------------------------------------------------------------------------------

def test_r1_of_a_linear_d_is_gamma_half_norm_of_a_squared():
    a = _batch(1, seed=1)[0]
    d = LinearD(a)
    real, fake = _batch(5, seed=2), _batch(5, seed=3)
    value = _call(GradientPenalty(10.0, "real"), 0, d, real, fake)
    assert value.item() == pytest.approx(10.0 / 2 * a.square().sum().item(), rel=1e-6)


def test_r1_averages_each_images_squared_gradient_norm_over_reals_and_r2_over_fakes():
    real, fake = _batch(6, seed=4), 3 * _batch(6, seed=5)
    d = QuadraticD()
    r1 = _call(GradientPenalty(2.0, "real"), 0, d, real, fake)
    r2 = _call(GradientPenalty(2.0, "fake"), 0, d, real, fake)
    assert r1.item() == pytest.approx(real.square().flatten(1).sum(1).mean().item(), rel=1e-6)
    assert r2.item() == pytest.approx(fake.square().flatten(1).sum(1).mean().item(), rel=1e-6)
    assert r2.item() > 5 * r1.item()  # the fakes are 3x larger: R2 looked at them, R1 did not


def test_r1_reaches_ds_parameters_with_the_gradient_of_the_penalty():
    """d/da of gamma/2 |a|^2 is gamma * a: the penalty is differentiable in D's weights (double backward)."""
    a = _batch(1, seed=6)[0]
    d = LinearD(a)
    value = _call(GradientPenalty(3.0, "real"), 0, d, _batch(2), _batch(2, seed=1))
    value.backward()
    assert torch.allclose(d.a.grad, 3.0 * a, atol=1e-6)


def test_lazy_interval_acts_every_k_steps_scaled_by_k():
    a = _batch(1, seed=7)[0]
    d, real, fake = LinearD(a), _batch(3), _batch(3, seed=1)
    per_step = 10.0 / 2 * a.square().sum().item()
    reg = GradientPenalty(10.0, "real", every=4)
    values = [_call(reg, step, d, real, fake) for step in range(8)]
    assert [v is not None for v in values] == [True, False, False, False] * 2
    assert values[0].item() == pytest.approx(4 * per_step, rel=1e-6)
    assert sum(v.item() for v in values if v is not None) / 8 == pytest.approx(per_step, rel=1e-6)
    assert reg.stats() == {"r1": pytest.approx(a.square().sum().item(), rel=1e-6)}  # unweighted, for the log


def test_r1_under_augmentation_is_the_gradient_with_respect_to_the_image_before_it():
    """With DiffAugment on, D sees augment(x); R1 differentiates D(augment(x)) with respect to x, through it."""
    a = _batch(1, seed=1)[0]
    d, real = LinearD(a), _batch(3, seed=2)
    logits = d(torch.cat([real, real]))
    inputs = _inputs(0, d, real, real, real_logits=logits[:3], fake_logits=logits[3:], augment=lambda x: 2 * x)
    value = GradientPenalty(10.0, "real").d_loss(inputs)
    assert value.item() == pytest.approx(10.0 / 2 * (2 * a).square().sum().item(), rel=1e-6)


def test_the_lazy_clock_is_the_count_of_d_updates_not_the_training_step():
    a = _batch(1, seed=7)[0]
    d, real = LinearD(a), _batch(3)
    reg = GradientPenalty(1.0, "real", every=2)
    # n_dis = 2: updates 0, 1 of step 0 and 2, 3 of step 1: the penalty acts at updates 0 and 2, once per step
    acted = [reg.d_loss(DInputs(update // 2, update, d, real, None, real, None, None, None, None, None)) is not None
             for update in range(4)]
    assert acted == [True, False, True, False]


def test_gradient_penalty_through_a_sagan_discriminator_with_attention_in_bf16():
    torch.manual_seed(0)
    gan = create_model("sagan_32", g_ch=4, d_ch=8, num_classes=3)
    d = gan.discriminator
    for m in d.modules():
        if isinstance(m, SelfAttention):
            nn.init.constant_(m.gamma, 0.5)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = gradient_penalty(d, x, y)
    value.backward()
    assert torch.isfinite(value) and value > 0
    assert d.attention["16"].gamma.grad is not None and d.attention["16"].gamma.grad.abs() > 0
    assert not x.requires_grad, "the caller's batch is left as it was"


# ---- LeCam ---------------------------------------------------------------------------------------------------------

def test_lecam_penalty_on_known_logits():
    real, fake = torch.tensor([1.0, -2.0]), torch.tensor([0.5, -3.0])
    # relu(1 - (-1))^2 = 4, relu(-2 + 1) = 0: mean 2;  relu(0.5 - 0.5) = 0, relu(0.5 + 3)^2 = 12.25: mean 6.125
    assert lecam_penalty(real, fake, anchor_real=0.5, anchor_fake=-1.0).item() == pytest.approx(8.125)


def test_lecam_anchors_move_as_exponential_averages_and_the_penalty_uses_the_updated_ones():
    reg = LeCam(weight=0.3, decay=0.5)
    means = [(1.0, -1.0), (3.0, -3.0), (5.0, -5.0)]
    anchors = [(1.0, -1.0), (2.0, -2.0), (3.5, -3.5)]  # the first batch sets them, then halfway each time
    for (mr, mf), (ar, af) in zip(means, anchors):
        real = torch.tensor([mr - 1.0, mr + 1.0])
        fake = torch.tensor([mf - 1.0, mf + 1.0])
        value = reg.d_loss(_inputs(real_logits=real, fake_logits=fake))
        assert (reg.anchor_real, reg.anchor_fake) == (pytest.approx(ar), pytest.approx(af))
        assert value.item() == pytest.approx(0.3 * lecam_penalty(real, fake, ar, af).item())
    assert reg.stats()["lecam_anchor_real"] == pytest.approx(3.5)


def test_lecam_pulls_d_real_down_towards_the_fake_anchor():
    reg = LeCam(weight=1.0)
    reg.load_state_dict({"anchor_real": 0.0, "anchor_fake": 0.0, "updates": 5})
    real = torch.tensor([4.0, 4.0], requires_grad=True)
    fake = torch.tensor([-4.0, -4.0], requires_grad=True)
    reg.d_loss(_inputs(real_logits=real, fake_logits=fake)).backward()
    assert (real.grad > 0).all() and (fake.grad < 0).all()  # gradient descent lowers D(real), raises D(fake)


def test_lecam_state_round_trips_and_resumes_exactly():
    torch.manual_seed(0)
    batches = [(torch.randn(8), torch.randn(8)) for _ in range(6)]
    reg = LeCam(weight=1.0, decay=0.9)
    for real, fake in batches[:3]:
        reg.d_loss(_inputs(real_logits=real, fake_logits=fake))
    state = reg.state_dict()
    resumed = LeCam(weight=1.0, decay=0.9)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    for real, fake in batches[3:]:
        assert torch.equal(reg.d_loss(_inputs(real_logits=real, fake_logits=fake)),
                           resumed.d_loss(_inputs(real_logits=real, fake_logits=fake)))
    assert resumed.state_dict() == reg.state_dict()


# ---- bCR -----------------------------------------------------------------------------------------------------------

def test_bcr_is_zero_for_the_identity_transform():
    torch.manual_seed(0)
    d = create_model("sagan_32", g_ch=4, d_ch=8, num_classes=3).discriminator.eval()  # SN vectors held still
    real, fake = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    y_real, y_fake = torch.randint(0, 3, (4,)), torch.randint(0, 3, (4,))
    value = _call(BalancedConsistency(10.0, 10.0, transform=lambda x: x), 0, d, real, fake, y_real, y_fake)
    assert value.item() == pytest.approx(0.0, abs=1e-10)


def test_bcr_on_a_known_shift_weights_reals_and_fakes_separately():
    """T(x) = x + 1 moves a linear D's logit by sum(a) on every image: the terms are w_real and w_fake * sum(a)^2."""
    a = _batch(1, seed=8)[0]
    d = LinearD(a)
    real, fake = _batch(3), _batch(3, seed=1)
    shift = a.sum().item() ** 2
    both = _call(BalancedConsistency(10.0, 2.0, transform=lambda x: x + 1), 0, d, real, fake)
    assert both.item() == pytest.approx(12.0 * shift, rel=1e-5)
    d.calls.clear()
    reals_only = _call(BalancedConsistency(10.0, 0.0, transform=lambda x: x + 1), 0, d, real, fake)
    assert reals_only.item() == pytest.approx(10.0 * shift, rel=1e-5)
    assert d.calls == [6, 3], "the transformed forward sees only the side whose weight is set"
    assert BalancedConsistency(0.0, 0.0, transform=lambda x: x).d_loss(_inputs(0, d, real, fake)) is None


def test_bcr_gradient_flows_through_both_forwards():
    a = _batch(1, seed=9)[0]
    d = LinearD(a)
    real, fake = _batch(2), _batch(2, seed=1)
    _call(BalancedConsistency(1.0, 0.0, transform=lambda x: 2 * x), 0, d, real, fake).backward()
    # mean_i (a.x_i - 2 a.x_i)^2 = mean_i (a.x_i)^2: gradient 2 mean_i (a.x_i) x_i
    expected = 2 * ((real * a).flatten(1).sum(1)[:, None, None, None] * real).mean(0)
    assert torch.allclose(d.a.grad, expected, atol=1e-5)


def test_consistency_transform_flips_and_translates():
    torch.manual_seed(0)
    x = torch.randn(400, 1, 8, 8)
    flipped = consistency_transform("", flip=True)(x)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert abs(mirrored.float().mean().item() - 0.5) < 0.1
    assert (mirrored | (flipped == x).flatten(1).all(1)).all(), "each image is either mirrored or left as it was"
    torch.manual_seed(0)
    moved = consistency_transform("translation", flip=False)(x)
    assert moved.shape == x.shape and not torch.equal(moved, x)


def test_random_flip_probability():
    x = torch.randn(10, 3, 4, 5)
    assert torch.equal(random_flip(x, 1.0), x.flip(-1))
    assert torch.equal(random_flip(x, 0.0), x)


# ---- reconstruction (FastGAN) --------------------------------------------------------------------------------------

def _recon_model(**extra):
    torch.manual_seed(0)
    return create_model("sagan_32_cpu", g_ch=4, d_ch=8, d_recon=8, num_classes=0, img_channels=3, **extra)


def test_reconstruction_loss_is_the_mse_against_the_downsampled_real():
    torch.manual_seed(0)
    d = create_model("sngan_64", g_ch=2, d_ch=4, d_recon=4).discriminator  # decodes 4x4 -> 32 px of 64
    d.eval()  # the same output from both forwards: SN vectors and batch-norm statistics held still
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    value = reconstruction_loss(d, real, None)
    _, image = d(real, None, reconstruct=True)
    assert image.shape == (2, 3, 32, 32)
    target = real.view(2, 3, 32, 2, 32, 2).mean((3, 5))  # 2x2 block means
    assert value.item() == pytest.approx((image - target).square().mean().item(), rel=1e-5)


def test_reconstruction_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    d = create_model("sngan_32", g_ch=2, d_ch=4, d_recon=8).discriminator
    # smooth images (4x4 noise, up-sampled): a decoder that only learnt the mean would stay at mean(real^2)
    coarse = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real = F.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    opt = torch.optim.Adam(d.parameters(), 5e-3, betas=(0.0, 0.9))  # D's optimiser: the decoder is among them
    reg = Reconstruction(1.0)
    losses = []
    for step in range(15):
        loss = reg.d_loss(_inputs(step, d, real))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    late = sum(losses[-3:]) / 3
    assert late < 0.3 * losses[0] and late < 0.4 * real.square().mean().item(), losses


def test_reconstruction_trains_d_and_its_decoder_only():
    gan = _recon_model()
    d = gan.discriminator
    assert {id(p) for p in d.decoder.parameters()} <= {id(p) for p in d.parameters()}
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    Reconstruction(1.0).d_loss(_inputs(0, d, real)).backward()
    assert all(p.grad is not None for p in d.decoder.parameters())
    assert d.blocks[0].conv1.parametrizations.weight.original.grad is not None
    assert all(p.grad is None for p in d.head.parameters()), "the logit head takes no part in the reconstruction"
    assert all(p.grad is None for p in gan.generator.parameters())


def test_recon_weight_needs_a_decoder():
    cfg = apply_overrides(TrainConfig(), {"recon_weight": "1", "mode_seeking": "0"})
    with pytest.raises(ConfigError, match="d_recon") as info:
        loss_terms(cfg, create_model("sagan_32_cpu").config)
    assert "\n" not in str(info.value)
    assert loss_terms(cfg, _recon_model().config).names() == ["recon"]


# ---- the set a run holds -------------------------------------------------------------------------------------------

def test_defaults_build_no_regulariser():
    regs = loss_terms(TrainConfig(mode_seeking=0.0), create_model("sagan_32_cpu").config)
    assert not regs and regs.d_loss(_inputs()) is None
    assert regs.state_dict() == {}
    assert loss_terms(TrainConfig(), create_model("sagan_32_cpu").config).names() == ["mode_seeking"]


def test_the_set_sums_its_terms_and_round_trips_its_state():
    cfg = apply_overrides(TrainConfig(), {"r1_gamma": "1", "r2_gamma": "2", "reg_every": "2", "lecam_weight": "0.5",
                                          "bcr_real": "3", "bcr_fake": "3", "recon_weight": "0.1", "mode_seeking": "0"})
    gan = _recon_model()
    regs = loss_terms(cfg, gan.config)
    assert regs.names() == ["r1", "r2", "lecam", "bcr", "recon"]
    d = gan.discriminator
    real, fake = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    for step in range(3):
        total = _call(regs, step, d, real, fake)
        assert torch.isfinite(total)
    assert set(regs.stats()) >= {"r1", "r2", "lecam", "bcr_real", "bcr_fake", "recon"}
    state = regs.state_dict()
    again = loss_terms(cfg, gan.config)
    again.load_state_dict(state)
    assert again.state_dict() == state
    assert state["lecam"]["updates"] == 3
    fewer = loss_terms(apply_overrides(cfg, {"lecam_weight": "0"}), gan.config)
    fewer.load_state_dict(state)  # a term switched off since the checkpoint: its state is left out
    assert "lecam" not in fewer.state_dict()


@pytest.mark.parametrize("key, value, needle", [
    ("r1_gamma", "-1", "r1_gamma must be >= 0"),
    ("r2_gamma", "-0.5", "r2_gamma must be >= 0"),
    ("reg_every", "0", "reg_every must be positive"),
    ("lecam_weight", "-1", "lecam_weight must be >= 0"),
    ("lecam_decay", "1", r"lecam_decay must be in \[0, 1\)"),
    ("bcr_real", "-2", "bcr_real must be >= 0"),
    ("bcr_augment", "translate", "unknown augment policy 'translate'"),
    ("recon_weight", "-1", "recon_weight must be >= 0"),
    ("ema_kimg", "-3", "ema_kimg must be >= 0"),
    ("loss", "rpgann", "did you mean: rpgan"),
])
def test_bad_values_are_one_line_config_errors(key, value, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        apply_overrides(TrainConfig(), {key: value})
    assert "\n" not in str(info.value)


def test_bcr_needs_a_transform():
    with pytest.raises(ConfigError, match="bcr_augment"):
        apply_overrides(TrainConfig(), {"bcr_real": "10", "bcr_augment": "", "bcr_flip": "false"})
    assert apply_overrides(TrainConfig(), {"bcr_real": "10", "bcr_augment": ""}).bcr_flip


def test_defaults_leave_every_new_term_off():
    cfg = TrainConfig()
    assert (cfg.r1_gamma, cfg.r2_gamma, cfg.lecam_weight, cfg.bcr_real, cfg.bcr_fake, cfg.recon_weight) == (0,) * 6
    assert cfg.loss == "hinge" and not cfg.mirror and cfg.ema_kimg == 0


def test_ema_kimg_is_a_half_life_in_real_images():
    cfg = apply_overrides(TrainConfig(), {"ema_kimg": "10", "batch_size": "32", "n_dis": "2"})
    decay = cfg.ema_decay_per_step(world_size=2)
    steps_per_half_life = 10_000 / (32 * 2 * 2)
    assert decay ** steps_per_half_life == pytest.approx(0.5)
    assert TrainConfig().ema_decay_per_step() == TrainConfig().ema_decay
    assert math.isclose(apply_overrides(TrainConfig(), {"ema_kimg": "10"}).ema_decay_per_step(), 0.5 ** (32 / 1e4))


def test_mode_seeking_is_a_g_term_that_logs_its_unweighted_value():
    from sagan.losses import mode_seeking
    from sagan.training.terms import GInputs

    fake, z = _batch(4, seed=1).requires_grad_(True), torch.randn(4, 8)
    term = ModeSeeking(0.5)
    assert term.d_loss(_inputs()) is None
    value = term.g_loss(GInputs(0, None, fake, None, z, None, None, None, None, None))
    assert value.item() == pytest.approx(0.5 * mode_seeking(fake, z).item())
    assert term.stats() == {"mode_seeking": pytest.approx(mode_seeking(fake, z).item())}


def test_set_with_conditional_labels():
    torch.manual_seed(0)
    gan = create_model("sagan_32_cpu", g_ch=4, d_ch=8, num_classes=3, d_recon=8)
    cfg = apply_overrides(TrainConfig(), {"r1_gamma": "1", "reg_every": "1", "bcr_real": "1", "bcr_fake": "1",
                                          "recon_weight": "1"})
    regs = loss_terms(cfg, gan.config)
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    y = torch.tensor([0, 2])
    assert isinstance(regs, LossTerms)
    assert torch.isfinite(_call(regs, 0, gan.discriminator, real, fake, y, y))
