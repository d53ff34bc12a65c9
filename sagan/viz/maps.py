"""Attention maps as tensors: which query points, which blocks, and each layer's maps for G and D.

The attention maps follow SAGAN (Zhang et al., ICML 2019, arXiv:1805.08318), figure 1: for a query location,
the softmax row of the attention matrix says how much each key location contributes to its output. Keys
are 2x2 max-pooled (as in the authors' code), so a layer with an HxW feature map has (H/2)x(W/2) maps.
Tensors come back on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sagan.nn import SelfAttention

# ----------------------------------------------------------------------------------------------------------
# Query points


def grid_points(image_size: int, n: int) -> list[tuple[int, int]]:
    """An n x n grid of query points (x, y) in image pixels, at the centres of n x n equal cells."""
    if n < 1:
        raise ValueError(f"a query grid needs n >= 1, got {n}")
    centres = [int((i + 0.5) * image_size / n) for i in range(n)]
    return [(x, y) for y in centres for x in centres]


def feature_point(point: tuple[int, int], image_size: int, feature_size: int) -> tuple[int, int]:
    """Image pixel (x, y) -> the (row, col) of the feature-map cell that covers it."""
    x, y = point
    if not (0 <= x < image_size and 0 <= y < image_size):
        raise ValueError(f"query point ({x}, {y}) lies outside the {image_size}x{image_size} image")
    scale = feature_size / image_size
    return min(int(y * scale), feature_size - 1), min(int(x * scale), feature_size - 1)


# ----------------------------------------------------------------------------------------------------------
# Attention maps as tensors


@dataclass
class LayerMaps:
    """The attention maps of one layer for a batch of images and a list of query points."""

    name: str  # "G.16": network and feature-map resolution
    maps: torch.Tensor  # (B, P, H/2, W/2) on the CPU; every map sums to 1
    feature_size: int  # H (= W) of the layer's feature map
    queries: list[tuple[int, int]]  # per point, the (row, col) of the query in the feature map


def query_spread(maps: torch.Tensor) -> float:
    """How differently the query points attend: mean total-variation distance between the maps of two points.

    maps: (B, P, h, w). 0 when every point attends alike, 1 when their maps do not overlap; averaged over
    all pairs of points and the batch (0 for fewer than two points).
    """
    b, p = maps.shape[:2]
    if p < 2:
        return 0.0
    flat = maps.flatten(2)  # (B, P, h*w)
    tv = 0.5 * (flat[:, :, None] - flat[:, None]).abs().sum(-1)  # (B, P, P)
    return float(tv.sum() / (b * p * (p - 1)))


def attention_blocks(net: nn.Module) -> dict[str, SelfAttention]:
    """The attention blocks of a generator or discriminator, keyed by feature-map resolution ("16")."""
    blocks = getattr(net, "attention", None)
    if isinstance(blocks, nn.ModuleDict):
        return {k: m for k, m in blocks.items() if isinstance(m, SelfAttention)}
    return {name.split(".")[-1]: m for name, m in net.named_modules() if isinstance(m, SelfAttention)}


@torch.no_grad()
def block_inputs(net: nn.Module, forward: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run `forward()` (a call through `net`); its output and the input each attention block of `net` saw,
    keyed as `attention_blocks` keys them."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [block.register_forward_hook(lambda m, args, out, key=key: inputs.__setitem__(key, args[0].detach()))
             for key, block in attention_blocks(net).items()]
    try:
        output = forward()
    finally:
        for h in hooks:
            h.remove()
    return output, inputs


def capture_attention(net: nn.Module, forward: Callable[[], torch.Tensor], points: Sequence[tuple[int, int]] = (),
                      image_size: int | None = None, prefix: str = "") -> tuple[torch.Tensor, list[LayerMaps]]:
    """Run `forward()` (a call through `net`); return its output and the attention maps of each layer of `net`.

    `points` are query locations (x, y) in pixels of the `image_size` image (default: the size of the output,
    as for a generator; default points: a 3 x 3 grid); each is mapped to the cell of each layer's feature map
    that covers it. The maps come from the explicit attention path (`SelfAttention.attention_maps`) applied
    to the block inputs seen during the forward pass.
    """
    blocks = attention_blocks(net)
    output, inputs = block_inputs(net, forward)
    size = output.shape[-1] if image_size is None else image_size
    points = list(points) or grid_points(size, 3)
    layers = []
    for key, block in blocks.items():
        if key not in inputs:
            continue  # a block the forward pass did not reach
        x = inputs[key]  # (B, C, H, W)
        queries = [feature_point(p, size, x.shape[-1]) for p in points]
        maps = block.attention_maps(x, queries).float().cpu()  # (B, P, H/2, W/2)
        layers.append(LayerMaps(f"{prefix}.{key}" if prefix else key, maps, x.shape[-1], queries))
    return output, layers


@torch.no_grad()
def generator_attention(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None,
                        points: Sequence[tuple[int, int]] = ()) -> tuple[torch.Tensor, list[LayerMaps]]:
    """G's images for latents z (labels y), in [-1, 1] on the CPU, and the maps of every attention layer of G.

    points: query locations (x, y) in image pixels (default: a 3 x 3 grid).
    """
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        images, layers = capture_attention(
            generator, lambda: generator(z.to(device), None if y is None else y.to(device)), points, prefix="G")
    finally:
        generator.train(was_training)
    return images.float().cpu(), layers


@torch.no_grad()
def discriminator_attention(discriminator: nn.Module, images: torch.Tensor, y: torch.Tensor | None = None,
                            points: Sequence[tuple[int, int]] = ()) -> list[LayerMaps]:
    """The maps of every attention layer of D for images in [-1, 1] (B, C, H, W).

    A conditional D needs labels for its output, not for its attention (which sits before the projection
    head); without y, class 0 is passed.
    """
    device = next(discriminator.parameters()).device
    head = getattr(discriminator, "head", None)
    if y is None and getattr(head, "embed", None) is not None:
        y = torch.zeros(images.shape[0], dtype=torch.long)
    was_training = discriminator.training
    discriminator.eval()
    size = images.shape[-1]
    try:
        return capture_attention(
            discriminator, lambda: discriminator(images.to(device), None if y is None else y.to(device)),
            points, size, "D")[1]
    finally:
        discriminator.train(was_training)
