"""Evaluation targets: what `sagan eval TARGET` can score (run folder, checkpoint, image folder, .npz), as images."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from sagan.errors import DataError
from sagan.metrics.reference import load_image_folder, read_npz_images

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")



def _looks_like_run(path: Path) -> bool:
    if (path / "checkpoints").is_dir() or any((path / n).is_file() for n in ("config.yaml", "config.json")):
        return True
    return any(p.suffix.lower() in CHECKPOINT_SUFFIXES for p in path.iterdir() if p.is_file())


def target_kind(target: str) -> str:
    """'npz', 'images', 'checkpoint' or 'run' for an evaluation target; DataError when it does not exist."""
    path = Path(target).expanduser()
    if path.is_dir():
        return "run" if _looks_like_run(path) else "images"
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "npz"
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:
            return "checkpoint"
        raise DataError(f"{path}: cannot evaluate a '{path.suffix}' file; give a run folder, a checkpoint "
                        f"({', '.join(CHECKPOINT_SUFFIXES)}), a folder of images or an .npz of samples")
    raise DataError(f"no such file or folder: {path.absolute()}")


def load_samples(target: str, num: int | None = None, seed: int = 0, ema: bool = True,
                 device: str | torch.device = "cpu", batch_size: int = 256, against: str | None = None,
                 reference: dict | None = None) -> tuple[torch.Tensor, dict]:
    """uint8 images (N, C, H, W) of an evaluation target and the provenance fields that describe them.

    A run folder or checkpoint is sampled (`num` images, default 10,000, with `seed`; G_ema when `ema` and
    the checkpoint has it); a folder of images or an .npz is read (its first `num` images, all by default).
    The provenance has "target", "target_kind", "checkpoint", "step", "ema", "model" and "data" (the training
    data spec, where known). A conditional model draws its classes in the label shares of `against` (with
    `reference`: split, root and labels-file options of load_reference) where it has labels for as many classes
    (sagan.metrics.conditional); the provenance then says so under "generated_labels", and "labels" holds the
    classes drawn (a tensor, for evaluate's fake_labels; pop it before writing the provenance).
    """
    kind = target_kind(target)
    path = Path(target).expanduser()
    info: dict = {"target": str(path.resolve()), "target_kind": kind, "checkpoint": None, "step": None,
                  "ema": None, "model": None, "data": None}
    if kind in ("run", "checkpoint"):
        from sagan.checkpoint import load_generator
        from sagan.metrics.conditional import generated_labels
        from sagan.sampling import generate

        generator, meta = load_generator(str(path), ema=ema, map_location=device)
        n = 10_000 if num is None else num
        wanted, how = generated_labels(generator.num_classes, n, seed, against, generator.resolution,
                                       class_names=meta.get("class_names"), **(reference or {}))
        t0 = time.perf_counter()
        images = generate(generator, n, seed=seed, batch_size=batch_size, labels=wanted)
        info.update(checkpoint=str(meta.get("path")), step=meta.get("step"), ema=bool(meta.get("ema")),
                    model=(meta.get("model") or {}).get("name"), data=meta.get("data"),
                    generation_seconds=round(time.perf_counter() - t0, 3), generated_labels=how, labels=wanted,
                    generated_class_names=meta.get("class_names") or None)
        return images.cpu(), info
    images = read_npz_images(path) if kind == "npz" else load_image_folder(path)[0]  # labels unused here
    if num is not None:
        if num > len(images):
            raise DataError(f"{path} holds {len(images)} images, fewer than --num {num}; lower --num")
        images = images[:num]
    return images, info
