import pytest
import torch
from torch import nn

from sagan.errors import ConfigError
from sagan.models import GAN, ModelConfig, create_model, list_models, model_config
from sagan.nn import ConditionalBatchNorm, SelfAttention, is_spectral

ALL = list_models()
EXPECTED = {"dcgan_32", "dcgan_64", "sngan_32", "sngan_64", "sngan_128", "sagan_32", "sagan_64", "sagan_128",
            "sagan_celeba128"}


def _small(name, **overrides):
    """The registered architecture at an eighth of its width, to keep CPU tests fast."""
    cfg = model_config(name)
    return create_model(name, g_ch=max(4, cfg.g_ch // 8), d_ch=max(8, cfg.d_ch // 8), **overrides)


def test_registry_has_the_issue_models():
    assert EXPECTED <= set(ALL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("num_classes", [0, 5])
@pytest.mark.parametrize("img_channels", [1, 3])
def test_shapes_range_and_gradients(name, num_classes, img_channels):
    torch.manual_seed(0)
    gan = _small(name, num_classes=num_classes, img_channels=img_channels)
    res, batch = gan.config.resolution, 3
    z = torch.randn(batch, gan.config.z_dim)
    y = torch.randint(0, num_classes, (batch,)) if num_classes else None
    x = gan.generator(z, y)
    assert x.shape == (batch, img_channels, res, res)
    assert x.min() >= -1 and x.max() <= 1
    logits = gan.discriminator(x, y)
    assert logits.shape == (batch,)
    # make gamma non-zero so that gradients reach the attention convs too
    for m in gan.modules():
        if isinstance(m, SelfAttention):
            nn.init.constant_(m.gamma, 0.5)
    (gan.discriminator(gan.generator(z, y), y).mean() + gan.discriminator(torch.randn_like(x), y).mean()).backward()
    for pname, p in gan.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
        if "embed" not in pname and "gain" not in pname and "bias.weight" not in pname:
            assert p.grad.abs().sum() > 0, f"{name}: zero gradient in {pname}"


@pytest.mark.parametrize("name", ALL)
def test_full_width_forward(name):
    torch.manual_seed(0)
    gan = create_model(name)
    with torch.no_grad():
        x = gan.generator(torch.randn(1, gan.config.z_dim))
        assert x.shape[-1] == gan.config.resolution
        assert gan.discriminator(x).shape == (1,)


@pytest.mark.parametrize("name", ALL)
def test_spectral_norm_on_every_layer_where_configured(name):
    gan = _small(name, num_classes=4)
    for net, enabled in ((gan.generator, gan.config.g_spectral_norm), (gan.discriminator, gan.config.d_spectral_norm)):
        for mname, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) or (
                isinstance(m, nn.Embedding) and ".gain" not in mname and ".bias" not in mname
            ):
                assert is_spectral(m) == enabled, f"{name}: {mname} spectral={is_spectral(m)}"
    cbn = [m for m in gan.generator.modules() if isinstance(m, ConditionalBatchNorm)]
    assert cbn and all(torch.equal(m.gain.weight, torch.ones_like(m.gain.weight)) for m in cbn)
    assert all(not is_spectral(m.gain) for m in cbn), "cBN gains must not be normalised (they start at 1)"


@pytest.mark.parametrize(
    "name, g_at, d_at", [("sagan_32", ["16"], ["16"]), ("sagan_64", ["32"], ["32"]), ("sagan_128", ["32"], ["32"]),
                         ("sagan_celeba128", ["32"], ["32"]), ("sngan_64", [], []), ("dcgan_32", [], [])],
)
def test_attention_placement(name, g_at, d_at):
    gan = create_model(name)
    assert list(gan.generator.attention) == g_at and list(gan.discriminator.attention) == d_at
    feature_sizes = {}

    def record(key):
        def hook(module, inputs, output):
            feature_sizes[key] = inputs[0].shape[-1]
        return hook

    for net, key in ((gan.generator, "g"), (gan.discriminator, "d")):
        for block in net.attention.values():
            block.register_forward_hook(record(key))
    with torch.no_grad():
        gan.discriminator(gan.generator(torch.randn(1, gan.config.z_dim)))
    assert {k: str(v) for k, v in feature_sizes.items()} == {k: v[0] for k, v in (("g", g_at), ("d", d_at)) if v}


def test_celeba_tutorial_architecture():
    gan = create_model("sagan_celeba128")
    assert gan.config.z_dim == 128
    assert gan.config.g_widths() == [512, 256, 128, 64, 32, 16]
    assert gan.config.d_widths() == [32, 64, 128, 256, 512]
    assert gan.generator.attention["32"].channels == 64 and gan.discriminator.attention["32"].channels == 64
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gan.discriminator.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in gan.generator.modules()) == 5


def test_peer_sized_sagan_32():
    """sagan_32 has SNGAN's CIFAR widths (G 256, D 128), about mimicry's 4.4M / 1.1M parameters."""
    gan = create_model("sagan_32")
    n_g = sum(p.numel() for p in gan.generator.parameters())
    n_d = sum(p.numel() for p in gan.discriminator.parameters())
    assert 4.2e6 < n_g < 4.6e6 and 1.0e6 < n_d < 1.2e6


def test_rebuild_from_stored_config():
    torch.manual_seed(0)
    gan = _small("sagan_64", num_classes=3, img_channels=1)
    stored = gan.config.to_dict()
    rebuilt = GAN(ModelConfig.from_dict(stored))
    rebuilt.load_state_dict(gan.state_dict())
    gan.eval(), rebuilt.eval()
    z, y = torch.randn(2, 128), torch.tensor([0, 2])
    assert torch.equal(gan.generator(z, y), rebuilt.generator(z, y))


def test_user_errors():
    with pytest.raises(ConfigError, match="did you mean: sagan_32"):
        create_model("sagan32")
    with pytest.raises(ConfigError, match="unknown model option 'g_chanels'.*g_ch"):
        create_model("sagan_32", g_chanels=3)
    with pytest.raises(ConfigError, match="g_attention at 64x64"):
        create_model("sagan_32", g_attention=(64,))
    with pytest.raises(ConfigError, match="img_channels"):
        create_model("sagan_32", img_channels=4)
    with pytest.raises(ConfigError, match="resolution"):
        create_model("sagan_32", resolution=48)


@pytest.mark.parametrize("name", ALL)
def test_one_initialisation_rule_for_every_weight_layer(name):
    """Every conv, linear and embedding weight starts Xavier-uniform (the authors' initialiser), the attention
    1x1 convs and the projection head included; the conditional batch norm's gain/bias tables start at 1/0."""
    torch.manual_seed(0)
    gan = _small(name, num_classes=5)
    checked = 0
    for mod_name, m in gan.named_modules():
        if isinstance(m, ConditionalBatchNorm):
            assert torch.equal(m.gain.weight, torch.ones_like(m.gain.weight))
            assert torch.equal(m.bias.weight, torch.zeros_like(m.bias.weight))
        if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)) or mod_name.endswith(
                (".gain", ".bias")):
            continue
        w = m.parametrizations.weight.original if is_spectral(m) else m.weight
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert w.abs().max() <= bound + 1e-6, f"{mod_name}: not Xavier-uniform"
        if w.numel() >= 64:  # a uniform draw this large reaches close to its bound
            assert w.abs().max() >= 0.8 * bound, f"{mod_name}: narrower than Xavier-uniform (PyTorch's default?)"
        if getattr(m, "bias", None) is not None and isinstance(m.bias, torch.Tensor):
            assert not m.bias.any(), f"{mod_name}: bias not zero"
        checked += 1
    assert checked > 0
