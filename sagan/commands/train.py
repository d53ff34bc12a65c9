"""`sagan train`: every TrainConfig field is an option; --config FILE and --set key=value override too."""

from __future__ import annotations

import argparse
import json
import os
import sys

from sagan.config import FIELDS, TrainConfig, apply_overrides, load_yaml, parse_sets

# Options shown with their own flag; every other field is reachable through --set or --config.
_FLAGS = {
    "model": "model name (see `sagan models`)",
    "data": "fashion-mnist, mnist, cifar10, celeba, or a folder of images",
    "data_root": "where named data sets live (default: search the usual places, $SAGAN_DATA)",
    "labels": "CSV of labels for a folder's images: a column of paths relative to --data, label columns",
    "label_column": "the CSV's column of labels (default: label, class or category, else the first after the paths)",
    "out": "run folder: config, metrics.jsonl, samples, checkpoints",
    "seed": "random seed",
    "batch_size": "images per D step",
    "lr_g": "generator learning rate (TTUR default 1e-4)",
    "lr_d": "discriminator learning rate (TTUR default 4e-4)",
    "n_dis": "D steps per G step",
    "loss": "hinge, ns (non-saturating) or rpgan (relativistic pairing, R3GAN's; pair with --set r1_gamma=...)",
    "precision": "auto, bf16 or fp32 (auto: bf16 where the CPU/GPU has fast bf16)",
    "device": "auto, cpu, cuda, cuda:N",
    "threads": "CPU threads (0: PyTorch's default)",
    "max_steps": "generator steps to train for",
    "max_minutes": "wall-clock budget in minutes (0: none)",
    "sample_every": "write a sample grid from G_ema every K steps",
    "checkpoint_every": "write a checkpoint every K steps",
    "eval_every": "score G_ema every K steps (0: never)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for name, help_text in _FLAGS.items():
        default = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                            help=f"{help_text} (default: {default})")
    parser.add_argument("--config", help="YAML file of config overrides")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set ema_decay=0.9999 --set model_args.g_ch=64")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile G and D")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="deterministic algorithms (bitwise-exact resume in fp32)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    parser.add_argument("--unconditional", dest="conditional", action="store_false", default=None,
                        help="ignore the data's class labels")
    parser.add_argument("--allow-unlabelled", dest="allow_unlabelled", action="store_true", default=None,
                        help="with --labels: train on the labelled images only, leaving out images without a row "
                             "or a label and rows without an image (default: such a mismatch is an error)")
    parser.add_argument("--resume", default=None, metavar="RUN",
                        help="resume this run folder (runs resume from --out by default when it holds checkpoints)")
    parser.add_argument("--fresh", action="store_true", help="do not resume even if --out holds checkpoints")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- --config file <- flags <- --set."""
    overrides: dict = {}
    if args.config:
        overrides.update(load_yaml(args.config))
        if args.data is not None and args.data != overrides.get("data"):
            # The file's labels describe the file's data; another --data brings its own (or none).
            overrides.pop("labels", None)
            overrides.pop("label_column", None)
    for name in list(_FLAGS) + ["compile", "deterministic", "channels_last", "conditional", "allow_unlabelled"]:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if args.resume:
        overrides["out"], overrides["resume"] = args.resume, True
    if args.fresh:
        overrides["resume"] = False
    overrides.update(parse_sets(args.set))
    return apply_overrides(TrainConfig(), overrides)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.dry_run:
        from sagan.models import model_config
        from sagan.regularize import check_model

        check_model(cfg, model_config(cfg.model, **cfg.model_args))  # what the run itself would refuse first
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from sagan.train import Interrupted, train

    try:
        summary = train(cfg)
    except Interrupted as exc:
        return exc.exit_code  # 130 after SIGINT, 143 after SIGTERM, as shells report them
    if os.environ.get("RANK", "0") == "0":
        print(f"trained {summary['steps']} steps ({summary['steps_this_session']} this session) in "
              f"{summary['minutes']} min at {summary['images_per_sec']} real images/s (wall clock, all D steps, "
              f"{summary['precision']} on {summary['device']}, {summary['world_size']} process(es)); "
              f"checkpoint {summary['checkpoint']}", file=sys.stderr)
    return 0


assert set(_FLAGS) <= set(FIELDS)
