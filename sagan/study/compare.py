"""Means, spreads and intervals: each arm's scores over seeds, and each arm against the baseline.

A difference is judged by Welch's t interval (95%) on the difference of the two arms' means over seeds, which
does not assume equal variances. Where the interval includes zero, the words say that no difference was
measured; only an interval that excludes zero is called better or worse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

LEVEL = 0.95
_MAIN = re.compile(r"^(fid|fd|kid|is|precision|recall|density|coverage)(_[a-z0-9]+)?$")
_HIGHER_IS_BETTER = ("is", "precision", "recall", "density", "coverage")


def main_metrics(keys: Sequence[str]) -> list[str]:
    """The headline score keys (no *_std, no per-class shares), in the order given."""
    return [k for k in keys if _MAIN.match(k)]


def higher_is_better(key: str) -> bool:
    return key.split("_")[0] in _HIGHER_IS_BETTER


def mean_std(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (ddof 1; None for one value) and count."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else None, "n": int(arr.size)}


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict | None:
    """The `level` interval of mean(a) - mean(b) by Welch's t; None with fewer than 2 values on a side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        return None
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "low": diff, "high": diff, "df": None, "level": level}
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return {"diff": diff, "low": diff - half, "high": diff + half, "df": float(df), "level": level}


def verdict(key: str, interval: dict | None) -> str:
    """The words for an interval: "no difference measured" unless it excludes zero."""
    if interval is None:
        return "too few runs to compare"
    if interval["low"] <= 0 <= interval["high"]:
        return "no difference measured"
    better = (interval["diff"] > 0) == higher_is_better(key)
    return "better than the baseline" if better else "worse than the baseline"


def final_segment(record: dict) -> dict | None:
    done = [s for s in record["segments"] if s["fraction"] == 1.0]
    return done[0] if done else None


def summarise(spec, records: Sequence[dict]) -> dict:
    """Per arm: finished runs, steps, minutes, images/s and every score (mean, std, n) at the full budget; the
    mean of each score at every budget fraction (for curves); and each arm's comparison with the baseline."""
    arms = {}
    for arm in spec.arms:
        mine = [r for r in records if r["arm"] == arm.name]
        finals = [s for s in (final_segment(r) for r in mine) if s is not None]
        keys = list(finals[0]["scores"]) if finals else []
        entry = {"runs": len(mine), "runs_done": len(finals), "seeds_done": [r["seed"] for r in mine
                                                                            if final_segment(r) is not None]}
        if finals:
            for field in ("step", "minutes", "images_per_sec"):
                entry[field] = mean_std([s[field] for s in finals])
            entry["scores"] = {k: {**mean_std([s["scores"][k] for s in finals if k in s["scores"]]),
                                   "values": [s["scores"][k] for s in finals if k in s["scores"]]} for k in keys}
            entry["cpus"] = sorted({s["cpu"] for s in finals})
        curve = {}
        for fraction in spec.fractions:
            segs = [s for r in mine for s in r["segments"] if s["fraction"] == fraction]
            if segs:
                curve[str(fraction)] = {"minutes": mean_std([s["minutes"] for s in segs])["mean"],
                                        "step": mean_std([s["step"] for s in segs])["mean"],
                                        "scores": {k: mean_std([s["scores"][k] for s in segs])["mean"]
                                                   for k in main_metrics(segs[0]["scores"])}}
        entry["curve"] = curve
        arms[arm.name] = entry
    base = arms.get(spec.baseline, {})
    for name, entry in arms.items():
        if name == spec.baseline or "scores" not in entry or "scores" not in base:
            continue
        entry["versus_baseline"] = {}
        for key in main_metrics(entry["scores"]):
            if key not in base["scores"]:
                continue
            interval = welch_interval(entry["scores"][key]["values"], base["scores"][key]["values"])
            entry["versus_baseline"][key] = {"interval": interval, "verdict": verdict(key, interval),
                                             "higher_is_better": higher_is_better(key)}
    cpus = sorted({c for e in arms.values() for c in e.get("cpus", [])})
    return {"arms": arms, "cpus": cpus, "mixed_cpus": len(cpus) > 1,
            "test": f"Welch's t interval ({LEVEL:.0%}) on the difference of means over seeds"}
