"""`sagan sample`: images from a run folder, checkpoint or exported generator, with no data set at hand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from sagan.checkpoint import load_generator
from sagan.data.run import class_name, resolve_class
from sagan.errors import ConfigError, SaganError
from sagan.sampling import generate, sample_labels
from sagan.viz import image_grid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="run folder, checkpoint (.pt) or exported generator (.safetensors)")
    parser.add_argument("--num", type=int, default=64, help="number of samples")
    parser.add_argument("--out", help="folder of PNGs, or FILE.npz (uint8 NHWC array 'images', and 'labels' and "
                                      "'class_names' for a conditional model)")
    parser.add_argument("--grid", help="also write the first 64 samples (with --per-class: all) as one grid PNG")
    parser.add_argument("--class", dest="class_index", metavar="NAME|K",
                        help="class to draw, by name or index (conditional models)")
    parser.add_argument("--per-class", type=int, metavar="N",
                        help="N samples of every class, class by class, each class from the same N latents; the "
                             "grid gets one row per class, named on its left (conditional models; replaces --num "
                             "and --class)")
    parser.add_argument("--truncation", type=float, help="redraw latent entries with |z| above this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator instead of G_ema")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise ConfigError(f"--num must be positive, got {args.num}")
    if not args.out and not args.grid:
        raise ConfigError("say where to write: --out DIR|FILE.npz and/or --grid FILE.png")
    if args.per_class is not None and args.per_class < 1:
        raise ConfigError(f"--per-class must be positive, got {args.per_class}")
    if args.per_class is not None and args.class_index is not None:
        raise ConfigError("--per-class draws every class; drop --class (or drop --per-class for one class)")
    generator, info = load_generator(args.target, ema=not args.no_ema, map_location=args.device)
    num_classes, names = info["model"]["num_classes"], info.get("class_names")
    if args.per_class and not num_classes:
        raise ConfigError(f"--per-class needs a conditional model; {info['path']} is unconditional")
    chosen = resolve_class(args.class_index, num_classes, names, what=info["path"])
    classes = range(num_classes) if args.per_class else [chosen]
    per_call = args.per_class or args.num
    try:
        images = torch.cat([generate(generator, per_call, seed=args.seed, batch_size=args.batch_size,
                                     class_index=k, truncation=args.truncation) for k in classes])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.per_class:
        args.num = len(images)
        labels = torch.arange(num_classes).repeat_interleave(args.per_class)
    else:
        labels = sample_labels(args.num, num_classes, chosen)
    try:
        if args.out and args.out.endswith(".npz"):
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            arrays = {"images": images.permute(0, 2, 3, 1).numpy()}
            if labels is not None:
                arrays["labels"] = labels.numpy()
                if names:
                    arrays["class_names"] = np.array(names)
            np.savez_compressed(args.out, **arrays)
        elif args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                save_image(image.float() / 255, out / f"{i:06d}.png")
        if args.grid:
            Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
            if args.per_class:
                row_names = [class_name(k, names) for k in range(num_classes)]
                Path(args.grid).write_bytes(image_grid(images, nrow=args.per_class, row_names=row_names))
            else:
                save_image(images[:64].float() / 255, args.grid, nrow=8, padding=1)
    except OSError as exc:
        raise SaganError(f"cannot write samples: {exc.strerror}: {exc.filename}") from None
    where = " and ".join(p for p in (args.out, args.grid) if p)
    print(f"wrote {args.num} samples to {where} from {info['path']} (step {info['step']}, "
          f"{'G_ema' if info['ema'] else 'G'}, seed {args.seed}"
          + (f", {class_name(chosen, names)} (class {chosen})" if chosen is not None and names else
             f", class {chosen}" if chosen is not None else "")
          + (f", {args.per_class} per class for {num_classes} classes" if args.per_class else "")
          + (f": {', '.join(names)}" if args.per_class and names else "")
          + (f", truncation {args.truncation}" if args.truncation else "") + ")", file=sys.stderr)
    return 0
