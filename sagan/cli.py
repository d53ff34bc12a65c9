"""The `sagan` command: a thin skin over the library.

Each subcommand lives in `sagan/commands/<name>.py` with `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from sagan.errors import SaganError

COMMANDS = {
    "models": "list the registered models with their sizes and attention placement",
    "train": "train a GAN on a data set or an image folder",
    "sample": "draw samples from a run or checkpoint",
    "eval": "score samples against a reference data set",
    "attention": "draw the attention maps of a generator or discriminator",
    "report": "write a self-contained HTML report of a run",
    "study": "compare arms (attention, spectral norm, TTUR, ...) over seeds at an equal budget",
    "explore": "write an HTML page to point at any pixel and see where G and D attend",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagan",
                                     description="Self-Attention GANs: train, sample, score, look inside.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        try:
            module = importlib.import_module(f"sagan.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sagan.commands.{name}":
                raise
            continue  # a subcommand not built yet
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"sagan: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # users see the message, not our source lines
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except SaganError as exc:
        if args.debug:
            raise
        print(f"sagan {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"sagan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
