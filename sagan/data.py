"""Data: named data sets and image folders as uint8 tensors, and an endless, resumable, shardable loader.

Everything here hands out uint8 images `(N, C, H, W)` at the requested resolution; `to_model_range` turns a
batch into floats in [-1, 1] on whatever device the trainer uses, so the (4x smaller) uint8 copy is what
sits in memory and travels to the GPU.

- `load_data(spec, resolution)`: "fashion-mnist", "mnist", "cifar10", "celeba" (found where they already
  are, downloaded through torchvision otherwise) or a folder of images (labels from sub-folders).
- `undo_fit(images, data)`: maps generated images back to the data's native size for fair evaluation.
- `InfiniteBatches(data, batch_size, seed, rank, world_size)`: endless shuffled batches, the same order on
  every run for a seed, a disjoint shard per rank, `state_dict()` to resume mid-epoch exactly.
"""

from __future__ import annotations

import gzip
import os
import pickle
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from sagan.errors import DataError, did_you_mean

DATASETS = ("fashion-mnist", "mnist", "cifar10", "celeba")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

_ALIASES = {
    "fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist", "mnist": "mnist", "cifar10": "cifar10", "cifar-10": "cifar10",
    "cifar_10": "cifar10", "celeba": "celeba", "celeb-a": "celeba", "celeb_a": "celeba",
}
_SPLITS = {
    "fashion-mnist": ("train", "test", "all"), "mnist": ("train", "test", "all"),
    "cifar10": ("train", "test", "all"), "celeba": ("train", "valid", "test", "all"),
}
_CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(d) for d in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
_TORCHVISION_CLASS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10", "celeba": "CelebA"}
_HOW_TO_GET = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or put the four IDX .gz files under "
                     "$SAGAN_DATA/fashion-mnist, or go online and use download=True",
    "mnist": "put the four IDX .gz files (train-images-idx3-ubyte.gz, ...) under $SAGAN_DATA/mnist, "
             "or go online and use download=True",
    "cifar10": "extract cifar-10-python.tar.gz under $SAGAN_DATA (giving $SAGAN_DATA/cifar-10-batches-py), "
               "or go online and use download=True",
    "celeba": "put img_align_celeba/ and list_eval_partition.txt under $SAGAN_DATA/celeba "
              "(torchvision's Google Drive download is often over quota)",
}
# Above this many files a decode pass is spread over worker processes; below it, start-up costs more
# than it saves (a 64x64 PNG decodes in ~0.13 ms).
_PARALLEL_MIN_FILES = 2048
_STREAM_PARALLEL_MIN_BATCH = 16


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
    _stream: _Stream | None = field(default=None, repr=False)

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


class _Stream:
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


def _fit_tensor(native: torch.Tensor, resolution: int, channels: int, fit: str) -> torch.Tensor:
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


# ----------------------------------------------------------------------------------------------------------
# Decoding image files


def _to_array(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """PIL image of any mode and size -> uint8 (resolution, resolution, channels): transparency composited on
    white, centre-cropped to a square, resized bicubically (PIL antialiases when shrinking)."""
    if image.format in ("JPEG", "MPO", "WEBP"):
        image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit / float grey PNG, TIFF-like
        a = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if a.max() > 255 else 1.0
        image = Image.fromarray(np.clip(a * scale + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" not in image.info:
        image = image.convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        # Emoji and icons are drawn on transparent backgrounds; white is how they are seen, while black
        # (what dropping alpha gives) would make dark artwork vanish.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    w, h = image.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    if (w, h) != (side, side):
        image = image.crop(box)  # crop first: resize(box=...) would blend in pixels from outside the square
    if side != resolution:  # same size: no resampling, pixels stay exact
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    a = np.asarray(image, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def _decode_file(job: tuple[str, int, int]) -> tuple[np.ndarray | None, tuple[int, int] | None]:
    """(path, resolution, channels) -> (pixels, original (w, h)), or (None, None) when unreadable."""
    path, resolution, channels = job
    try:
        with Image.open(path) as image:
            size = image.size
            image.load()  # truncated files fail here, not at open()
            return _to_array(image, resolution, channels), size
    except Exception:  # noqa: BLE001 - "unreadable" whatever the decoder raised (OSError, SyntaxError, ...)
        return None, None


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 16))


def _process_pool() -> ProcessPoolExecutor | None:
    """A pool of forked decoders, or None where forking is not safe or there is one core.

    Fork (as torch's DataLoader does on Linux) rather than spawn: spawned children would re-import the
    user's script, which breaks scripts without an `if __name__ == "__main__"` guard.
    """
    if sys.platform != "linux" or _workers() < 2:
        return None
    import multiprocessing

    return ProcessPoolExecutor(max_workers=_workers(), mp_context=multiprocessing.get_context("fork"))


def _decode_many(jobs: Sequence[tuple[str, int, int]], pool: ProcessPoolExecutor | None = None,
                 min_parallel: int = _PARALLEL_MIN_FILES) -> Iterator[tuple[np.ndarray | None, tuple[int, int] | None]]:
    """Decode files, yielding results in order; in worker processes when there are enough files to pay."""
    if len(jobs) < min_parallel:
        yield from map(_decode_file, jobs)
        return
    own = pool is None
    pool = pool or _process_pool()
    if pool is None:
        yield from map(_decode_file, jobs)
        return
    try:
        chunk = max(1, min(256, len(jobs) // (4 * _workers())))
        yield from pool.map(_decode_file, jobs, chunksize=chunk)
    finally:
        if own:
            pool.shutdown(cancel_futures=True)


class _FileStream:
    """Decodes listed files on demand; a persistent pool of forked workers serves large batches."""

    def __init__(self, paths: list[str], resolution: int, channels: int):
        self.paths, self.resolution, self.channels = paths, resolution, channels
        self._pool: ProcessPoolExecutor | None = None
        if len(paths) >= _PARALLEL_MIN_FILES:
            self._pool = _process_pool()
            if self._pool is not None:  # fork the workers now, from the main thread, before training starts
                self._pool.submit(int).result()
                weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        jobs = [(self.paths[i], self.resolution, self.channels) for i in indices.tolist()]
        min_parallel = _STREAM_PARALLEL_MIN_BATCH if self._pool else len(jobs) + 1
        decoded = _decode_many(jobs, self._pool, min_parallel=min_parallel)
        arrays = []
        for (path, _, _), (a, _) in zip(jobs, decoded):
            if a is None:  # was readable at load time
                raise DataError(f"cannot read {path} any more (changed on disk during the run?); "
                                "restore it or restart to rescan the folder")
            arrays.append(a)
        if not arrays:
            return torch.empty((0, self.channels, self.resolution, self.resolution), dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _load_files(paths: list[str], labels: list[int] | None, class_names: list[str], resolution: int,
                channels: int, max_in_memory_bytes: int, describe: str, validate: bool = True) -> ImageData:
    """Decode listed image files into memory, or set up streaming when they would not fit."""
    in_memory = len(paths) * channels * resolution * resolution <= max_in_memory_bytes
    pixels = np.empty((len(paths) if in_memory else 0, resolution, resolution, channels), np.uint8)
    sizes: set[tuple[int, int]] = set()
    keep = list(range(len(paths)))
    if in_memory or validate:
        # Streaming also decodes everything once: a truncated file must be found now, not mid-training.
        keep, bad = [], []
        for i, (a, size) in enumerate(_decode_many([(p, resolution, channels) for p in paths])):
            if a is None:
                bad.append(paths[i])
                continue
            if in_memory:
                pixels[len(keep)] = a  # filled in place: no second full-size copy of a large set
            keep.append(i)
            sizes.add(size)  # type: ignore[arg-type]
        if not keep:
            raise DataError(f"all {len(paths)} image files under {describe} are unreadable "
                            f"(e.g. {bad[0]}); check the files are valid images")
        if bad:
            names = ", ".join(os.path.basename(p) for p in bad[:3]) + (", ..." if len(bad) > 3 else "")
            warnings.warn(f"skipped {len(bad)} unreadable image file(s) under {describe}: {names}", stacklevel=3)
    skipped = len(paths) - len(keep)
    label_tensor = None if labels is None else torch.tensor([labels[i] for i in keep], dtype=torch.long)
    # A native size only means something when every image had the same square size.
    (w, h), = sizes if len(sizes) == 1 else ((0, -1),)
    native = w if w == h else None
    n_classes = f", {len(class_names)} classes" if class_names else ""
    skip_note = f", {skipped} unreadable skipped" if skipped else ""
    if in_memory:
        images = torch.from_numpy(pixels[:len(keep)]).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
        source = f"folder {describe} ({len(keep)} images{n_classes}{skip_note})"
        return ImageData(images, label_tensor, class_names, source, skipped, native, "resize")
    kept_paths = [paths[i] for i in keep]
    stream = _Stream(len(kept_paths), (channels, resolution, resolution),
                     _FileStream(kept_paths, resolution, channels))
    source = f"folder {describe} ({len(keep)} images{n_classes}{skip_note}, streamed from disk)"
    return ImageData(None, label_tensor, class_names, source, skipped, native, "resize", _stream=stream)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _scan_folder(root: Path) -> tuple[list[str], list[int] | None, list[str]]:
    """Image files under `root` (sorted, recursive; hidden entries skipped) and labels from first-level
    sub-folders when those hold the images."""
    seen: set[str] = set()
    files: list[tuple[str, str]] = []  # (first-level folder or "", path)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .ipynb_checkpoints, .git
        rel = os.path.relpath(dirpath, root)
        top = "" if rel == "." else rel.split(os.sep)[0]
        files += [(top, os.path.join(dirpath, f)) for f in sorted(filenames) if _is_image_name(f)]
    files.sort(key=lambda t: os.path.relpath(t[1], root))  # a stable order on every machine
    paths = [p for _, p in files]
    tops = {t for t, _ in files}
    if "" in tops and len(tops) > 1:
        warnings.warn(f"{root} has images both directly inside it and in sub-folders: loading them all "
                      "unlabelled (move loose images into a sub-folder to get class labels)", stacklevel=3)
    if "" in tops or not tops:
        return paths, None, []
    class_names = sorted(tops)
    index = {c: i for i, c in enumerate(class_names)}
    return paths, [index[t] for t, _ in files], class_names


def _load_folder(path: Path, resolution: int, channels: int, split: str, max_in_memory_bytes: int,
                 labels_file: str | None = None, label_column: str | None = None,
                 allow_unlabelled: bool = False) -> ImageData:
    if split not in ("train", "all"):
        raise DataError(f"{path} is a folder of images with no '{split}' split; "
                        "use split='train' (all its images), or make a separate folder for it")
    paths, labels, class_names = _scan_folder(path)
    if not paths:
        raise DataError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {path}")
    describe = str(path)
    if labels_file:  # labels from a CSV instead of sub-folder names (sagan.labels)
        from sagan.labels import labels_for_files

        paths, labels, class_names, column = labels_for_files(path, paths, labels_file, label_column,
                                                              allow_unlabelled)
        describe = f"{path}, labels '{column}' from {labels_file}"
    return _load_files(paths, labels, class_names, resolution, channels, max_in_memory_bytes, describe)


# ----------------------------------------------------------------------------------------------------------
# Named data sets: finding them, reading their files


def _search_dirs(name: str, root: str | None) -> list[Path]:
    """Folders that may hold `name`, in the order they are tried: `root`, $SAGAN_DATA, Debian's
    /usr/share/datasets, ~/.cache/sagan/data; in each, the folder itself, a sub-folder named after the set
    and torchvision's layout.

    MNIST and Fashion-MNIST use the same file names, so a shared folder counts as holding an MNIST-like set
    only when it is the explicit `root` or is named after the set: a set must never be mistaken for the other.
    """
    bases: list[Path] = []
    if root:
        bases.append(Path(root).expanduser())
    env = os.environ.get("SAGAN_DATA")
    if env:
        bases.append(Path(env).expanduser())
    bases += [Path("/usr/share/datasets"), _cache_dir()]
    tv = _TORCHVISION_CLASS[name]
    dirs: list[Path] = []
    for i, base in enumerate(bases):
        own = (root and i == 0) or name not in ("mnist", "fashion-mnist") or _ALIASES.get(base.name.lower()) == name
        for d in ([base] if own else []) + [base / name, base / tv / "raw", base / tv]:
            if d not in dirs:
                dirs.append(d)
    return dirs


def _cache_dir() -> Path:
    return Path.home() / ".cache" / "sagan" / "data"


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain) as a uint8 array: the format of the MNIST family."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}); delete it and fetch it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes; delete it and fetch it again")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({data.size} of {int(np.prod(dims))} bytes); "
                        "delete it and fetch it again")
    return data.reshape(tuple(dims))


def _find_mnist(name: str, root: str | None) -> Path | None:
    for d in _search_dirs(name, root):
        if all(_idx_file(d, s) for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
            return d
    return None


def _read_mnist(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    parts = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}[split]
    images, labels = [], []
    for p in parts:
        x = _read_idx(_idx_file(folder, f"{p}-images-idx3-ubyte"))  # type: ignore[arg-type]
        y = _read_idx(_idx_file(folder, f"{p}-labels-idx1-ubyte"))  # type: ignore[arg-type]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {p} images {x.shape} and labels {y.shape} do not match; fetch them again")
        images.append(torch.from_numpy(x.copy()).unsqueeze(1))  # (N, 1, 28, 28)
        labels.append(torch.from_numpy(y.astype(np.int64)))
    return torch.cat(images), torch.cat(labels)


def _find_cifar(root: str | None) -> Path | None:
    for d in _search_dirs("cifar10", root):
        for c in (d / "cifar-10-batches-py", d):
            if (c / "data_batch_1").is_file() and (c / "test_batch").is_file():
                return c
    return None


def _read_cifar(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
             "all": [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}[split]
    images, labels = [], []
    for n in names:
        try:
            with open(folder / n, "rb") as f:
                batch = pickle.load(f, encoding="latin1")  # the official python-version files are pickles
        except (OSError, pickle.UnpicklingError, EOFError) as e:
            raise DataError(f"cannot read {folder / n} ({e}); extract cifar-10-python.tar.gz again") from e
        images.append(torch.from_numpy(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)))
        labels.append(torch.tensor(batch["labels"], dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


def _find_celeba(root: str | None) -> Path | None:
    for d in _search_dirs("celeba", root):
        for c in (d / "celeba", d):
            if (c / "img_align_celeba").is_dir():
                return c
    return None


def _celeba_files(folder: Path, split: str) -> list[str]:
    images = folder / "img_align_celeba"
    partition = folder / "list_eval_partition.txt"
    if not partition.is_file():
        if split != "all":
            raise DataError(f"{partition} is missing, so CelebA's '{split}' split is unknown; "
                            "add it from the CelebA release or use split='all'")
        return sorted(str(images / f) for f in os.listdir(images) if _is_image_name(f))
    wanted = {"train": "0", "valid": "1", "test": "2"}.get(split)
    names = []
    with open(partition) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and (wanted is None or parts[1] == wanted):
                names.append(str(images / parts[0]))
    return names


def _download(name: str) -> None:
    """Fetch a named set through torchvision into the cache folder."""
    import torchvision.datasets as tvd

    cache = str(_cache_dir())
    os.makedirs(cache, exist_ok=True)
    if name == "fashion-mnist":
        tvd.FashionMNIST(cache, train=True, download=True)
    elif name == "mnist":
        tvd.MNIST(cache, train=True, download=True)
    elif name == "cifar10":
        tvd.CIFAR10(cache, train=True, download=True)
    else:
        tvd.CelebA(cache, split="all", target_type=[], download=True)


def _load_named(name: str, resolution: int, channels: int | None, split: str, root: str | None,
                download: bool, max_in_memory_bytes: int) -> ImageData:
    if split not in _SPLITS[name]:
        raise DataError(f"{name} has no split '{split}'{did_you_mean(split, _SPLITS[name])}; "
                        f"use one of {', '.join(_SPLITS[name])}")
    finders = {"fashion-mnist": lambda: _find_mnist("fashion-mnist", root), "mnist": lambda: _find_mnist("mnist", root),
               "cifar10": lambda: _find_cifar(root), "celeba": lambda: _find_celeba(root)}
    folder = finders[name]()
    if folder is None:
        where = "the root argument, $SAGAN_DATA, /usr/share/datasets or ~/.cache/sagan/data"
        if not download:
            raise DataError(f"{name} not found in {where}; {_HOW_TO_GET[name]}")
        try:
            _download(name)
        except Exception as e:  # offline, over quota, disk full: all mean "get it another way"
            raise DataError(f"{name} not found in {where} and downloading it failed "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                            f"{_HOW_TO_GET[name]}") from e
        folder = finders[name]()
        if folder is None:
            raise DataError(f"{name} was downloaded but not found under {_cache_dir()}; {_HOW_TO_GET[name]}")

    if name == "celeba":
        # CelebA's aligned 178x218 faces, centre-cropped to 178x178 (the whole width; the face sits in the
        # middle) and then resized, as in the DCGAN tutorial: more context than the 108/140 crops of some
        # papers, and no labels (its 40 attributes are not classes).
        paths = _celeba_files(folder, split)
        if not paths:
            raise DataError(f"no CelebA images for split '{split}' under {folder}")
        c = channels or 3
        data = _load_files(paths, None, [], resolution, c, max_in_memory_bytes, str(folder), validate=False)
        data.source = f"celeba {split} ({len(data)} images, {folder}{', streamed' if data.streamed else ''})"
        data.native_size = None  # "native" would be 178: a meaningless size to evaluate a 64 px model at
        return data

    if name == "cifar10":
        native, labels = _read_cifar(folder, split)
        fit = "resize"
    else:
        native, labels = _read_mnist(folder, split)
        fit = "pad" if resolution >= native.shape[-1] else "resize"
    c = channels or native.shape[1]
    n = native.shape[-1]
    count = native.shape[0]
    description = f"{name} {split} ({count} images, {folder}"
    if count * c * resolution * resolution <= max_in_memory_bytes:
        images = _fit_tensor(native, resolution, c, fit)
        return ImageData(images, labels, list(_CLASS_NAMES[name]), description + ")", 0, n, fit)
    # Too big at this resolution: keep the small native copy and fit each batch as it is asked for.
    stream = _Stream(count, (c, resolution, resolution), lambda idx: _fit_tensor(native[idx], resolution, c, fit))
    return ImageData(None, labels, list(_CLASS_NAMES[name]), description + ", fitted per batch)", 0, n, fit,
                     _stream=stream)


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
    from sagan.shards import is_shard_spec, load_shards  # tar shards: sagan/shards.py

    if is_shard_spec(spec):
        return load_shards(spec, resolution, channels)  # type: ignore[return-value]
    key = spec.strip().lower()
    looks_like_path = os.sep in spec or (os.altsep or os.sep) in spec or spec.startswith((".", "~"))
    if key in _ALIASES and not looks_like_path:
        if labels:
            raise DataError(f"{spec} has labels of its own; a labels file applies to a folder of images")
        return _load_named(_ALIASES[key], resolution, channels, split, root, download, max_in_memory_bytes)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_folder(path.resolve(), resolution, channels or 3, split, max_in_memory_bytes,
                            labels, label_column, allow_unlabelled)
    if path.exists():
        raise DataError(f"{path} is a file; give a folder of images or one of: {', '.join(DATASETS)}")
    if looks_like_path or Path(spec).suffix:
        raise DataError(f"no such file or folder: {path.absolute()}")
    hint = did_you_mean(key, DATASETS) or did_you_mean(key, tuple(_ALIASES))
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
