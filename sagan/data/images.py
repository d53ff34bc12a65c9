"""Images as uint8 tensors: the container every source fills, pixel ranges, and fitting to a resolution.

Every source (sagan/data/named.py, folders.py, files.py) hands out uint8 images `(N, C, H, W)` at the requested
resolution in an `ImageData`; `to_model_range` turns a batch into floats in [-1, 1] on whatever device the trainer
uses, so the (4x smaller) uint8 copy is what sits in memory and travels to the GPU. `undo_fit` maps generated
images back to the data's native size for fair evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


# ----------------------------------------------------------------------------------------------------------
# Pixel ranges


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1] (on the same device)."""
    if images_uint8.dtype != torch.uint8:
        raise TypeError(f"to_model_range expects uint8 images, got {images_uint8.dtype}")
    return images_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255]; values outside are clamped, NaN becomes 0.

    Exact inverse of `to_model_range` for every uint8 value.
    """
    x = torch.nan_to_num(images.detach().float(), nan=-1.0)
    return (x + 1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------------------
# The container


@dataclass(eq=False, repr=False)
class ImageData:
    """Images and labels that training and evaluation consume.

    `images` is uint8 `(N, C, H, W)` at the requested resolution when held in memory; for a source too
    large for memory it is None and `get()` decodes the requested items on demand.
    """

    images: torch.Tensor | None
    labels: torch.Tensor | None
    class_names: list[str]
    source: str
    skipped: int = 0
    native_size: int | None = None
    fit: str = "resize"
    _stream: ImageStream | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        where = "streamed" if self.streamed else "in memory"
        return (f"ImageData({self.source}: {len(self)} x {tuple(self.shape)} uint8 {where}, "
                f"{self.num_classes} classes, fit={self.fit!r}, native_size={self.native_size}, "
                f"skipped={self.skipped})")

    def __len__(self) -> int:
        """Number of images."""
        if self.images is not None:
            return int(self.images.shape[0])
        if self._stream is not None:
            return len(self._stream)
        return 0 if self.labels is None else int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (0 when unlabelled)."""
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        if self.images is not None:
            return tuple(self.images.shape[1:])  # type: ignore[return-value]
        if self._stream is None:
            raise ValueError("ImageData holds neither images nor a stream")
        return self._stream.shape

    @property
    def channels(self) -> int:
        """Channels per image (1 or 3)."""
        return self.shape[0]

    @property
    def resolution(self) -> int:
        """Side of the (square) images."""
        return self.shape[-1]

    @property
    def streamed(self) -> bool:
        """True when images are decoded on demand by `get()` rather than held in memory."""
        return self.images is None

    def get(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 images `(B, C, H, W)` and int64 labels `(B,)` (or None) for these indices."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        labels = None if self.labels is None else self.labels[indices]
        if self.images is not None:
            return self.images[indices], labels
        if self._stream is None:
            raise ValueError("ImageData holds neither images nor a stream")
        return self._stream.fetch(indices), labels


class ImageStream:
    """On-demand source of fitted uint8 images for data too large to hold at the requested resolution."""

    def __init__(self, length: int, shape: tuple[int, int, int], fetch: Callable[[torch.Tensor], torch.Tensor]):
        self.length, self.shape, self.fetch = length, shape, fetch

    def __len__(self) -> int:
        return self.length


# ----------------------------------------------------------------------------------------------------------
# Bringing images to the requested resolution and channels


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, 1, H, W) with PIL's ITU-R 601 integer formula, so that tensor sources and
    image folders give identical grey values."""
    x = rgb.to(torch.int32)
    y = (x[:, 0] * 19595 + x[:, 1] * 38470 + x[:, 2] * 7471 + 0x8000) >> 16
    return y.clamp_(0, 255).to(torch.uint8).unsqueeze(1)


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic, antialiased resize of uint8 (N, C, h, w) to (N, C, size, size), rounded back to uint8."""
    out = []
    for chunk in images.split(4096):  # bounded float memory for 70,000-image sets
        x = F.interpolate(chunk.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_empty((0, images.shape[1], size, size))


def _pad_amounts(native: int, resolution: int) -> tuple[int, int]:
    before = (resolution - native) // 2
    return before, resolution - native - before


def fit_tensor(native: torch.Tensor, resolution: int, channels: int, fit: str) -> torch.Tensor:
    """uint8 (N, c, n, n) at native size -> (N, channels, resolution, resolution)."""
    x = native
    if x.shape[1] == 3 and channels == 1:  # reduce before resizing: a third of the work
        x = _luminance(x)
    n = x.shape[-1]
    if fit == "pad" and resolution != n:
        before, after = _pad_amounts(n, resolution)
        x = F.pad(x, (before, after, before, after), value=0)  # mnist backgrounds are 0: padding is exact
    elif resolution != n:
        x = _resize_uint8(x, resolution)
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


def undo_fit(images: torch.Tensor, data: ImageData) -> torch.Tensor:
    """Bring images at the training resolution back to `data`'s native size, undoing how it was fitted.

    "pad": centre crop (exact for padded real images); "resize": bicubic resize to `native_size` when it
    is known, otherwise unchanged. Works on uint8 or float `(N, C, H, W)`; apply it to real and generated
    images alike so both are scored at the same size.
    """
    n = data.native_size
    size = images.shape[-1]
    if n is None or size == n:
        return images
    if data.fit == "pad":
        if size < n:
            raise ValueError(f"images of size {size} are smaller than the padded native size {n}")
        top, _ = _pad_amounts(n, size)
        return images[..., top:top + n, top:top + n]
    if images.dtype == torch.uint8:
        return _resize_uint8(images, n)
    return F.interpolate(images, size=(n, n), mode="bicubic", antialias=True, align_corners=False)
