"""FastGAN's network parts as model options: skip-layer excitation in G and D's reconstruction decoder."""

import pytest
import torch
from torch import nn

from sagan.errors import ConfigError
from sagan.models import GAN, ModelConfig, create_model, list_models, model_config
from sagan.nn import ReconstructionDecoder, SkipExcitation, is_spectral

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sle_gate_is_in_0_1_per_image_and_channel_and_multiplies_the_big_map():
    torch.manual_seed(0)
    sle = SkipExcitation(8, 6)
    low, high = torch.randn(3, 8, 4, 4) * 3, torch.randn(3, 6, 16, 16)
    gate = sle.gate(low)
    assert gate.shape == (3, 6, 1, 1)
    assert (gate > 0).all() and (gate < 1).all()
    assert not torch.allclose(gate[0], gate[1]), "each image gets its own gate"
    assert torch.equal(sle(low, high), high * gate)


def test_sle_pools_any_low_resolution_to_4x4():
    torch.manual_seed(0)
    sle = SkipExcitation(4, 4)
    low = torch.randn(2, 4, 8, 8)
    pooled = low.view(2, 4, 4, 2, 4, 2).mean((3, 5))
    assert torch.allclose(sle.gate(low), sle.gate(pooled), atol=1e-6)


def test_generator_gates_each_listed_stage_by_the_stage_16x_smaller():
    torch.manual_seed(0)
    gan = create_model("sngan_64", g_ch=2, d_ch=4, g_sle=(64, 32), num_classes=3)
    g = gan.generator.eval()  # SN vectors held still, so the hook's second gate is the forward's
    assert sorted(g.excitation) == ["32", "64"]
    seen = {}

    def capture(name):
        def hook(module, args, output):
            seen[name] = (args[0].shape[-1], args[1].shape[-1], torch.equal(output, args[1] * module.gate(args[0])))
        return hook

    for name, module in g.excitation.items():
        module.register_forward_hook(capture(name))
    z, y = torch.randn(2, gan.config.z_dim), torch.tensor([0, 2])
    x = g(z, y)
    assert x.shape == (2, 3, 64, 64)
    assert seen == {"64": (4, 64, True), "32": (4, 32, True)}  # max(4, r / 16) -> r, output = big map * gate
    x.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.excitation.parameters())
    assert all(is_spectral(m) for m in g.excitation.modules() if isinstance(m, nn.Conv2d)), "G's SN reaches SLE"


def test_sle_changes_the_output_and_is_absent_by_default():
    torch.manual_seed(0)
    plain = create_model("sagan_32_cpu", g_ch=4, d_ch=8)
    torch.manual_seed(0)
    gated = create_model("sagan_32_cpu", g_ch=4, d_ch=8, g_sle=(32,))
    assert not any("excitation" in k or "decoder" in k for k in plain.state_dict()), "defaults: the same weights"
    assert set(plain.state_dict()) < set(gated.state_dict())
    gated.load_state_dict(plain.state_dict(), strict=False)  # every shared weight equal: only the gate differs
    z = torch.randn(2, 128)
    plain.eval(), gated.eval()
    assert not torch.allclose(plain.generator(z), gated.generator(z))


def test_sle_in_a_dcgan_generator_too():
    torch.manual_seed(0)
    gan = create_model("dcgan_64", g_ch=2, d_ch=4, g_sle=(64,))
    assert gan.generator(torch.randn(2, 128)).shape == (2, 3, 64, 64)


def test_discriminator_forward_is_unchanged_and_reconstruct_adds_the_decoders_image():
    torch.manual_seed(0)
    gan = create_model("sagan_32_cpu", g_ch=4, d_ch=8, d_recon=8, num_classes=2)
    d = gan.discriminator.eval()
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 1])
    logits = d(x, y)
    assert isinstance(logits, torch.Tensor) and logits.shape == (3,)
    logits_too, image = d(x, y, reconstruct=True)
    assert torch.equal(logits_too, logits)
    assert image.shape == (3, 3, 32, 32) and image.abs().max() <= 1
    assert d.decode_stage == 3, "the deepest of the three stages at 8x8"
    assert isinstance(d.decoder, ReconstructionDecoder)
    with pytest.raises(ValueError, match="no reconstruction decoder"):
        create_model("sagan_32_cpu", g_ch=4, d_ch=8).discriminator(x, reconstruct=True)


@pytest.mark.parametrize("name, d_recon, size", [("sngan_64", 8, 64), ("sngan_64", 4, 32), ("dcgan_32", 4, 32),
                                                 ("sngan_128", 8, 64)])
def test_decoder_output_size(name, d_recon, size):
    cfg = model_config(name, d_recon=d_recon, g_ch=2, d_ch=4)
    assert cfg.recon_resolution() == size
    if cfg.resolution <= 64:
        torch.manual_seed(0)
        d = GAN(cfg).discriminator
        _, image = d(torch.randn(1, 3, cfg.resolution, cfg.resolution), reconstruct=True)
        assert image.shape[-1] == size


def test_options_are_left_out_of_the_stored_config_while_off():
    for name in list_models():
        stored = model_config(name).to_dict()
        assert "g_sle" not in stored and "d_recon" not in stored, "old checkpoints still match their model"
    on = model_config("sagan_32_cpu", g_sle=(16, 32), d_recon=8)
    stored = on.to_dict()
    assert stored["g_sle"] == [16, 32] and stored["d_recon"] == 8
    assert ModelConfig.from_dict(stored) == on
    assert ModelConfig.from_dict(model_config("sagan_32_cpu").to_dict()) == model_config("sagan_32_cpu")


@pytest.mark.parametrize("overrides, needle", [
    ({"g_sle": (4,)}, "g_sle at 4x4"),
    ({"g_sle": (12,)}, "g_sle at 12x12"),
    ({"g_sle": (32, 32)}, "twice"),
    ({"d_recon": 3}, "d_recon 3"),
    ({"d_recon": 32}, "d_recon 32"),
    ({"d_recon": -8}, "d_recon -8"),
])
def test_bad_option_values_are_one_line_config_errors(overrides, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        model_config("sagan_32_cpu", **overrides)
    assert "\n" not in str(info.value)
