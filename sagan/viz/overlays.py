"""Attention maps drawn over their images: the SAGAN figure (image with query points, then each point's map)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sagan.viz.figure import pyplot, save_png
from sagan.viz.maps import LayerMaps

# Query-point colours: matplotlib's tab10, as RGB in [0, 1].
POINT_COLOURS = [(0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
                 (0.58, 0.4, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5),
                 (0.74, 0.74, 0.13), (0.09, 0.75, 0.81)]


def to_rgb_array(image: torch.Tensor) -> np.ndarray:
    """One image (C, H, W), uint8 or float in [-1, 1] -> uint8 (H, W, 3) for drawing."""
    if image.dtype != torch.uint8:
        image = (image.detach().float().clamp(-1, 1) + 1).mul(127.5).round().to(torch.uint8)
    a = image.cpu().permute(1, 2, 0).numpy()
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[:, :, :3]


def upsample_map(attention: torch.Tensor, size: int) -> torch.Tensor:
    """One map (h, w) -> (size, size), bilinearly, stretched to [0, 1] (its minimum 0, its maximum 1) for display.

    Stretching shows where a map's weight lies even when it is nearly uniform (gamma near 0 early in
    training); `peak_ratio` says how far from uniform it really is.
    """
    m = F.interpolate(attention[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    m = m - m.min()
    return m / m.max().clamp_min(1e-12)


def peak_ratio(attention: torch.Tensor) -> float:
    """A map's largest weight over the uniform weight 1/(h*w): 1 for uniform attention, h*w for one key."""
    return float(attention.max() * attention.numel() / attention.sum().clamp_min(1e-12))


def overlay(image: torch.Tensor, attention: torch.Tensor, alpha: float = 0.55, cmap: str = "inferno") -> np.ndarray:
    """An attention map (h, w) upsampled onto an image (C, H, W): uint8 (H, W, 3), the image dimmed to grey."""
    import matplotlib

    rgb = to_rgb_array(image).astype(np.float32) / 255.0
    grey = rgb.mean(axis=2, keepdims=True).repeat(3, axis=2)
    heat = matplotlib.colormaps[cmap](upsample_map(attention, rgb.shape[0]).numpy())[..., :3]
    out = (1 - alpha) * grey + alpha * heat
    return (out * 255).round().clip(0, 255).astype(np.uint8)


def draw_attention(images: torch.Tensor, layers: Sequence[LayerMaps], points: Sequence[tuple[int, int]],
                   path: str | Path | None = None, title: str | None = None, cell: float = 1.5,
                   relative: bool = False, image_labels: Sequence[str] = ()) -> bytes:
    """The SAGAN figure: per image and layer, the image with its query points, then each point's map.

    Each map is stretched to its own range; its title gives its peak weight relative to uniform attention.
    relative: draw each map divided by the mean map of all the query points instead, which shows what is
    specific to each query when the maps share a common focus. images: (B, C, H, W) uint8 or in [-1, 1];
    every layer's maps cover the same images and points; image_labels: a caption per image (e.g. its class).
    Returns the PNG bytes, written to `path` if given.
    """
    plt = pyplot()
    rows = [(b, layer) for b in range(images.shape[0]) for layer in layers]
    if not rows:
        raise ValueError("no attention layers to draw")
    if relative and len(points) < 2:
        raise ValueError("relative maps need at least two query points")
    cols = 1 + len(points)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell * cols, (cell + 0.3) * len(rows) + (0.3 if title else 0)),
                             squeeze=False, layout="constrained")
    size = images.shape[-1]
    for r, (b, layer) in enumerate(rows):
        ax = axes[r, 0]
        ax.imshow(to_rgb_array(images[b]), interpolation="nearest")
        for i, (x, y) in enumerate(points):
            ax.plot(x, y, "o", ms=6, mfc=POINT_COLOURS[i % 10], mec="white", mew=1.2)
        h = layer.maps.shape[-1]
        label = image_labels[b] if b < len(image_labels) else ""
        which = ": ".join(t for t in (f"image {b}" if images.shape[0] > 1 else "", label) if t)
        ax.set_ylabel(f"{layer.name}\n{layer.feature_size}px, keys {h}px" + (f"\n{which}" if which else ""),
                      fontsize=7)
        if r == 0:
            ax.set_title("query points", fontsize=8)
        mean = layer.maps[b].mean(0)  # (h, w): the map of the average query
        for i, (x, y) in enumerate(points):
            ax = axes[r, i + 1]
            m = layer.maps[b, i]
            shown, note = m, f"peak {peak_ratio(m):.2f}x uniform"
            if relative:
                shown = m / mean.clamp_min(1e-12)
                note = f"up to {float(shown.max()):.2f}x the mean"
            ax.imshow(overlay(images[b], shown), interpolation="nearest")
            ax.plot(x, y, "o", ms=6, mfc=POINT_COLOURS[i % 10], mec="white", mew=1.2)
            where = f"({x}, {y})\n" if r == 0 else ""
            ax.set_title(f"{where}{note}", fontsize=6.5, color=POINT_COLOURS[i % 10])
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
    if title:
        fig.suptitle(title + (" (each map relative to the mean of all points)" if relative else ""), fontsize=9)
    return save_png(fig, path)
