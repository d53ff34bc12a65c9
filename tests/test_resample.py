"""The fused resample+conv paths compute exactly what the plain pairs compute."""

import pytest
import torch
import torch.nn.functional as F

from sagan.nn import DBlock, GBlock, no_sn, norm_layer, sn
from sagan.nn.resample import conv3x3_avgpool, upsample_conv3x3


@pytest.mark.parametrize("size", [(4, 4), (5, 7)])
def test_upsample_conv3x3_equals_nearest_upsample_then_conv(size):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    want = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)
    got = upsample_conv3x3(x, w, b)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_conv3x3_avgpool_equals_conv_then_pool_with_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    want = F.avg_pool2d(F.conv2d(x, w, b, padding=1), 2)
    got = conv3x3_avgpool(x, w, b)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    grads_want = torch.autograd.grad(want.square().sum(), (x, w))
    grads_got = torch.autograd.grad(got.square().sum(), (x, w))
    for a, e in zip(grads_got, grads_want):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-10)


def _plain_gblock(block, x, y):
    """The textbook order: BN-ReLU-upsample-conv3-BN-ReLU-conv3 + conv1x1(upsample(x))."""
    h = F.interpolate(F.relu(block.bn1(x, y)), scale_factor=2, mode="nearest")
    h = block.conv2(F.relu(block.bn2(block.conv1(h), y)))
    return h + block.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


def _plain_dblock(block, x):
    h = x if block.optimized else F.relu(x)
    h = F.avg_pool2d(block.conv2(F.relu(block.conv1(h))), 2)
    return h + F.avg_pool2d(block.shortcut(x), 2)


@pytest.mark.parametrize("wrap", [sn, no_sn])
def test_blocks_match_their_textbook_form(wrap):
    torch.manual_seed(0)
    gblock = GBlock(6, 4, norm_layer(3), wrap).double().eval()  # eval: SN vectors and BN stats fixed
    x, y = torch.randn(2, 6, 4, 4, dtype=torch.float64), torch.tensor([0, 2])
    torch.testing.assert_close(gblock(x, y), _plain_gblock(gblock, x, y), rtol=0, atol=1e-12)
    for optimized in (True, False):
        dblock = DBlock(3, 5, wrap, optimized=optimized).double().eval()
        x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        torch.testing.assert_close(dblock(x), _plain_dblock(dblock, x), rtol=0, atol=1e-12)
