"""The real images a score compares with: `load_reference()` and bringing generated images to their geometry.

A reference is a data set name (its split, at the data set's native size), a folder of images (with classes from
sub-folders or a labels CSV) or an .npz of images. `match_geometry()` undoes the training transform's fit
(`sagan.data.undo_fit`) and matches channels, so generated images are scored on the pixels the reference has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sagan.errors import DataError, did_you_mean


@dataclass
class Reference:
    """Real images at the geometry they are scored at, and how they were obtained."""

    images: torch.Tensor  # uint8 (N, C, H, W) at the evaluation size
    dataset: str  # canonical data set name, or the resolved path of a folder / .npz
    split: str
    source: str  # human-readable origin, from sagan.data where it came from there
    identity: dict = field(default_factory=dict)  # what the cache key needs beyond the above
    geometry: object | None = None  # the sagan.data.ImageData whose fit generated images are undone with
    labels: torch.Tensor | None = None  # int64 (N,) class of each image, where the reference has classes
    class_names: tuple[str, ...] = ()


def canonical_dataset(spec: str) -> str | None:
    """The data set a reference names ("fmnist" -> "fashion-mnist"), or None for a path (as sagan.data decides:
    a name wins over a same-named folder unless the spec looks like a path)."""
    from sagan.data import DATASETS

    if os.sep in spec or (os.altsep and os.altsep in spec) or spec.startswith((".", "~")):
        return None
    squash = spec.strip().lower().replace("-", "").replace("_", "")
    for name in DATASETS:
        if squash == name.replace("-", ""):
            return name
    return {"fmnist": "fashion-mnist"}.get(squash)


def read_npz_images(path: Path) -> torch.Tensor:
    """uint8 (N, C, H, W) from an .npz of samples: key images/samples/x/arr_0, NCHW or NHWC or NHW; floats in
    [-1, 1] or [0, 1] are converted."""
    try:
        with np.load(path, allow_pickle=False) as z:
            key = next((k for k in ("images", "samples", "x", "arr_0") if k in z.files), None)
            if key is None:
                raise DataError(f"{path} holds {', '.join(z.files) or 'no arrays'}; "
                                "save samples under the key 'images' (uint8, N x C x H x W)")
            a = z[key]
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as an .npz of images ({e})") from e
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise DataError(f"{path}: '{key}' has shape {a.shape}; expected images N x C x H x W or N x H x W x C")
    if a.shape[1] not in (1, 3) and a.shape[-1] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.shape[1] not in (1, 3):
        raise DataError(f"{path}: images of shape {a.shape} have neither 1 nor 3 channels")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise DataError(f"{path}: images must be uint8 or float, got {a.dtype}")
        lo = float(a.min()) if a.size else 0.0
        x = (a + 1.0) * 127.5 if lo < -1e-6 else a * 255.0  # [-1, 1] (model range) or [0, 1]
        a = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(a))


def peek_folder(path: Path) -> tuple[int, int]:
    """(size, channels) of the first image in a folder, for loading the rest without resampling."""
    from PIL import Image

    from sagan.data import IMAGE_EXTENSIONS

    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                try:
                    with Image.open(os.path.join(dirpath, name)) as im:
                        return min(im.size), 1 if im.mode in ("L", "LA", "I", "I;16", "1", "F") else 3
                except OSError:
                    continue
    raise DataError(f"no readable images found under {path}")


def folder_identity(path: Path) -> str:
    """A cheap fingerprint of a folder's contents: names, sizes and modification times of its files."""
    import hashlib

    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{os.path.relpath(os.path.join(dirpath, name), path)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:20]


def load_image_folder(path: Path, **labels) -> tuple[torch.Tensor, str, object]:
    """(uint8 images at the folder's own size, description, the ImageData); `labels` as `load_data` takes them."""
    from sagan.data import load_data

    size, channels = peek_folder(path)
    data = load_data(str(path), size, channels=channels, split="all", **labels)
    images = data.get(torch.arange(len(data)))[0] if data.streamed else data.images
    return images, data.source, data


_REFERENCE_MEMO: dict[tuple, Reference] = {}


def load_reference(against: str, size: int, split: str | None = None, root: str | None = None,
                   download: bool = True, labels: str | None = None, label_column: str | None = None,
                   allow_unlabelled: bool = False) -> Reference:
    """Real images to compare generated `size` x `size` images with.

    `against` is a data set name (scored at its native size, e.g. 28 for fashion-mnist, with `undo_fit`
    bringing generated images there), a folder of images or an .npz of images. A folder's classes come from
    its sub-folders, or from a `labels` CSV (with `label_column`, `allow_unlabelled`: see sagan.data.labels).
    """
    memo_key = (against, size, split, root, labels, label_column, allow_unlabelled)
    if memo_key in _REFERENCE_MEMO:
        return _REFERENCE_MEMO[memo_key]
    path = Path(against).expanduser()
    name = canonical_dataset(against)
    if name is not None:
        from sagan.data import load_data

        if labels:
            raise DataError(f"{name} has labels of its own; a labels file applies to a folder of images")
        split = split or "test"
        geometry = load_data(name, size, split=split, root=root, download=download)
        native = geometry.native_size or size
        data = geometry if native == size else load_data(name, native, split=split, root=root, download=download)
        images = data.images if data.images is not None else data.get(torch.arange(len(data)))[0]
        ref = Reference(images, name, split, data.source, {"size": native}, geometry, data.labels,
                        tuple(data.class_names))
    elif path.is_dir():
        if split not in (None, "all", "train"):
            raise DataError(f"{path} is a folder of images with no '{split}' split; leave --split out")
        options = {"labels": labels, "label_column": label_column, "allow_unlabelled": allow_unlabelled}
        images, source, data = load_image_folder(path, **options)
        identity = {"content": folder_identity(path)}
        if labels:
            from sagan.metrics.extractors import file_sha256

            identity.update(labels=file_sha256(Path(labels).expanduser())[:20], label_column=label_column,
                            allow_unlabelled=allow_unlabelled)
        ref = Reference(images, str(path.resolve()), "all", source, identity, None, data.labels,
                        tuple(data.class_names))
    elif path.is_file():
        if path.suffix.lower() != ".npz":
            raise DataError(f"{path} is neither a folder of images nor an .npz of images")
        if labels:
            raise DataError(f"{path} is an .npz; a labels file applies to a folder of images")
        if split not in (None, "all", "train"):
            raise DataError(f"{path} is an .npz of images with no '{split}' split; leave --split out")
        from sagan.metrics.extractors import file_sha256

        images = read_npz_images(path)
        ref = Reference(images, str(path.resolve()), "all", f"npz {path} ({len(images)} images)",
                        {"content": file_sha256(path)[:20]})
    else:
        from sagan.data import DATASETS

        raise DataError(f"unknown reference '{against}'{did_you_mean(against.lower(), DATASETS)}: "
                        f"neither a data set ({', '.join(DATASETS)}) nor an existing folder or .npz")
    if len(_REFERENCE_MEMO) > 4:
        _REFERENCE_MEMO.clear()
    _REFERENCE_MEMO[memo_key] = ref
    return ref


# ----------------------------------------------------------------------------------------------------------
# Bringing generated images to the reference's geometry


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, 1, H, W) with PIL's ITU-R 601 integer formula (as sagan.data uses)."""
    x = rgb.to(torch.int32)
    y = (x[:, 0] * 19595 + x[:, 1] * 38470 + x[:, 2] * 7471 + 0x8000) >> 16
    return y.clamp_(0, 255).to(torch.uint8).unsqueeze(1)


def _match_channels(images: torch.Tensor, channels: int) -> tuple[torch.Tensor, str | None]:
    if images.shape[1] == channels:
        return images, None
    if channels == 1:
        same = bool((images[:, :1] == images[:, 1:]).all())
        return (images[:, :1].contiguous(), "RGB with equal channels -> grey") if same else (
            _luminance(images), "RGB -> grey (ITU-R 601 luma)")
    return images.expand(-1, 3, -1, -1).contiguous(), "grey -> RGB (repeated)"


def match_geometry(fake: torch.Tensor, ref: Reference) -> tuple[torch.Tensor, str]:
    """Generated images at the reference's size and channels, and what was done to them in words."""
    steps = []
    h = fake.shape[-1]
    if ref.geometry is not None and h != ref.images.shape[-1]:
        from sagan.data import undo_fit

        fake = undo_fit(fake, ref.geometry)
        how = {"pad": "centre crop (undoing the padding)", "resize": "bicubic antialiased resize"}.get(
            ref.geometry.fit, ref.geometry.fit)
        steps.append(f"undo_fit {h}x{h} -> {fake.shape[-1]}x{fake.shape[-1]}: {how}")
    fake, note = _match_channels(fake, ref.images.shape[1])
    if note:
        steps.append(note)
    return fake, "; ".join(steps) or "none"
