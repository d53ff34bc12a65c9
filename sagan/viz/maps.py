"""Pictures of a GAN: image grids, attention maps (as tensors and as overlays), and training curves.

The attention maps follow SAGAN (Zhang et al., ICML 2019, arXiv:1805.08318), figure 1: for a query location,
the softmax row of the attention matrix says how much each key location contributes to its output. Keys
are 2x2 max-pooled (as in the authors' code), so a layer with an HxW feature map has (H/2)x(W/2) maps.

Drawing uses matplotlib's Agg backend (no display needed); tensors come back on the CPU.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sagan.nn import SelfAttention

# Query-point colours: matplotlib's tab10, as RGB in [0, 1].
POINT_COLOURS = [(0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
                 (0.58, 0.4, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5),
                 (0.74, 0.74, 0.13), (0.09, 0.75, 0.81)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, work without a display
    import matplotlib.pyplot as plt

    return plt


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


# ----------------------------------------------------------------------------------------------------------
# From a run: load the networks, pick images and points, compute every layer's maps


def load_discriminator(target: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """D in eval mode from a run folder or checkpoint, and {"model", "step", "path"}.

    An exported generator (.safetensors) has no D: CheckpointError.
    """
    from sagan.checkpoint import load_checkpoint, load_gan_state, resolve_checkpoint
    from sagan.errors import CheckpointError
    from sagan.models import GAN, ModelConfig

    if Path(target).suffix == ".safetensors":
        raise CheckpointError(f"{target} is an exported generator without its discriminator; "
                              "give the run folder or a checkpoint (.pt) to see D's attention")
    path = resolve_checkpoint(target)
    state = load_checkpoint(path, map_location)
    discriminator = GAN(ModelConfig.from_dict(state["model"])).discriminator.to(map_location)
    load_gan_state(discriminator, state["discriminator"], "discriminator", path)
    return discriminator.eval(), {"model": state["model"], "step": state["step"], "path": str(path)}


def load_image(path: str | Path, resolution: int, channels: int) -> torch.Tensor:
    """An image file as the model sees data: (1, C, R, R) in [-1, 1], centre-cropped, transparency on white."""
    from PIL import Image, UnidentifiedImageError

    from sagan.data import to_model_range
    from sagan.data.files import to_array
    from sagan.errors import DataError

    try:
        with Image.open(path) as image:
            array = to_array(image, resolution, channels)  # (R, R, C) uint8
    except FileNotFoundError:
        raise DataError(f"no such image: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read {path} as an image ({type(exc).__name__})") from None
    return to_model_range(torch.from_numpy(array.copy()).permute(2, 0, 1)[None])


@dataclass
class AttentionStudy:
    """What `attention_study` looked at: images in [-1, 1], each layer's maps, the query points, the source."""

    images: torch.Tensor  # (B, C, H, W)
    layers: list[LayerMaps]
    points: list[tuple[int, int]]  # (x, y) in image pixels
    info: dict  # "path", "step", "model", "ema", "source" ("generated, seed S" or the image file)
    image_labels: list[str] = field(default_factory=list)  # each image's class name, for a conditional model

    def title(self) -> str:
        model = (self.info.get("model") or {}).get("name", "?")
        return (f"{model} at step {self.info.get('step')}: attention of {self.info['source']} "
                f"({Path(str(self.info.get('path'))).name})")


def attention_study(target: str | Path, points: Sequence[tuple[int, int]] = (), grid: int = 3, seed: int = 0,
                    class_index: int | str | None = None, num: int = 1, image: str | Path | None = None,
                    nets: Sequence[str] | None = None, ema: bool = True,
                    device: str | torch.device = "cpu") -> AttentionStudy:
    """Attention maps of a run, checkpoint or exported generator, ready for `draw_attention`.

    Without `image`: `num` images generated with `seed` (and `class_index`: a class index or name), seen by
    G's layers and, where the target has D (run folder or checkpoint), by D's. With `image`: that file passed
    through D (as class `class_index`, where given, for D's projection head).
    `points` (x, y) in image pixels, or a `grid` x `grid` of them. `nets`: a subset of ("G", "D").
    """
    from sagan.checkpoint import load_generator
    from sagan.errors import ConfigError
    from sagan.run_data import class_name, resolve_class
    from sagan.sampling import sample_labels, sample_latents

    exported = Path(target).suffix == ".safetensors"
    if nets is None:
        nets = ("D",) if image is not None else ("G",) if exported else ("G", "D")
    nets = tuple(n.upper() for n in nets)
    if image is not None and "G" in nets:
        raise ConfigError("a real image (--image) goes through D only: G's attention needs generated images")
    generator, info = load_generator(target, ema=ema, map_location=device)
    cfg = info["model"]
    size, classes, names = cfg["resolution"], cfg["num_classes"], info.get("class_names")
    class_index = resolve_class(class_index, classes, names, what=f"model {cfg['name']}")
    points = list(points) or grid_points(size, grid)
    for x, y in points:
        if not (0 <= x < size and 0 <= y < size):
            raise ConfigError(f"query point {x},{y} lies outside the {size}x{size} image (0..{size - 1})")
    if not any(cfg[f"{n.lower()}_attention"] for n in nets):
        raise ConfigError(f"model {cfg['name']} has no attention layers in {' or '.join(nets)}")
    layers: list[LayerMaps] = []
    if image is None:
        z = sample_latents(num, cfg["z_dim"], torch.Generator().manual_seed(seed))
        y = sample_labels(num, classes, class_index)
        images, g_layers = generator_attention(generator, z, y, points)
        source = f"generated images (seed {seed}" + (
            f", class {names[class_index]})" if class_index is not None and names else
            f", class {class_index})" if class_index is not None else ")")
        if "G" in nets:
            layers += g_layers
    else:
        images = load_image(image, size, cfg["img_channels"])
        y = None if class_index is None else torch.full((1,), class_index, dtype=torch.long)
        source = f"the image {Path(image).name}" + (
            f" as {class_name(class_index, names)}" if class_index is not None else "")  # D's projection label
    if "D" in nets:
        discriminator, _ = load_discriminator(info["path"], device)
        layers += discriminator_attention(discriminator, images, y, points)
    info = {**info, "source": source}
    return AttentionStudy(images, layers, points, info, [] if y is None else [class_name(int(k), names) for k in y])


# ----------------------------------------------------------------------------------------------------------
# Images


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
    plt = _pyplot()
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
    return _save(fig, path)


def _save(fig, path: str | Path | None) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def image_grid(images: torch.Tensor, nrow: int = 8, path: str | Path | None = None,
               row_names: Sequence[str] | None = None) -> bytes:
    """Images (N, C, H, W), uint8 or in [-1, 1], tiled as a PNG grid (returned, and written to `path`).

    row_names: a name for each row of the grid (e.g. its class), written in a margin on its left.
    """
    from PIL import Image
    from torchvision.utils import make_grid

    if images.dtype != torch.uint8:
        images = (images.detach().float().clamp(-1, 1) + 1).mul(127.5).round().to(torch.uint8)
    grid = make_grid(images.cpu(), nrow=nrow, padding=1, pad_value=255)  # (3, H', W') uint8
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    if row_names:
        picture = _name_rows(picture, row_names, images.shape[-2] + 1)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _name_rows(picture, names: Sequence[str], row_height: int):
    """A grid picture with a white margin on its left holding each row's name, centred on the row."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(8, min(14, row_height // 3)))
    draw = ImageDraw.Draw(picture)
    width = max(int(draw.textlength(n, font=font)) for n in names) + 8
    out = Image.new("RGB", (picture.width + width, picture.height), (255, 255, 255))
    out.paste(picture, (width, 0))
    draw = ImageDraw.Draw(out)
    for i, name in enumerate(names):
        draw.text((width - 4, 1 + i * row_height + row_height // 2), name, fill=(0, 0, 0), font=font, anchor="rm")
    return out


# ----------------------------------------------------------------------------------------------------------
# Curves


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_curves(records: Sequence[dict], keys: Sequence[str], title: str, path: str | Path | None = None,
                ylabel: str = "", events: Sequence[int] = (), smooth: int = 0, log_y: bool = False,
                xlabel: str = "step") -> bytes | None:
    """Curves of metrics.jsonl keys against step as a PNG (None when no record has any of the keys).

    `events`: steps to mark with a vertical line (collapse alarms); `smooth`: a moving-average window drawn
    over the raw curve, which stays visible faintly.
    """
    series = {}
    for key in keys:
        pts = [(r["step"], r[key]) for r in records
               if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if pts:
            series[key] = np.array(pts, dtype=np.float64)
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    for i, (key, pts) in enumerate(series.items()):
        colour = f"C{i % 10}"
        if smooth > 1 and len(pts) > smooth:
            ax.plot(pts[:, 0], pts[:, 1], color=colour, alpha=0.25, lw=0.8)
            ax.plot(pts[:, 0], _moving_average(pts[:, 1], smooth), color=colour, lw=1.4, label=key)
        else:
            ax.plot(pts[:, 0], pts[:, 1], color=colour, lw=1.4, label=key, marker="o" if len(pts) < 12 else None,
                    ms=3)
    for step in events:
        ax.axvline(step, color="red", lw=0.8, ls="--")
    if log_y and all((pts[:, 1] > 0).all() for pts in series.values()):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)
