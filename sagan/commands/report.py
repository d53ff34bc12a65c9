"""`sagan report RUN`: one self-contained HTML page about a training run."""

from __future__ import annotations

import argparse
import sys

from sagan.errors import ConfigError

EXAMPLES = """examples:
  sagan report runs/fmnist                     # writes runs/fmnist/report.html
  sagan report runs/fmnist --out fmnist.html --samples 12 --seed 3

The page embeds every image (base64 data URIs) and needs no network: samples over training, loss, D output,
gamma, sigma, gradient-norm and diversity curves, collapse alarms, attention maps of the newest checkpoint,
evaluation scores with their provenance (metrics.jsonl and the eval-*.json records `sagan eval` writes
into the run folder), and the config.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `sagan report`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("run", help="a run folder written by `sagan train --out RUN`")
    parser.add_argument("--out", metavar="FILE", help="HTML file to write (default: RUN/report.html)")
    parser.add_argument("--samples", type=int, default=8, metavar="N",
                        help="sample grids from over training to show (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images in the attention figure")
    parser.add_argument("--grid", type=int, default=3, metavar="N",
                        help="N x N query points in the attention figure (default: %(default)s)")
    parser.add_argument("--no-attention", action="store_true", help="leave out the attention maps")


def run(args: argparse.Namespace) -> int:
    """Write the page and say where it is."""
    from sagan.report import build_report

    if args.samples < 2:
        raise ConfigError(f"--samples must be at least 2, got {args.samples}")
    if not 1 <= args.grid <= 10:
        raise ConfigError(f"--grid must be between 1 and 10, got {args.grid}")
    out = build_report(args.run, args.out, attention=not args.no_attention, max_grids=args.samples,
                       seed=args.seed, grid=args.grid)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, self-contained)", file=sys.stderr)
    return 0
