"""A folder of images: its files (recursive, sorted, hidden entries skipped) and their classes, from first-level
sub-folders or from a CSV file (sagan/data/labels.py); decoded or streamed by sagan/data/files.py.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from sagan.data.files import is_image_name, load_files
from sagan.data.images import IMAGE_EXTENSIONS, ImageData
from sagan.data.labels import labels_for_files
from sagan.errors import DataError


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
        files += [(top, os.path.join(dirpath, f)) for f in sorted(filenames) if is_image_name(f)]
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


def load_folder(path: Path, resolution: int, channels: int, split: str, max_in_memory_bytes: int,
                 labels_file: str | None = None, label_column: str | None = None,
                 allow_unlabelled: bool = False) -> ImageData:
    """The images under `path` with their classes (from sub-folders, or from `labels_file`, a CSV), decoded or
    streamed by `load_files`."""
    if split not in ("train", "all"):
        raise DataError(f"{path} is a folder of images with no '{split}' split; "
                        "use split='train' (all its images), or make a separate folder for it")
    paths, labels, class_names = _scan_folder(path)
    if not paths:
        raise DataError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {path}")
    describe = str(path)
    if labels_file:  # labels from a CSV instead of sub-folder names (sagan/data/labels.py)
        paths, labels, class_names, column = labels_for_files(path, paths, labels_file, label_column,
                                                              allow_unlabelled)
        describe = f"{path}, labels '{column}' from {labels_file}"
    return load_files(paths, labels, class_names, resolution, channels, max_in_memory_bytes, describe)
