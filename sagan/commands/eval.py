"""`sagan eval TARGET --against REF`: score samples, print a short table, write the JSON record."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from sagan.errors import ConfigError

EXAMPLES = """examples:
  sagan eval runs/fmnist        # a run: 10,000 samples of G_ema against the data it was trained on
  sagan eval samples.npz --against fashion-mnist --num 10000 --metrics fd,kid,is,pr
  sagan eval samples/ --against cifar10 --inception-weights weights-inception-2015-12-05-6726825d.pth
  sagan eval runs/emoji --against emoji64/ --labels emoji64/labels.csv --label-column category --features classifier

Fashion-MNIST is scored with the shipped classifier by default (fd_fmnist, kid_fmnist, ...; never "fid");
other data with Inception-v3 (fid, kid, is, ...). Reference features are cached under $SAGAN_CACHE/stats.
--features classifier trains a small CNN on the reference's labels (offline; cached under
$SAGAN_CACHE/classifiers) and prints the real-vs-real floor beside the scores (fd_classifier, ...).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `sagan eval`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("target", help="a run folder, a checkpoint, a folder of images or an .npz of samples")
    parser.add_argument("--against", metavar="REF",
                        help="reference: a data set name (its test split unless --split), a folder or an .npz; "
                             "default for a run or checkpoint: the data it was trained on")
    parser.add_argument("--metrics", default="fd,kid,is,pr,dc",
                        help="comma-separated: fd (Frechet distance), kid, is (Inception/classifier score), "
                             "pr (precision/recall), dc (density/coverage), or all (default: %(default)s)")
    parser.add_argument("--num", type=int, default=None,
                        help="generated images to score (default: 10000 from a generator, all from a file)")
    parser.add_argument("--features", metavar="NAME", default=None,
                        help="feature extractor: inception, fmnist, or classifier (a small CNN trained on the "
                             "reference's labels) (default: fmnist for fashion-mnist, inception otherwise)")
    parser.add_argument("--labels", metavar="FILE.csv", default=None,
                        help="labels of the reference folder's images: a column of paths relative to it, label "
                             "columns (default: labels from its sub-folders)")
    parser.add_argument("--label-column", metavar="NAME", default=None,
                        help="the labels file's column of labels (default: label, class or category, else the "
                             "first after the paths)")
    parser.add_argument("--allow-unlabelled", action="store_true",
                        help="with --labels: use only the reference images that have a row and a label")
    parser.add_argument("--inception-weights", metavar="FILE", default=None,
                        help="the 2015-12-05 Inception-v3 weights (torch-fidelity's .pth) for offline use")
    parser.add_argument("--classifier-weights", metavar="FILE", default=None,
                        help="other weights for the fmnist extractor (default: the ones shipped with sagan)")
    parser.add_argument("--split", default=None, help="reference split (default: test for data sets)")
    parser.add_argument("--ref-num", type=int, default=None,
                        help="score against a fixed random subset of this many reference images (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed, also seeds KID subsets (default: 0)")
    parser.add_argument("--no-ema", action="store_true", help="score the raw generator rather than G_ema")
    parser.add_argument("--device", default="cpu", help="device for generation and features (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=256, help="generation batch size (default: 256)")
    parser.add_argument("--cache-dir", default=None,
                        help="reference statistics cache (default: $SAGAN_CACHE/stats or ~/.cache/sagan/stats); "
                             "trained classifiers go to its classifiers/ sub-folder")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write cached reference features")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="JSON output (default: next to the target, TARGET.eval-REF-EXTRACTOR.json)")


def _default_out(target: str, kind: str, against: str, extractor: str) -> Path:
    path = Path(target).expanduser().resolve()
    ref = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(against).stem if Path(against).exists() else against)
    if kind == "run":
        return path / f"eval-{ref}-{extractor}.json"
    stem = path.name if path.is_dir() else path.with_suffix("").name
    return path.parent / f"{stem}.eval-{ref}-{extractor}.json"


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def format_table(result: dict) -> str:
    """The scores as a short table: value (± std where there is one) and how each was obtained."""
    from sagan.metrics import scores_only

    scores, prov = scores_only(result), result["provenance"]
    how = prov.get("metrics", {})
    lines = []
    rows = [k for k in scores if not k.endswith("_std") and "class_frac" not in k]
    width = max((len(k) for k in rows), default=6)
    floor = (prov.get("floor") or {}).get("scores", {})
    for k in rows:
        value = _fmt(scores[k]) + (f" ± {_fmt(scores[k + '_std'])}" if k + "_std" in scores else "")
        beside = (f"floor {_fmt(floor[k])}" if k in floor else "").ljust(17) if floor else ""  # real vs real
        lines.append(f"  {k:<{width}}  {value:<20}  {beside}{how.get(k, '')}")
    fracs = [(k, v) for k, v in scores.items() if "class_frac" in k and not k.endswith("_min")]
    if fracs:
        names = prov.get("class_names") or [k.rsplit("_", 1)[1] for k, _ in fracs]
        mins = [k for k in scores if "class_frac" in k and k.endswith("_min")]
        real = prov.get("real_class_shares")
        lines.append(f"  per-class share of generated images ({prov['extractor']} argmax; "
                     f"min {scores[mins[0]]:.3f}, even {1 / len(fracs):.3f})" + (", against the real share:"
                                                                               if real else ":"))
        lines.append("    " + ", ".join(f"{n} {v:.3f}" + (f"/{real[i]:.3f}" if real else "")
                                        for i, (n, (_, v)) in enumerate(zip(names, fracs))))
    src = prov.get("target") or "tensor"
    step = f", step {prov['step']}" if prov.get("step") is not None else ""
    ema = {True: ", G_ema", False: ", raw G"}.get(prov.get("ema"), "")
    cache = "cached" if prov.get("reference_cache_hit") else "extracted now"
    lines.append(f"  generated: {prov['generated_count']} from {src}{step}{ema} (seed {prov['seed']}); "
                 f"brought to reference: {prov['resize']['generated_to_reference']}")
    if prov.get("generated_labels"):
        lines.append(f"  generated classes: {prov['generated_labels']}")
    lines.append(f"  reference: {prov['reference_source']}, {prov['reference_subset']} ({cache})")
    lines.append(f"  extractor: {prov['extractor']} {prov['feature_layer']}, weights sha256 "
                 f"{prov['extractor_weights_sha256'][:12]}; input: {prov['resize']['extractor']}")
    if "extractor_heldout_accuracy" in prov:
        trained = "cached" if prov.get("extractor_cache_hit") else "trained now"
        lines.append(f"  classifier: held-out accuracy {prov['extractor_heldout_accuracy']:.3f} (class-balanced "
                     f"{prov['extractor_heldout_balanced_accuracy']:.3f}), {trained} "
                     f"({prov['extractor_train_seconds']} s on {prov['extractor_train_threads']} thread(s))")
    if floor:
        lines.append(f"  floor: {prov['floor']['how']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Score TARGET against REF, print the table, write the JSON."""
    from sagan.metrics import evaluate, load_samples, parse_metrics, scores_only, to_records
    from sagan.metrics.evaluation import default_extractor, get_extractor
    from sagan.metrics.targets import target_kind

    metrics = parse_metrics(args.metrics)  # fail on a typo before any slow work
    for name in ("num", "ref_num"):
        value = getattr(args, name)
        if value is not None and value < 2:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 2, got {value}")
    kind = target_kind(args.target)
    if args.against is None and kind in ("npz", "images"):
        raise ConfigError(f"{args.target} holds images: say what to compare them with, e.g. --against fashion-mnist")
    against = args.against
    labels = {"labels": args.labels, "label_column": args.label_column, "allow_unlabelled": args.allow_unlabelled}
    if kind in ("run", "checkpoint") and (against is None or not args.labels):
        from sagan.checkpoint import load_generator
        from sagan.data.run import RunData

        run = RunData.from_info(load_generator(args.target, ema=not args.no_ema)[1])
        against = against or run.data
        if not against:
            raise ConfigError(f"{args.target} does not record its training data; pass --against REF")
        if not args.labels:  # the run's own data with its own labels file, as it trained on it
            labels.update(run.label_options(against))
    _check_paths(against, labels)
    features = args.features.lower() if args.features else None
    weights = _weights_for(features, against, args)
    # Build the extractor before sampling, so missing weights (or labels) fail before generation.
    if features == "classifier":
        from sagan.metrics.classifier import classifier_extractor
        from sagan.metrics.reference import canonical_dataset, load_reference

        if canonical_dataset(against) is None:  # a named set is loaded by evaluate(), at the generated size
            ref = load_reference(against, 0, args.split, **labels)  # a folder is read at its own size
            classifier_extractor(ref, cache_dir=args.cache_dir, use_cache=not args.no_cache, device=args.device)
    else:
        get_extractor(features or default_extractor(against), weights, args.device)
    images, info = load_samples(args.target, num=args.num, seed=args.seed, ema=not args.no_ema,
                                device=args.device, batch_size=args.batch_size, against=against,
                                reference={"split": args.split, **labels})
    result = evaluate(images, against, metrics, features, split=args.split, ref_num=args.ref_num, seed=args.seed,
                      weights=weights, cache_dir=args.cache_dir, fake_labels=info.pop("labels", None),
                      use_cache=not args.no_cache, device=args.device, provenance=info, **labels)
    prov = result["provenance"]
    out = Path(args.out) if args.out else _default_out(args.target, kind, against, prov["extractor"])
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"scores": scores_only(result), "provenance": prov, "records": to_records(result)}
    if prov.get("floor"):
        record["floor"] = prov["floor"]
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"sagan eval: {prov['generated_count']} images vs {against} ({prov['reference_split']})")
    print(format_table(result))
    print(f"  wrote {out}")
    return 0


def _check_paths(against: str, labels: dict) -> None:
    """Every path the command reads exists: checked before any extractor is chosen or built."""
    from sagan.metrics.reference import canonical_dataset

    if canonical_dataset(against) is None and not Path(against).expanduser().exists():
        raise ConfigError(f"the reference {against} does not exist: give an existing folder or .npz of images, "
                          "or a data set name (fashion-mnist, mnist, cifar10, celeba)")
    if labels["labels"] and not Path(labels["labels"]).expanduser().is_file():
        raise ConfigError(f"labels file not found: {Path(labels['labels']).expanduser().absolute()}")


def _weights_for(features: str | None, against: str, args: argparse.Namespace) -> str | None:
    """The weights flag that applies to the extractor that will be used."""
    from sagan.metrics.evaluation import default_extractor

    name = features or default_extractor(against)
    return args.inception_weights if name == "inception" else args.classifier_weights
