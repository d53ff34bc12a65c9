"""Attention maps of a run: load its networks, pick images and query points, compute every layer's maps.

`attention_study` is what `sagan attention`, the run report and the study page draw with `draw_attention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sagan.viz.maps import LayerMaps, discriminator_attention, generator_attention, grid_points


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
    from sagan.checkpoint import load_discriminator, load_generator
    from sagan.data.run import class_name, resolve_class
    from sagan.errors import ConfigError
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
