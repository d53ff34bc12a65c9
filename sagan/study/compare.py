"""Means, spreads and intervals: each arm's scores over seeds, and each arm against the baseline.

A difference is the mean of arm minus baseline over seeds, with its 95% t interval: paired by seed (scipy's
`ttest_rel`) when both arms finished the same seeds, since runs of one seed share their data order and first
weights; otherwise Welch's (`ttest_ind(equal_var=False)`), which does not assume equal variances. A study makes
many such tests (every arm, every score), so the words are decided by Holm-adjusted p-values over all of them
(family-wise error 5%): only a difference that survives the correction is called better or worse; any other is
"no difference measured". The interval shown is the test's own, unadjusted. Beside each verdict stands the
smallest difference the comparison could detect (80% power, at alpha / number of comparisons, Holm's strictest
step, with the seeds and the spread it had: sagan.study.plan), so "no difference measured" says how big a
difference was ruled out.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from sagan.study.power import POWER, detectable_difference

LEVEL = 0.95
ALPHA = 1 - LEVEL
# headline scores: fd_fmnist, kid, is_classifier, ...; never their spreads (kid_std, is_fmnist_std)
_MAIN = re.compile(r"^(fid|fd|kid|is|precision|recall|density|coverage)(_(?!std$)[a-z0-9]+)?$")
_HIGHER_IS_BETTER = ("is", "precision", "recall", "coverage")
_LOWER_IS_BETTER = ("fid", "fd", "kid")
# Density has no better direction: real against real it is about 1, and above 1 means the samples crowd the
# densest real regions (less variety), below 1 that they stray from them. "Closer to 1" is no sound rule either:
# the real-vs-real value moves with the features and the sample size. So a density difference is stated as
# higher or lower, never better or worse.


def main_metrics(keys: Sequence[str]) -> list[str]:
    """The headline score keys (no *_std, no per-class shares), in the order given."""
    return [k for k in keys if _MAIN.match(k)]


def is_primary(key: str, primary: Sequence[str] | None) -> bool:
    """Whether a score is one of the study's primary scores (eval: {primary: [fd, ...]}; a name matches its own
    key and the key with a feature suffix, "fd" -> fd_classifier); without a list every headline score is."""
    return not primary or any(key == p or key.startswith(p + "_") for p in primary)


def higher_is_better(key: str) -> bool | None:
    """True for is/precision/recall/coverage, False for fid/fd/kid, None for scores with no better side (density)."""
    kind = key.split("_")[0]
    if kind in _HIGHER_IS_BETTER:
        return True
    return False if kind in _LOWER_IS_BETTER else None


def mean_std(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (ddof 1; None for one value) and count."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else None, "n": int(arr.size)}


def _degenerate(diff: float, level: float, test: str, n: int) -> dict:
    """Every difference the same (no spread): the interval is that difference; p is 1 for 0, else 0."""
    return {"diff": diff, "low": diff, "high": diff, "df": None, "level": level, "p": 1.0 if diff == 0 else 0.0,
            "test": test, "n": n}


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict | None:
    """Welch's t interval of mean(a) - mean(b) and its p-value; None with fewer than 2 values on a side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        return None
    diff = float(a.mean() - b.mean())
    if a.var() == 0 and b.var() == 0:
        return _degenerate(diff, level, "welch", min(a.size, b.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly equal values: scipy warns, the numbers hold
        result = sps.ttest_ind(a, b, equal_var=False)
        ci = result.confidence_interval(level)
    return {"diff": diff, "low": float(ci.low), "high": float(ci.high), "df": float(result.df), "level": level,
            "p": float(result.pvalue), "test": "welch", "n": min(a.size, b.size)}


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict | None:
    """The paired t interval of mean(a - b), a[i] and b[i] from one seed; None with fewer than 2 pairs."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size != b.size:
        raise ValueError("paired samples must have the same length")
    if a.size < 2:
        return None
    d = a - b
    if d.var() == 0:
        return _degenerate(float(d.mean()), level, "paired", a.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ttest_rel(a, b)
        ci = result.confidence_interval(level)
    return {"diff": float(d.mean()), "low": float(ci.low), "high": float(ci.high), "df": float(result.df),
            "level": level, "p": float(result.pvalue), "test": "paired", "n": int(a.size)}


def compare_by_seed(arm: dict[int, float], base: dict[int, float], level: float = LEVEL) -> dict | None:
    """Arm minus baseline from {seed: score}: paired by seed when both have the same seeds, else Welch."""
    if arm.keys() == base.keys():
        seeds = sorted(arm)
        return paired_interval([arm[s] for s in seeds], [base[s] for s in seeds], level)
    return welch_interval(list(arm.values()), list(base.values()), level)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels' multipletests), in the order given."""
    if not pvalues:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(pvalues), alpha=ALPHA, method="holm")[1]]


def verdict(key: str, interval: dict | None, p_adjusted: float | None = None) -> str:
    """The words for a comparison: "no difference measured" unless the difference is significant after the
    correction (`p_adjusted`; without it, unless the interval excludes zero)."""
    if interval is None:
        return "too few runs to compare"
    if p_adjusted is not None:
        if p_adjusted >= ALPHA:
            return "no difference measured"
    elif interval["low"] <= 0 <= interval["high"]:
        return "no difference measured"
    direction = higher_is_better(key)
    if direction is None:
        return "higher than the baseline" if interval["diff"] > 0 else "lower than the baseline"
    better = (interval["diff"] > 0) == direction
    return "better than the baseline" if better else "worse than the baseline"


def _detectable(values: tuple[dict, dict, str], alpha: float) -> float | None:
    """The smallest difference this comparison detects with 80% power at `alpha`, with its runs' spread."""
    mine, theirs, test = values
    arm, base = dict(zip(mine["seeds"], mine["values"])), dict(zip(theirs["seeds"], theirs["values"]))
    if test == "paired":
        seeds = sorted(arm)
        sd = float(np.std([arm[s] - base[s] for s in seeds], ddof=1))
        return detectable_difference(sd, len(seeds), alpha, paired=True, power=POWER)
    pooled = float(np.sqrt((np.var(list(arm.values()), ddof=1) + np.var(list(base.values()), ddof=1)) / 2))
    return detectable_difference(pooled, len(arm), alpha, paired=False, n_other=len(base), power=POWER)


def final_segment(record: dict) -> dict | None:
    done = [s for s in record["segments"] if s["fraction"] == 1.0]
    return done[0] if done else None


def summarise(spec, records: Sequence[dict]) -> dict:
    """Per arm: finished and failed runs, steps, minutes, images/s and every score (mean, std, n) at the full
    budget; the mean of each score at every budget fraction (for curves); and each arm's comparison with the
    baseline, Holm-corrected over every comparison of the study."""
    arms = {}
    for arm in spec.arms:
        mine = [r for r in records if r["arm"] == arm.name]
        done = [(r["seed"], s) for r in mine if not r.get("failed") and (s := final_segment(r)) is not None]
        finals = [s for _, s in done]
        keys = list(finals[0]["scores"]) if finals else []
        entry = {"runs": len(mine), "runs_done": len(finals), "seeds_done": [seed for seed, _ in done],
                 "failed": [{"seed": r["seed"], "reason": r["failed"]} for r in mine if r.get("failed")]}
        if finals:
            for field in ("step", "minutes", "images_per_sec"):
                entry[field] = mean_std([s[field] for s in finals])
            entry["scores"] = {}
            for k in keys:
                pairs = [(seed, s["scores"][k]) for seed, s in done if k in s["scores"]]
                entry["scores"][k] = {**mean_std([v for _, v in pairs]), "values": [v for _, v in pairs],
                                      "seeds": [seed for seed, _ in pairs]}
            entry["cpus"] = sorted({s["cpu"] for s in finals})
            entry["devices"] = sorted({s.get("device") or "cpu" for s in finals})
        curve = {}
        for fraction in spec.fractions:
            # a failed run's early scores stay out: every point of a curve rests on the same runs
            segs = [s for r in mine if not r.get("failed") for s in r["segments"] if s["fraction"] == fraction]
            if segs:
                curve[str(fraction)] = {"minutes": mean_std([s["minutes"] for s in segs])["mean"],
                                        "step": mean_std([s["step"] for s in segs])["mean"],
                                        "scores": {k: mean_std([s["scores"][k] for s in segs])["mean"]
                                                   for k in main_metrics(segs[0]["scores"])}}
        entry["curve"] = curve
        arms[arm.name] = entry
    base = arms.get(spec.baseline, {})
    primary = getattr(spec, "eval", {}).get("primary")  # stand-in specs of the tests have no eval
    tested = []
    for name, entry in arms.items():
        if name == spec.baseline or "scores" not in entry or "scores" not in base:
            continue
        entry["versus_baseline"] = {}
        for key in main_metrics(entry["scores"]):
            if key not in base["scores"]:
                continue
            mine, theirs = entry["scores"][key], base["scores"][key]
            interval = compare_by_seed(dict(zip(mine["seeds"], mine["values"])),
                                       dict(zip(theirs["seeds"], theirs["values"])))
            entry["versus_baseline"][key] = {"interval": interval, "higher_is_better": higher_is_better(key)}
            if not is_primary(key, primary):
                entry["versus_baseline"][key]["secondary"] = True  # shown, not tested: outside the Holm family
            elif interval is not None:
                entry["versus_baseline"][key]["_values"] = (mine, theirs, interval["test"])
                tested.append(entry["versus_baseline"][key])
    for cmp, p in zip(tested, holm([c["interval"]["p"] for c in tested])):
        cmp["p_holm"] = p
        cmp["detectable"] = _detectable(cmp.pop("_values"), ALPHA / len(tested))
    for entry in arms.values():
        for key, cmp in entry.get("versus_baseline", {}).items():
            cmp["verdict"] = ("secondary score: not tested" if cmp.get("secondary") and cmp["interval"] is not None
                              else verdict(key, cmp["interval"], cmp.get("p_holm")))
    cpus = sorted({c for e in arms.values() for c in e.get("cpus", [])})
    scorers = sorted({s for r in records if not r.get("failed") and (f := final_segment(r)) is not None
                      if (s := f.get("provenance", {}).get("extractor_weights_sha256"))})
    devices = sorted({d for e in arms.values() for d in e.get("devices", [])})
    return {"arms": arms, "cpus": cpus, "mixed_cpus": len(cpus) > 1, "devices": devices,
            "mixed_devices": len(devices) > 1, "scorers": scorers,
            "mixed_scorers": len(scorers) > 1, "tests": len(tested), "power": POWER,
            "test": (f"{LEVEL:.0%} t interval on the difference of means over seeds, paired by seed where both "
                     "arms finished the same seeds (else Welch's); verdicts from Holm-adjusted p-values over the "
                     f"study's {len(tested)} comparisons"
                     + (f" of its primary scores ({', '.join(primary)}; the others are shown, not tested)"
                        if primary else "")
                     + f" (family-wise error {ALPHA:.0%}); beside each, the smallest "
                     f"difference it detects with {POWER:.0%} power at its seeds and spread, at alpha "
                     f"{ALPHA:.2g}/{max(len(tested), 1)} (Holm's strictest step)")}
