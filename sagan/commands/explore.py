"""`sagan explore TARGET`: one self-contained HTML page to point at any pixel and see where G and D attend."""

from __future__ import annotations

import argparse
import sys

from sagan.errors import ConfigError

EXAMPLES = """examples:
  sagan explore runs/fmnist                          # writes runs/fmnist/explore.html (sagan report links to it)
  sagan explore runs/fmnist --num 8 --class Sneaker --seed 3 --out shoes.html
  sagan explore runs/fmnist/generator.safetensors    # G's attention only (an exported generator has no D)

The page holds every attention row of every attention layer: hover over (or click, to pin) any pixel of an
image to see where that query attends in each layer of G and D. Panels: the generated images (G's and D's
layers), real images of the run's data through D (when the data is on this machine), and strips between two
latents and, for a conditional model, between two classes. Rows are stored as 8-bit codes with one scale per
row; the page states the largest error this makes.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `sagan explore`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("target", help="run folder, checkpoint (.pt) or exported generator (.safetensors)")
    parser.add_argument("--out", metavar="FILE.html",
                        help="page to write (default: RUN/explore.html for a run folder, else ./explore.html)")
    parser.add_argument("--num", type=int, default=16, help="generated (and real) images (default: %(default)s)")
    parser.add_argument("--class", dest="class_index", metavar="NAME|K",
                        help="generate only this class, by name or index (default: spread over the classes)")
    parser.add_argument("--seed", type=int, default=0, help="latent seed (default: 0)")
    parser.add_argument("--frames", type=int, default=8,
                        help="images per interpolation strip, 0 for none (default: %(default)s)")
    parser.add_argument("--max-mb", type=float, default=20.0, help="refuse to write a larger page (default: 20)")
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator rather than G_ema")
    parser.add_argument("--device", default="cpu", help="device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    """Compute every attention row, pack them, write the page."""
    from sagan.explore import build_explorer

    if not 1 <= args.num <= 64:
        raise ConfigError(f"--num must be between 1 and 64, got {args.num}")
    if args.frames != 0 and not 2 <= args.frames <= 32:
        raise ConfigError(f"--frames must be 0 or between 2 and 32, got {args.frames}")
    out, meta = build_explorer(args.target, args.out, num=args.num, seed=args.seed, class_index=args.class_index,
                               frames=args.frames, ema=not args.no_ema, device=args.device, max_mb=args.max_mb)
    layers = sorted({layer["name"] for s in meta["sets"] for layer in s["layers"]})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, self-contained): {meta['model']} at step {meta['step']}, "
          f"{'G_ema' if meta['ema'] else 'raw G'}, seed {meta['seed']}; layers {', '.join(layers)}; largest "
          f"quantisation error {meta['max_error']:.2g}", file=sys.stderr)
    for note in meta["notes"]:
        print(f"  {note}", file=sys.stderr)
    return 0
