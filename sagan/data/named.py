"""The named data sets (fashion-mnist, mnist, cifar10, celeba): finding their files where they already are,
downloading them through torchvision where allowed, and reading them as uint8 images.

`load_named` is what `sagan.data.load.load_data` calls for a data set's name.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from sagan.data.files import is_image_name, load_files
from sagan.data.images import ImageData, ImageStream, fit_tensor
from sagan.errors import DataError, did_you_mean

DATASETS = ("fashion-mnist", "mnist", "cifar10", "celeba")

DATASET_ALIASES = {
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
        named_after = DATASET_ALIASES.get(base.name.lower()) == name
        own = (root and i == 0) or name not in ("mnist", "fashion-mnist") or named_after
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
        return sorted(str(images / f) for f in os.listdir(images) if is_image_name(f))
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


def load_named(name: str, resolution: int, channels: int | None, split: str, root: str | None,
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
        data = load_files(paths, None, [], resolution, c, max_in_memory_bytes, str(folder), validate=False)
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
        images = fit_tensor(native, resolution, c, fit)
        return ImageData(images, labels, list(_CLASS_NAMES[name]), description + ")", 0, n, fit)
    # Too big at this resolution: keep the small native copy and fit each batch as it is asked for.
    stream = ImageStream(count, (c, resolution, resolution), lambda idx: fit_tensor(native[idx], resolution, c, fit))
    return ImageData(None, labels, list(_CLASS_NAMES[name]), description + ", fitted per batch)", 0, n, fit,
                     _stream=stream)
