"""The SAGAN self-attention block.

Zhang, Goodfellow, Metaxas, Odena. "Self-Attention Generative Adversarial Networks", ICML 2019
(arXiv:1805.08318), section 3, as in the authors' released code (`sn_non_local_block_sim`), which differs
from the paper's text: keys and values are 2x2 max-pooled, the value has C/2 channels, a 1x1 output
conv maps back to C, and there is no 1/sqrt(d) scaling. y = x + gamma * o, gamma starting at 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sagan.nn.spectral import Wrap, init_layer, sn


class SelfAttention(nn.Module):
    """Self-attention over the H*W positions of a feature map, keys and values 2x2 max-pooled."""

    def __init__(self, channels: int, sn: Wrap = sn) -> None:
        super().__init__()
        if channels < 8 or channels % 8:
            raise ValueError(f"attention needs a channel count divisible by 8, got {channels}")
        self.channels = channels
        self.query = init_layer(nn.Conv2d(channels, channels // 8, 1, bias=False), sn)
        self.key = init_layer(nn.Conv2d(channels, channels // 8, 1, bias=False), sn)
        self.value = init_layer(nn.Conv2d(channels, channels // 2, 1, bias=False), sn)
        self.out = init_layer(nn.Conv2d(channels // 2, channels, 1, bias=False), sn)
        self.gamma = nn.Parameter(torch.zeros(()))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        k = F.max_pool2d(self.key(x), 2).flatten(2).transpose(1, 2)  # (B, N/4, C/8)
        v = F.max_pool2d(self.value(x), 2).flatten(2).transpose(1, 2)  # (B, N/4, C/2)
        return q, k, v

    def _project(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        o = o.transpose(1, 2).reshape(b, c // 2, h, w)  # (B, C/2, H, W)
        return x + self.gamma * self.out(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x + gamma * attention(x), through the fused scaled_dot_product_attention kernel."""
        q, k, v = self._qkv(x)
        # The fused CPU kernel wants one width for q, k and v: zero-padding q and k from C/8 to C/2
        # leaves every dot product unchanged, and scale=1.0 keeps SAGAN's unscaled softmax. The fused
        # kernel never materialises the (N, N/4) matrix, so memory grows as O(N) instead of O(N^2).
        pad = v.shape[-1] - q.shape[-1]
        q, k = F.pad(q, (0, pad)), F.pad(k, (0, pad))
        o = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0)
        return self._project(o.squeeze(1), x)

    def forward_explicit(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same output through an explicit softmax, and the attention matrix (B, N, N/4)."""
        q, k, v = self._qkv(x)
        attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # (B, N, N/4): each query sums to 1 over keys
        return self._project(attn @ v, x), attn

    def attention_maps(self, x: torch.Tensor, points: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Where each query point (row, col) of the feature map x attends: (B, P, H/2, W/2), rows sum to 1.

        Without points, the maps of every query position: (B, H*W, H/2, W/2).
        """
        _, _, h, w = x.shape
        _, attn = self.forward_explicit(x)
        if points is not None:
            index = torch.tensor([r * w + c for r, c in points], device=x.device)
            attn = attn[:, index]
        return attn.unflatten(-1, (h // 2, w // 2))


def attention_memory_bytes(batch: int, height: int, width: int, bytes_per_element: int = 4) -> int:
    """Bytes of the (B, N, N/4) attention matrix that the explicit path materialises for one layer."""
    n = height * width
    return batch * n * (n // 4) * bytes_per_element


def attention_layers(
    resolutions: list[int], widths: list[int], places: tuple[int, ...], sn: Wrap = sn
) -> tuple[nn.ModuleDict, list[str]]:
    """Attention blocks for a network whose stages output `resolutions` with `widths` channels.

    One block goes after the first stage that reaches each resolution in `places`. Returns the blocks,
    keyed by resolution ("32"), and per stage the key of the block that follows it ("" for none).
    """
    layers, after = nn.ModuleDict(), []
    for r, w in zip(resolutions, widths):
        key = str(r) if r in places and str(r) not in layers else ""
        if key:
            layers[key] = SelfAttention(w, sn=sn)
        after.append(key)
    return layers, after
