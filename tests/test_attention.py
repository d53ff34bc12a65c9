import pytest
import torch
from torch import nn

from sagan.nn import SelfAttention, attention_memory_bytes, no_sn, sn


def _block(channels=32, gamma=0.0, seed=0, wrap=sn):
    torch.manual_seed(seed)
    block = SelfAttention(channels, sn=wrap)
    with torch.no_grad():
        block.gamma.fill_(gamma)
    return block.eval()


def test_layout_follows_the_authors_code():
    block = _block(64)
    assert block.query.weight.shape == (8, 64, 1, 1)  # C/8
    assert block.key.weight.shape == (8, 64, 1, 1)  # C/8
    assert block.value.weight.shape == (32, 64, 1, 1)  # C/2
    assert block.out.weight.shape == (64, 32, 1, 1)  # back to C
    assert SelfAttention(64).gamma.item() == 0.0
    for conv in (block.query, block.key, block.value, block.out):
        assert hasattr(conv, "parametrizations"), "every conv of the block is spectrally normalised"


def test_weights_are_a_distribution_over_pooled_keys():
    x = torch.randn(2, 32, 8, 8)
    _, attn = _block(32, 1.0).forward_explicit(x)
    assert attn.shape == (2, 64, 16)  # N queries, N/4 max-pooled keys
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 64))


def test_zero_gamma_returns_the_input_exactly():
    x = torch.randn(3, 32, 8, 8)
    block = _block(32, 0.0)
    assert torch.equal(block(x), x)
    assert torch.equal(block.forward_explicit(x)[0], x)


@pytest.mark.parametrize("shape", [(2, 32, 8, 8), (1, 64, 16, 16), (2, 16, 4, 8)])
def test_fused_and_explicit_paths_agree(shape):
    x = torch.randn(*shape) * 3
    block = _block(shape[1], 0.7)
    fused = block(x)
    explicit, _ = block.forward_explicit(x)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_fused_and_explicit_gradients_agree():
    block = _block(32, 0.5)  # eval mode: spectral norm's power iteration is frozen between the two passes
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    block(x).square().sum().backward()
    g_fused = x.grad.clone()
    x.grad = None
    block.forward_explicit(x)[0].square().sum().backward()
    torch.testing.assert_close(g_fused, x.grad, atol=1e-4, rtol=1e-4)


def test_no_sqrt_d_scaling():
    """The softmax acts on raw q.k dot products, as in the authors' code."""
    block = _block(32, 1.0, wrap=no_sn)
    x = torch.randn(1, 32, 4, 4)
    q = block.query(x).flatten(2).transpose(1, 2)
    k = torch.nn.functional.max_pool2d(block.key(x), 2).flatten(2).transpose(1, 2)
    _, attn = block.forward_explicit(x)
    torch.testing.assert_close(attn, torch.softmax(q @ k.transpose(1, 2), -1))


def test_attention_maps_for_chosen_points():
    x = torch.randn(2, 32, 8, 8)
    block = _block(32, 1.0)
    maps = block.attention_maps(x, [(0, 0), (7, 7)])
    assert maps.shape == (2, 2, 4, 4)
    torch.testing.assert_close(maps.sum((-1, -2)), torch.ones(2, 2))
    _, attn = block.forward_explicit(x)
    torch.testing.assert_close(maps[:, 1].flatten(1), attn[:, 63])


def test_long_range_dependency_that_convs_lack():
    """One pixel far away changes the output at (0, 0) through attention, but not through local convs."""
    torch.manual_seed(0)
    c, size = 32, 16
    convs = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1) for _ in range(2)]).eval()
    block = _block(c, 1.0)
    x = torch.randn(1, c, size, size)
    x2 = x.clone()
    x2[..., size - 1, size - 1] += 10.0  # far corner
    with torch.no_grad():
        assert not torch.allclose(block(x)[..., 0, 0], block(x2)[..., 0, 0])
        assert torch.equal(convs(x)[..., 0, 0], convs(x2)[..., 0, 0])
        # a conv stack plus attention of the same depth sees it too
        assert not torch.allclose(block(convs(x))[..., 0, 0], block(convs(x2))[..., 0, 0])


def test_bf16_and_channels_last_stay_close_to_fp32():
    x = torch.randn(2, 32, 8, 8)
    block = _block(32, 1.0)
    ref = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)


def test_rejects_widths_it_cannot_split():
    with pytest.raises(ValueError, match="divisible by 8"):
        SelfAttention(12)


def test_attention_memory_formula():
    # batch 16 at 64x64: N = 4096 queries x 1024 keys x 4 bytes x 16 = 256 MiB
    assert attention_memory_bytes(16, 64, 64) == 16 * 4096 * 1024 * 4
