"""The explorer's content: image sets (generated, real, latent and class strips) and every attention row of
G and D on them.

Rows come from the explicit attention path (`SelfAttention.forward_explicit`): for each query position of a
layer, the full softmax row over its (2x2 max-pooled) keys, as in SAGAN (Zhang et al., ICML 2019,
arXiv:1805.08318), figure 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sagan.errors import ConfigError, DataError, SaganError
from sagan.viz import attention_blocks, block_inputs


@dataclass
class Layer:
    """Every attention row of one layer for a batch of images."""

    name: str  # "G.16": network and feature-map resolution
    feature_size: int  # F: the layer sees an F x F feature map, so F*F queries
    rows: torch.Tensor  # (B, F*F, (F/2)*(F/2)) float32 on the CPU; each row sums to 1


@dataclass
class ImageSet:
    """Images shown together on the page, with the attention layers computed on them."""

    key: str
    title: str
    images: torch.Tensor  # (B, C, H, W) in [-1, 1]
    captions: list[str]
    layers: list[Layer] = field(default_factory=list)
    labels: list[int] | None = None  # each image's class index, where the set has classes


# ----------------------------------------------------------------------------------------------------------
# Attention rows


@torch.no_grad()
def attention_rows(net: nn.Module, forward: Callable[[], torch.Tensor],
                   prefix: str) -> tuple[torch.Tensor, list[Layer]]:
    """Run `forward()` (a call through `net`); its output and every attention row of each layer of `net`."""
    blocks = attention_blocks(net)
    output, inputs = block_inputs(net, forward)
    layers = []
    for key, block in blocks.items():
        if key in inputs:
            _, attn = block.forward_explicit(inputs[key].float())  # (B, N, N/4)
            layers.append(Layer(f"{prefix}.{key}", inputs[key].shape[-1], attn.float().cpu()))
    return output.float().cpu(), layers


@contextlib.contextmanager
def class_mix(generator: nn.Module, a: int, b: int, t: torch.Tensor) -> Iterator[None]:
    """Inside: every class embedding G looks up is (1 - t_i) E[a] + t_i E[b] for the i-th image of the batch.

    G's only use of the label is its conditional batch norms' gain and bias tables, so this moves it
    smoothly from class a to class b at a fixed latent.
    """
    def mix(module, args, out):
        w = module.weight
        return (1 - t.to(w))[:, None] * w[a] + t.to(w)[:, None] * w[b]  # (B, C)

    embeddings = [m for m in generator.modules() if isinstance(m, nn.Embedding)]
    hooks = [m.register_forward_hook(mix) for m in embeddings]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def _real_images(info: dict, num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """`num` images of the run's data (its test split where it has one, with the run's labels file) in [-1, 1],
    their labels (None for an unconditional model) and a description."""
    from sagan.data import to_model_range
    from sagan.data.run import load_run_data

    cfg = info["model"]
    data = None
    for split in ("test", "train"):
        try:
            data = load_run_data(info, cfg["resolution"], cfg["img_channels"], split=split)
            break
        except DataError:
            if split == "train":
                raise
    if cfg["num_classes"] and data.num_classes != cfg["num_classes"]:
        raise DataError(f"{data.source} has {data.num_classes} classes, the model {cfg['num_classes']}: "
                        "its labels cannot be fed to D")
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num]
    images, labels = data.get(pick)
    if not cfg["num_classes"]:
        labels = None
    source = data.source if split == "test" else f"{data.source}; it has no test split, so training images"
    return to_model_range(images), labels, source


def explore_sets(target: str | Path, num: int = 16, seed: int = 0, class_index: int | str | None = None,
                 frames: int = 8,
                 ema: bool = True, device: str | torch.device = "cpu") -> tuple[list[ImageSet], dict]:
    """The page's image sets with all their attention rows, and what they come from.

    Sets: `num` generated images (G's layers and, where the target has D, D's), `num` real images of the run's
    data through D (when the data is on this machine), a strip of `frames` images between two latents and, for
    a conditional model, between two classes at one latent (G's layers). `class_index`: a class index or name.
    """
    from sagan.checkpoint import load_discriminator, load_generator
    from sagan.data.run import class_name, resolve_class
    from sagan.sampling import sample_labels, sample_latents

    generator, info = load_generator(target, ema=ema, map_location=device)
    cfg = info["model"]
    classes, names = cfg["num_classes"], info.get("class_names")
    if not cfg.get("g_attention") and not cfg.get("d_attention"):
        raise ConfigError(f"model {cfg['name']} has no attention layers in G or D: nothing to explore "
                          "(use a sagan_* model)")
    class_index = resolve_class(class_index, classes, names, what=f"model {cfg['name']}")
    notes = []
    discriminator = None
    if cfg.get("d_attention"):
        try:
            discriminator, _ = load_discriminator(info["path"], device)
        except SaganError as exc:
            notes.append(f"No discriminator maps: {exc}")
    z = sample_latents(num, cfg["z_dim"], torch.Generator().manual_seed(seed))
    y = sample_labels(num, classes, class_index)

    def run_g(z: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, list[Layer]]:
        return attention_rows(generator, lambda: generator(z.to(device), None if y is None else y.to(device)), "G")

    def run_d(images: torch.Tensor, y: torch.Tensor | None) -> list[Layer]:
        if y is None and classes:
            y = torch.zeros(images.shape[0], dtype=torch.long)
        return attention_rows(discriminator, lambda: discriminator(
            images.to(device), None if y is None else y.to(device)), "D")[1]

    real = None
    if discriminator is not None:
        try:
            real, real_y, source = _real_images(info, num, seed)
        except SaganError as exc:
            notes.append(f"No real images: {exc}")

    def name(k: int) -> str:
        return class_name(k, names)

    def label(i: int) -> str:
        return "" if y is None else name(int(y[i]))

    def indices(t: torch.Tensor | None) -> list[int] | None:
        return None if t is None else [int(k) for k in t]

    images, g_layers = run_g(z, y)
    generated = ImageSet("generated", f"Generated images (seed {seed})", images,
                         [f"#{i} {label(i)}".strip() for i in range(num)], g_layers, indices(y))
    if discriminator is not None:
        generated.layers += run_d(images, y)
    sets = [generated]
    if real is not None:
        sets.append(ImageSet("real", f"Real images through D ({source})", real,
                             [f"real #{i}" + ("" if real_y is None else f" {name(int(real_y[i]))}")
                              for i in range(len(real))], run_d(real, real_y), indices(real_y)))
    if frames >= 2 and cfg.get("g_attention"):
        t = torch.linspace(0, 1, frames)
        end, other = (z[1], "#1") if num > 1 else (
            sample_latents(1, cfg["z_dim"], torch.Generator().manual_seed(seed + 1))[0], f"a latent of seed {seed + 1}")
        zs = (1 - t[:, None]) * z[0] + t[:, None] * end
        ys = None if y is None else y[:1].repeat(frames)
        images, layers = run_g(zs, ys)
        sets.append(ImageSet("latents", f"Between latent #0 and {other}" + (f" ({label(0)})" if y is not None else ""),
                             images, [f"t={v:.2f}" for v in t.tolist()], layers, indices(ys)))
        if classes > 1:
            a = int(y[0])
            b = int(y[1]) if num > 1 and int(y[1]) != a else (a + 1) % classes
            with class_mix(generator, a, b, t):
                images, layers = run_g(z[:1].repeat(frames, 1), torch.full((frames,), a, dtype=torch.long))
            sets.append(ImageSet("classes", f"Between {name(a)} and {name(b)} at latent #0", images,
                                 [f"t={v:.2f}" for v in t.tolist()], layers))
    info = {**info, "seed": seed, "notes": notes}
    return sets, info
