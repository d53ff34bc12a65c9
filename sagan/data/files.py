"""Image files: decoding them (in worker processes when there are many) into memory, or streaming them from disk
when the set is too big to hold at the requested resolution.

`load_files` is what the folder and named-set sources (sagan/data/folders.py, named.py) call; `to_array` is the one
decoder every path shares (folders, tar shards, `sagan attention --image`), so a picture gives the same pixels
wherever it comes from."""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from PIL import Image, ImageOps

from sagan.data.images import IMAGE_EXTENSIONS, ImageData, ImageStream
from sagan.errors import DataError

# Above this many files a decode pass is spread over worker processes; below it, start-up costs more
# than it saves (a 64x64 PNG decodes in ~0.13 ms).
_PARALLEL_MIN_FILES = 2048
_STREAM_PARALLEL_MIN_BATCH = 16



def to_array(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
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
            return to_array(image, resolution, channels), size
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


def load_files(paths: list[str], labels: list[int] | None, class_names: list[str], resolution: int,
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
    stream = ImageStream(len(kept_paths), (channels, resolution, resolution),
                     _FileStream(kept_paths, resolution, channels))
    source = f"folder {describe} ({len(keep)} images{n_classes}{skip_note}, streamed from disk)"
    return ImageData(None, label_tensor, class_names, source, skipped, native, "resize", _stream=stream)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
