"""Data: named data sets and image folders as uint8 tensors, and an endless, resumable, shardable loader.

Everything here hands out uint8 images `(N, C, H, W)` at the requested resolution; `to_model_range` turns a
batch into floats in [-1, 1] on whatever device the trainer uses, so the (4x smaller) uint8 copy is what
sits in memory and travels to the GPU.

- `load_data(spec, resolution)`: "fashion-mnist", "mnist", "cifar10", "celeba" (found where they already
  are, downloaded through torchvision otherwise: sagan/named_datasets.py) or a folder of images (labels from
  sub-folders or a CSV; decoded, or streamed from disk when too big: sagan/image_files.py).
- `undo_fit(images, data)`: maps generated images back to the data's native size for fair evaluation.
- `InfiniteBatches(data, batch_size, seed, rank, world_size)`: endless shuffled batches, the same order on
  every run for a seed, a disjoint shard per rank, `state_dict()` to resume mid-epoch exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from sagan.errors import DataError, did_you_mean

DATASETS = ("fashion-mnist", "mnist", "cifar10", "celeba")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

DATASET_ALIASES = {
    "fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist", "mnist": "mnist", "cifar10": "cifar10", "cifar-10": "cifar10",
    "cifar_10": "cifar10", "celeba": "celeba", "celeb-a": "celeba", "celeb_a": "celeba",
}


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


def load_data(spec: str, resolution: int, channels: int | None = None, split: str = "train",
              root: str | None = None, download: bool = True, max_in_memory_bytes: int = 4 << 30,
              labels: str | None = None, label_column: str | None = None,
              allow_unlabelled: bool = False) -> ImageData:
    """Load a named data set (fashion-mnist, mnist, cifar10, celeba) or a folder of images.

    Images come back as uint8 `(N, channels, resolution, resolution)`; `channels` defaults to the source's
    own (1 for the MNIST family, 3 otherwise). Named sets are looked for in `root`, `$SAGAN_DATA`,
    /usr/share/datasets and ~/.cache/sagan/data, and downloaded through torchvision into the latter when
    absent and `download` is true. Sets larger than `max_in_memory_bytes` are decoded on demand by `get()`.
    `labels` (a CSV), `label_column` and `allow_unlabelled` label a folder's images (see `sagan.labels`).
    """
    if label_column and not labels:
        raise DataError(f"label column '{label_column}' given without a labels file; add --labels FILE.csv")
    if not isinstance(resolution, int) or resolution < 1:
        raise DataError(f"resolution must be a positive whole number of pixels, got {resolution!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    split = split.lower()
    from sagan.data.shards import is_shard_spec, load_shards  # tar shards: sagan/shards.py

    if is_shard_spec(spec):
        return load_shards(spec, resolution, channels)  # type: ignore[return-value]
    key = spec.strip().lower()
    looks_like_path = os.sep in spec or (os.altsep or os.sep) in spec or spec.startswith((".", "~"))
    if key in DATASET_ALIASES and not looks_like_path:
        if labels:
            raise DataError(f"{spec} has labels of its own; a labels file applies to a folder of images")
        from sagan.data.named import load_named  # named sets: sagan/named_datasets.py

        return load_named(DATASET_ALIASES[key], resolution, channels, split, root, download, max_in_memory_bytes)
    path = Path(spec).expanduser()
    if path.is_dir():
        from sagan.data.files import load_folder  # folders: sagan/image_files.py

        return load_folder(path.resolve(), resolution, channels or 3, split, max_in_memory_bytes,
                            labels, label_column, allow_unlabelled)
    if path.exists():
        raise DataError(f"{path} is a file; give a folder of images or one of: {', '.join(DATASETS)}")
    if looks_like_path or Path(spec).suffix:
        raise DataError(f"no such file or folder: {path.absolute()}")
    hint = did_you_mean(key, DATASETS) or did_you_mean(key, tuple(DATASET_ALIASES))
    raise DataError(f"unknown data set '{spec}'{hint} and no such file or folder: {path.absolute()}; "
                    f"use one of {', '.join(DATASETS)} or a folder of images")


# ----------------------------------------------------------------------------------------------------------
# The loader


class InfiniteBatches:
    """Endless batches of indices into an ImageData, reshuffled every epoch from (seed, epoch);
    each rank of a distributed run takes its own disjoint shard; state_dict()/load_state_dict()
    ({"epoch": e, "position": p}) restore the exact same order after resume.

    Every rank builds the same permutation and takes every `world_size`-th index from `rank`; each rank
    gets `len(data) // world_size` indices per epoch so all ranks run the same number of steps (up to
    `world_size - 1` images sit out each epoch, a different few every time). The state is the same on every
    rank, so rank 0's state_dict() resumes them all. Streamed data is decoded one batch ahead in a
    background thread.
    """

    def __init__(self, data: ImageData, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True):
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside 0..{world_size - 1} for world size {world_size}")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.per_rank = len(data) // world_size
        full, rest = divmod(self.per_rank, batch_size)
        self.batches_per_epoch = full + (1 if rest and not drop_last else 0)
        if self.batches_per_epoch == 0:
            raise DataError(f"{len(data)} images cannot fill one batch of {batch_size} on each of {world_size} "
                            f"rank(s); lower the batch size or use more images")
        self.epoch, self.position = 0, 0
        self._shard_epoch: int | None = None
        self._shard: torch.Tensor | None = None
        self._prefetcher = ThreadPoolExecutor(max_workers=1) if data.streamed else None
        self._pending: tuple[tuple[int, int], Future] | None = None

    def _indices(self, epoch: int, position: int) -> torch.Tensor:
        if self._shard_epoch != epoch:
            # A seed per (seed, epoch) rather than one running generator: any epoch can be rebuilt alone.
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (1 << 63))
            perm = torch.randperm(len(self.data), generator=g)
            self._shard = perm[self.rank: self.per_rank * self.world_size: self.world_size]
            self._shard_epoch = epoch
        start = position * self.batch_size
        return self._shard[start: start + self.batch_size]  # type: ignore[index]

    def _next_key(self, epoch: int, position: int) -> tuple[int, int]:
        return (epoch + 1, 0) if position + 1 >= self.batches_per_epoch else (epoch, position + 1)

    def __iter__(self) -> InfiniteBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next (uint8 images (B, C, H, W), labels (B,) or None)."""
        key = (self.epoch, self.position)
        if self._pending is not None and self._pending[0] == key:
            batch = self._pending[1].result()
        else:
            batch = self.data.get(self._indices(*key))
        self._pending = None
        self.epoch, self.position = self._next_key(*key)
        if self._prefetcher is not None:
            nxt = (self.epoch, self.position)
            self._pending = (nxt, self._prefetcher.submit(self.data.get, self._indices(*nxt)))
        return batch

    def state_dict(self) -> dict:
        """{"epoch": e, "position": p}: the next batch to be returned."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a state_dict() so the following batches are exactly those of the saved run."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.batches_per_epoch:
            raise DataError(f"loader state {state} does not fit {self.batches_per_epoch} batches per epoch; "
                            "the data set or batch size changed since the checkpoint")
        self.epoch, self.position = (epoch + 1, 0) if position == self.batches_per_epoch else (epoch, position)
