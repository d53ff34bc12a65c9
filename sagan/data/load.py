"""`load_data`: the one entry point that turns a --data value into images, choosing the source that reads it.

- a data set's name: "fashion-mnist", "mnist", "cifar10", "celeba" (found where they already are, downloaded
  through torchvision otherwise: sagan/data/named.py);
- a folder of images, labels from sub-folders or a CSV (sagan/data/folders.py, labels.py), decoded into memory or
  streamed from disk when too big (sagan/data/files.py);
- tar shards in the webdataset layout, streamed (sagan/data/shards.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from sagan.data.folders import load_folder
from sagan.data.images import ImageData
from sagan.data.named import DATASET_ALIASES, DATASETS, load_named
from sagan.data.shards import ShardData, is_shard_spec, load_shards
from sagan.errors import DataError, did_you_mean


def load_data(spec: str, resolution: int, channels: int | None = None, split: str = "train",
              root: str | None = None, download: bool = True, max_in_memory_bytes: int = 4 << 30,
              labels: str | None = None, label_column: str | None = None,
              allow_unlabelled: bool = False) -> ImageData | ShardData:
    """Load a named data set (fashion-mnist, mnist, cifar10, celeba), a folder of images or tar shards.

    Images come back as uint8 `(N, channels, resolution, resolution)`; `channels` defaults to the source's
    own (1 for the MNIST family, 3 otherwise). Named sets are looked for in `root`, `$SAGAN_DATA`,
    /usr/share/datasets and ~/.cache/sagan/data, and downloaded through torchvision into the latter when
    absent and `download` is true. Sets larger than `max_in_memory_bytes` are decoded on demand by `get()`.
    `labels` (a CSV), `label_column` and `allow_unlabelled` label a folder's images (see `sagan.data.labels`).
    """
    if label_column and not labels:
        raise DataError(f"label column '{label_column}' given without a labels file; add --labels FILE.csv")
    if not isinstance(resolution, int) or resolution < 1:
        raise DataError(f"resolution must be a positive whole number of pixels, got {resolution!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    split = split.lower()
    if is_shard_spec(spec):
        if labels:
            raise DataError(f"{spec} names tar shards, whose classes are their .cls members; a labels file applies "
                            "to a folder of images")
        return load_shards(spec, resolution, channels, allow_unlabelled)
    key = spec.strip().lower()
    looks_like_path = os.sep in spec or (os.altsep or os.sep) in spec or spec.startswith((".", "~"))
    if key in DATASET_ALIASES and not looks_like_path:
        if labels:
            raise DataError(f"{spec} has labels of its own; a labels file applies to a folder of images")
        return load_named(DATASET_ALIASES[key], resolution, channels, split, root, download, max_in_memory_bytes)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path.resolve(), resolution, channels or 3, split, max_in_memory_bytes,
                            labels, label_column, allow_unlabelled)
    if path.exists():
        raise DataError(f"{path} is a file; give a folder of images or one of: {', '.join(DATASETS)}")
    if looks_like_path or Path(spec).suffix:
        raise DataError(f"no such file or folder: {path.absolute()}")
    hint = did_you_mean(key, DATASETS) or did_you_mean(key, tuple(DATASET_ALIASES))
    raise DataError(f"unknown data set '{spec}'{hint} and no such file or folder: {path.absolute()}; "
                    f"use one of {', '.join(DATASETS)} or a folder of images")
