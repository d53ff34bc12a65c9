"""`sagan attention TARGET --out maps.png`: where chosen query points attend, in every attention layer."""

from __future__ import annotations

import argparse
import sys

from sagan.errors import ConfigError, SaganError

EXAMPLES = """examples:
  sagan attention runs/fmnist --out maps.png                 # a generated image, a 3x3 grid of query points
  sagan attention runs/fmnist --out maps.png --points 8,8 24,24 16,4 --seed 3 --class Sneaker
  sagan attention runs/fmnist --out real.png --image shoe.png  # a real image through D's attention
  sagan attention runs/fmnist/generator.safetensors --out g.png --grid 4 --num 3

Points are x,y in image pixels (0,0 is the top-left corner). Each query point is mapped to the feature-map
cell that covers it; its map (keys at half the feature resolution, as SAGAN max-pools keys) is upsampled
onto the image. Each map is stretched to its own range; "peak Nx uniform" says how concentrated it is.
Points on a plain background see the same features, so they attend alike; put points on the object to
compare its parts. When every point shares one focus, --relative shows what is specific to each.
Python: sagan.viz.attention_study(...) or generator_attention / discriminator_attention return the tensors.
"""


def _point(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a query point is x,y in image pixels, e.g. 8,24; got {text!r}") from None
    return x, y


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `sagan attention`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("target", help="run folder, checkpoint (.pt) or exported generator (.safetensors)")
    parser.add_argument("--out", default="attention.png", help="PNG to write (default: %(default)s)")
    parser.add_argument("--points", nargs="+", type=_point, metavar="X,Y",
                        help="query points in image pixels (default: a --grid of points)")
    parser.add_argument("--grid", type=int, default=3, metavar="N",
                        help="without --points: an N x N grid of query points (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="latent seed of the generated images (default: 0)")
    parser.add_argument("--class", dest="class_index", metavar="NAME|K",
                        help="class to generate, by name or index (conditional models)")
    parser.add_argument("--num", type=int, default=1, help="generated images to show (default: %(default)s)")
    parser.add_argument("--image", metavar="FILE", help="a real image to pass through D instead of a generated one")
    parser.add_argument("--net", choices=("g", "d", "both"), default=None,
                        help="whose attention: G, D or both (default: both for a generated image when the target "
                             "has D, D for --image, G for an exported generator)")
    parser.add_argument("--relative", action="store_true",
                        help="draw each map divided by the mean map of all the query points: what is specific to "
                             "each query when they share a common focus")
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator rather than G_ema")
    parser.add_argument("--device", default="cpu", help="device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    """Compute the maps, draw them, write the PNG."""
    from sagan.viz import attention_study, draw_attention, query_spread

    if args.grid < 1 or args.grid > 10:
        raise ConfigError(f"--grid must be between 1 and 10, got {args.grid}")
    if not 1 <= args.num <= 16:
        raise ConfigError(f"--num must be between 1 and 16, got {args.num}")
    if args.points and len(args.points) > 16:
        raise ConfigError(f"at most 16 query points fit in one figure, got {len(args.points)}")
    if args.relative and args.points is not None and len(args.points) < 2:
        raise ConfigError("--relative compares query points with each other: give at least two")
    nets = None if args.net is None else {"g": ("G",), "d": ("D",), "both": ("G", "D")}[args.net]
    study = attention_study(args.target, points=args.points or (), grid=args.grid, seed=args.seed,
                            class_index=args.class_index, num=args.num, image=args.image, nets=nets,
                            ema=not args.no_ema, device=args.device)
    try:
        draw_attention(study.images, study.layers, study.points, args.out, title=study.title(),
                       relative=args.relative, image_labels=study.image_labels)
    except OSError as exc:
        raise SaganError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote {args.out}: {study.title()}", file=sys.stderr)
    for m in study.layers:
        print(f"  {m.name}: {m.feature_size}x{m.feature_size} features, {len(study.points)} query points; their maps "
              f"differ by {query_spread(m.maps):.3f} on average (total variation: 0 alike, 1 disjoint)",
              file=sys.stderr)
    return 0
