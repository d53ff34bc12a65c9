"""`evaluate()`: score uint8 samples against a reference, with the provenance that makes the numbers comparable.

One call extracts features of the generated images (and of the reference, unless cached), computes the
requested metrics and returns a flat dict of fixed keys (`fd_fmnist`, `kid_fmnist`, `kid_fmnist_std`, ... or
`fid`, `kid`, `is`, ... for Inception) plus one "provenance" entry: what was compared with what, how, and with
which weights. Generated images are brought back to the reference's native geometry with
`sagan.data.undo_fit` before any extractor sees them, so a 32x32 generator trained on padded 28x28 data is
scored on exactly the pixels it was asked to model.

References come from sagan.metrics.reference; `sagan.metrics.targets.load_samples()` turns an evaluation target
(run folder, checkpoint, image folder, .npz) into uint8 images.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from sagan.errors import ConfigError, SaganError, did_you_mean
from sagan.metrics import cache as stats_cache
from sagan.metrics import maths
from sagan.metrics.extractors import DEFAULT_FOR_DATASET, FeatureExtractor, create_extractor
from sagan.metrics.reference import Reference, canonical_dataset, load_reference, match_geometry
from sagan.version import __version__

METRICS = ("fd", "kid", "is", "pr", "dc")
_METRIC_ALIASES = {
    "fid": "fd", "kd": "kid", "isc": "is", "inception-score": "is", "prc": "pr", "precision": "pr",
    "recall": "pr", "density": "dc", "coverage": "dc", "prdc": "dc",
}  # fmt: skip
PR_K, DC_K = 3, 5  # Kynkaanniemi et al. 2019 and Naeem et al. 2020
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS = 100, 1000, 10
REFERENCE_SUBSET_SEED = 0  # a fixed subset of a large reference split, whatever the generation seed


def parse_metrics(spec: str | Sequence[str]) -> tuple[str, ...]:
    """'fd,kid,is,pr' (or a list) -> canonical metric names in a fixed order; aliases like 'fid' accepted."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            chosen.update(METRICS)
            continue
        name = _METRIC_ALIASES.get(name, name)
        if name not in METRICS:
            choices = METRICS + tuple(_METRIC_ALIASES)
            raise ConfigError(f"unknown metric '{raw.strip()}'{did_you_mean(name, choices)}; "
                              f"use some of {', '.join(METRICS)} (fd: Frechet distance, kid: kernel distance, "
                              "is: Inception/classifier score, pr: precision/recall, dc: density/coverage)")
        chosen.add(name)
    if not chosen:
        raise ConfigError("no metrics requested; use e.g. --metrics fd,kid,is,pr")
    return tuple(m for m in METRICS if m in chosen)


def metric_keys(metrics: Sequence[str], suffix: str, num_classes: int = 0) -> list[str]:
    """The flat result keys that `evaluate` fills for these metrics and extractor suffix."""
    keys: list[str] = []
    for m in metrics:
        if m == "fd":
            keys.append("fid" if suffix == "" else f"fd{suffix}")
        elif m == "kid":
            keys += [f"kid{suffix}", f"kid{suffix}_std"]
        elif m == "is":
            keys += [f"is{suffix}", f"is{suffix}_std"]
        elif m == "pr":
            keys += [f"precision{suffix}", f"recall{suffix}"]
        elif m == "dc":
            keys += [f"density{suffix}", f"coverage{suffix}"]
    if num_classes:
        keys += [f"class_frac{suffix}_{i}" for i in range(num_classes)] + [f"class_frac{suffix}_min"]
    return keys


# ----------------------------------------------------------------------------------------------------------
# evaluate


_EXTRACTOR_MEMO: dict[tuple, FeatureExtractor] = {}


def default_extractor(against: str) -> str:
    """The extractor used for a reference when none is named: the data set's own, else "inception"."""
    return DEFAULT_FOR_DATASET.get(canonical_dataset(against) or "", "inception")


def get_extractor(name: str, weights: str | None = None, device: str | torch.device = "cpu") -> FeatureExtractor:
    """A (memoised) feature extractor: a trainer that scores every K steps builds it once."""
    key = (name, str(weights), str(device))
    if key not in _EXTRACTOR_MEMO:
        _EXTRACTOR_MEMO[key] = create_extractor(name, weights=weights, device=device)
    return _EXTRACTOR_MEMO[key]


def _reference_features(ref: Reference, ex: FeatureExtractor, ref_num: int | None, cache_dir: str | None,
                        use_cache: bool) -> tuple[dict, dict]:
    """({"features", "mu", "sigma"}, description) of the reference, from the cache when possible."""
    n_all = len(ref.images)
    if ref_num is not None and ref_num < n_all:
        g = torch.Generator().manual_seed(REFERENCE_SUBSET_SEED)
        idx = torch.randperm(n_all, generator=g)[:ref_num].sort().values
        subset = f"random {ref_num} of {n_all} (seed {REFERENCE_SUBSET_SEED})"
    else:
        idx, subset = None, f"all {n_all}"
    c, s = ref.images.shape[1], ref.images.shape[-1]
    description = {
        "dataset": ref.dataset, "split": ref.split, "count": len(idx) if idx is not None else n_all,
        "subset": subset, "size": s, "channels": c, "identity": ref.identity,
        **ex.describe(), "preprocessing": ex.preprocessing(s, c),
    }  # fmt: skip
    t0 = time.perf_counter()
    entry = stats_cache.load_reference(description, cache_dir) if use_cache else None
    hit = entry is not None
    if entry is None:
        images = ref.images if idx is None else ref.images[idx]
        ex.check_input(images)
        feats, _ = ex.extract(images)
        entry = {"features": feats.numpy(), **maths.feature_statistics(feats)}
        if use_cache:
            stats_cache.save_reference(description, entry, cache_dir)
    info = {
        "reference_cache": str(stats_cache.cache_path(description, cache_dir)) if use_cache else None,
        "reference_cache_hit": hit,
        "reference_subset": subset,
        "reference_count": description["count"],
        "seconds": time.perf_counter() - t0,
    }
    return entry, info


def evaluate(
    fake: torch.Tensor,
    against: str,
    metrics: str | Sequence[str] = METRICS,
    features: str | None = None,
    *,
    split: str | None = None,
    ref_num: int | None = None,
    seed: int = 0,
    root: str | None = None,
    weights: str | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
    device: str | torch.device = "cpu",
    kid_subsets: int = KID_SUBSETS,
    provenance: dict | None = None,
    labels: str | None = None,
    label_column: str | None = None,
    allow_unlabelled: bool = False,
    fake_labels: torch.Tensor | None = None,
) -> dict:
    """Score generated uint8 images (N, C, H, W) against a reference; a flat dict of fixed keys + "provenance".

    against: a data set name ("fashion-mnist", "cifar10", ...; its test split by default), a folder or an .npz.
    metrics: some of "fd", "kid", "is", "pr", "dc" (or "fd,kid,is,pr").
    features: "inception" or "fmnist"; by default the data set's own extractor when it has one (fashion-mnist:
        "fmnist"), Inception otherwise. `weights` overrides the extractor's weights file.
    ref_num: use a fixed random subset of this many reference images (all by default).
    seed: recorded, and seeds the random subsets of KID and the score splits.
    root: where to look for the named data set first (as in `sagan.data.load_data`).
    provenance: extra fields for the record (target, checkpoint, step, ema, ...), merged in.
    labels, label_column, allow_unlabelled: a labels CSV for a reference folder (sagan.data.labels); with
        features="classifier" a small CNN is trained on the reference's labels (sagan.metrics.classifier), and
        the record gains the class shares against the real ones and the real-vs-real floor (provenance "floor").
    fake_labels: the classes the images were generated for (N,); with a classifier of as many classes, the
        record gains class_match, the share of images the classifier puts in their own class.
    """
    t_start = time.perf_counter()
    if not isinstance(fake, torch.Tensor) or fake.dtype != torch.uint8 or fake.dim() != 4:
        raise SaganError(f"evaluate expects uint8 images (N, C, H, W), got {getattr(fake, 'dtype', type(fake))} "
                         f"{tuple(getattr(fake, 'shape', ()))}; use sagan.data.to_uint8 on [-1, 1] floats")
    metrics = parse_metrics(metrics)
    fake = fake.cpu()
    ref = load_reference(against, fake.shape[-1], split, root=root, labels=labels, label_column=label_column,
                         allow_unlabelled=allow_unlabelled)
    fake_eval, resize_note = match_geometry(fake, ref)
    if (features or "").strip().lower() == "classifier":
        from sagan.metrics.classifier import classifier_extractor

        ex = classifier_extractor(ref, cache_dir=cache_dir, use_cache=use_cache, device=device)
    else:
        ex = get_extractor(features or default_extractor(against), weights, device)

    timings: dict[str, float] = {}
    entry, ref_info = _reference_features(ref, ex, ref_num, cache_dir, use_cache)
    timings["reference_features"] = ref_info.pop("seconds")
    t0 = time.perf_counter()
    fake_feats, fake_logits = ex.extract(fake_eval)
    timings["generated_features"] = time.perf_counter() - t0
    real_feats = torch.from_numpy(entry["features"])
    n_fake, n_real = len(fake_feats), len(real_feats)

    scores: dict[str, float] = {}
    how: dict[str, str] = {}
    sfx = ex.suffix
    vs = f"{n_fake} gen vs {n_real} {Path(ref.dataset).name} {ref.split}"
    space = f"{ex.name} {ex.feature_layer}"
    kid_size = min(KID_SUBSET_SIZE, n_fake, n_real)
    settings: dict[str, object] = {}
    for m in metrics:
        t0 = time.perf_counter()
        if m == "fd":
            key = "fid" if sfx == "" else f"fd{sfx}"
            if n_fake < 2:
                raise SaganError("the Frechet distance needs at least 2 generated images")
            scores[key] = maths.frechet_distance_from_stats(entry, maths.feature_statistics(fake_feats))
            how[key] = f"Frechet distance, {space}, {vs}"
        elif m == "kid":
            if kid_size < 2:
                raise SaganError("KID needs at least 2 generated and 2 reference images")
            mean, std = maths.kernel_distance(real_feats, fake_feats, kid_subsets, kid_size, seed)
            scores[f"kid{sfx}"], scores[f"kid{sfx}_std"] = mean, std
            how[f"kid{sfx}"] = f"unbiased MMD^2, cubic kernel, {kid_subsets} subsets of {kid_size}, {space}, {vs}"
            how[f"kid{sfx}_std"] = f"std of kid{sfx} over its {kid_subsets} subsets"
            settings.update(kid_subsets=kid_subsets, kid_subset_size=kid_size, kid_kernel="(x.y/D + 1)^3")
        elif m == "is":
            splits = min(IS_SPLITS, n_fake)
            mean, std = maths.classifier_score(fake_logits, splits, seed)
            scores[f"is{sfx}"], scores[f"is{sfx}_std"] = mean, std
            what = "Inception Score" if sfx == "" else f"classifier score (IS of {ex.name} logits)"
            how[f"is{sfx}"] = f"{what}, {splits} splits of {n_fake} gen"
            how[f"is{sfx}_std"] = f"std of is{sfx} over its {splits} splits"
            settings["is_splits"] = splits
        elif m == "pr":
            p, r = maths.precision_recall(real_feats, fake_feats, k=PR_K, device=device)
            scores[f"precision{sfx}"], scores[f"recall{sfx}"] = p, r
            how[f"precision{sfx}"] = f"Kynkaanniemi 2019, k={PR_K}, {space}, {vs}"
            how[f"recall{sfx}"] = f"Kynkaanniemi 2019, k={PR_K}, {space}, {vs}"
            settings["pr_k"] = PR_K
        elif m == "dc":
            d, c = maths.density_coverage(real_feats, fake_feats, k=DC_K, device=device)
            scores[f"density{sfx}"], scores[f"coverage{sfx}"] = d, c
            how[f"density{sfx}"] = f"Naeem 2020, k={DC_K}, {space}, {vs}"
            how[f"coverage{sfx}"] = f"Naeem 2020, k={DC_K}, {space}, {vs}"
            settings["dc_k"] = DC_K
        timings[m] = time.perf_counter() - t0
    class_names = list(ex.class_names)
    if class_names:
        who = _classifier_name(ex.name)
        fractions = maths.class_fractions(fake_logits)
        for i, f in enumerate(fractions):
            scores[f"class_frac{sfx}_{i}"] = float(f)
            how[f"class_frac{sfx}_{i}"] = f"share of generated images the {who} calls '{class_names[i]}'"
        scores[f"class_frac{sfx}_min"] = float(fractions.min())
        even = 1 / len(class_names)
        how[f"class_frac{sfx}_min"] = f"smallest per-class share ({len(class_names)} classes; even = {even:.3f})"
        if getattr(ex, "real_shares", None) is not None:  # the classifier knows the reference's label shares
            from sagan.metrics.floor import class_share_scores

            scores.update(class_share_scores(fractions, ex.real_shares, sfx))
            how[f"class_tv{sfx}"] = "total variation between generated class shares and the real label shares"
            how[f"class_ratio{sfx}_min"] = "smallest ratio of a class's generated share to its real share"
        if fake_labels is not None and len(fake_labels) == n_fake and int(fake_labels.max()) < len(class_names):
            from sagan.metrics.conditional import class_match

            scores[f"class_match{sfx}"] = class_match(fake_logits, fake_labels)
            how[f"class_match{sfx}"] = f"share of generated images the {who} puts in the class they were generated for"
    timings["total"] = time.perf_counter() - t_start

    import torch_fidelity

    prov = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **ex.describe(),
        "reference": against,
        "reference_dataset": ref.dataset,
        "reference_split": ref.split,
        "reference_source": ref.source,
        **ref_info,
        "generated_count": n_fake,
        "generated_shape": list(fake.shape[1:]),
        "evaluated_shape": list(fake_eval.shape[1:]),
        "seed": seed,
        "resize": {"generated_to_reference": resize_note, "extractor": ex.preprocessing(fake_eval.shape[-1],
                                                                                           fake_eval.shape[1])},
        "class_names": class_names or None,
        "metric_settings": settings,
        "metrics": how,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "versions": {"sagan": __version__, "torch": torch.__version__,
                     "torch_fidelity": torch_fidelity.__version__},
        "target": None, "target_kind": "tensor", "checkpoint": None, "step": None, "ema": None,
    }  # fmt: skip
    if hasattr(ex, "provenance"):  # a trained extractor's own record: cache use, training time, the floor
        prov.update(ex.provenance())
    prov.update(provenance or {})
    return {**scores, "provenance": prov}


def evaluate_generator(
    generator: torch.nn.Module,
    against: str,
    num: int = 2000,
    seed: int = 0,
    metrics: str | Sequence[str] = METRICS,
    features: str | None = None,
    *,
    data_root: str | None = None,
    ref_num: int | None = None,
    batch_size: int = 256,
    step: int | None = None,
    ema: bool | None = None,
    checkpoint: str | None = None,
    labels: str | None = None,
    label_column: str | None = None,
    allow_unlabelled: bool = False,
) -> dict:
    """Sample `num` images of an in-memory generator (seeded) and `evaluate` them; what a trainer calls.
    `labels`, `label_column`, `allow_unlabelled`: a labels CSV for a reference folder, as `evaluate` takes them.

    Features are computed on the generator's device; the reference features are cached on disk and the
    extractor is kept in memory, so repeated calls pay for sampling, generated features and the metrics only.
    """
    from sagan.metrics.conditional import generated_labels
    from sagan.sampling import generate

    options = {"labels": labels, "label_column": label_column, "allow_unlabelled": allow_unlabelled}
    wanted, how = generated_labels(generator.num_classes, num, seed, against, generator.resolution, root=data_root,
                                   **options)
    was_training = generator.training
    generator.eval()
    t0 = time.perf_counter()
    try:
        images = generate(generator, num, seed=seed, batch_size=batch_size, labels=wanted)
    finally:
        generator.train(was_training)
    device = next(generator.parameters()).device
    prov = {"target": "generator in memory", "target_kind": "generator", "checkpoint": checkpoint, "step": step,
            "ema": ema, "generation_seconds": round(time.perf_counter() - t0, 3), "generated_labels": how}
    return evaluate(images, against, metrics, features, seed=seed, root=data_root, ref_num=ref_num, device=device,
                    provenance=prov, fake_labels=wanted, **options)


def _classifier_name(extractor: str) -> str:
    """'the fmnist classifier', 'the classifier': how the score descriptions name a classifier extractor."""
    return "classifier" if extractor == "classifier" else f"{extractor} classifier"


def scores_only(result: dict) -> dict[str, float]:
    """The flat numbers of an `evaluate` result, without its provenance (what a trainer logs)."""
    return {k: v for k, v in result.items() if k != "provenance"}


def to_records(result: dict) -> list[dict]:
    """One self-contained JSON record per number: metric, value, how it was obtained, and the provenance."""
    prov = {k: v for k, v in result["provenance"].items() if k != "metrics"}
    how = result["provenance"].get("metrics", {})
    return [{"metric": k, "value": v, "how": how.get(k, ""), **prov} for k, v in scores_only(result).items()]
