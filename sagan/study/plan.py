"""How big a difference a study can detect, and how many seeds a difference needs, from the seed spread of
finished runs (the study's own, or a pilot's): `sagan study SPEC --plan [--difference D] [--pilot STUDY]`.

The arithmetic is the power of the study's own test (sagan.study.compare): a two-sided t test of the difference
of means over seeds, paired by seed (as statsmodels' `TTestPower` on the per-seed differences) since every arm of
a planned study runs the same seeds, or Welch's for arms that finished different seeds (as `TTestIndPower` on the
pooled spread, an approximation of Welch's), computed in sagan.study.power rather than taken from statsmodels,
whose noncentral t gives NaN at 3 seeds and a Holm-sized alpha, the very studies this plans.

The Holm correction over all of a study's comparisons is planned for at its strictest step, alpha / number of
comparisons, so a difference the plan calls detectable is detected whatever the other comparisons find. Power
80% unless asked otherwise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sagan.errors import ConfigError
from sagan.study.compare import ALPHA, is_primary, main_metrics
from sagan.study.power import MOST_SEEDS, POWER, detectable_difference, seeds_needed


def difference_spread(arm: dict[int, float], base: dict[int, float]) -> tuple[float | None, str]:
    """The spread of arm minus baseline per seed, and where it comes from: measured on the seeds both finished
    (at least 2), else from each side's own spread assuming no correlation between them (the baseline's spread
    stands in for an arm with fewer than 2 runs)."""
    shared = sorted(set(arm) & set(base))
    if len(shared) >= 2:
        d = np.array([arm[s] - base[s] for s in shared])
        return float(d.std(ddof=1)), f"measured on {len(shared)} paired seeds"
    if len(base) < 2:
        return None, "fewer than 2 baseline runs"
    sb = float(np.std(list(base.values()), ddof=1))
    if len(arm) >= 2:
        sa, how = float(np.std(list(arm.values()), ddof=1)), "arm and baseline sd, uncorrelated"
    else:
        sa, how = sb, "baseline sd for both, uncorrelated"
    return math.hypot(sa, sb), how


def parse_differences(text: str | None) -> dict[str, float] | float | None:
    """--difference: one number for every score, or SCORE=D,... per score."""
    if text is None:
        return None
    try:
        if "=" not in text:
            return abs(float(text))
        out = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, value = part.split("=", 1)
            out[key.strip()] = abs(float(value))
        return out
    except ValueError:
        raise ConfigError(f"--difference takes a number (e.g. 0.5) or SCORE=D,... (e.g. fd_classifier=0.5,"
                          f"kid_classifier=0.01), got {text!r}") from None


def load_pilot(path: str | Path) -> tuple[list[dict], str | None]:
    """Run records from a study.json, a study folder, or a record folder (finished/ARM/seed_S.json), and the
    pilot's baseline arm where its spec names one."""
    path = Path(path)
    if path.is_dir() and (path / "study.json").is_file():
        path = path / "study.json"
    if path.is_file():
        try:
            study = json.loads(path.read_text())
            return list(study["runs"]), _baseline_of(study)
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"--pilot {path} is not a study.json (it has no runs)") from None
    if path.is_dir() and (path / "finished").is_dir():
        runs = []
        for file in sorted((path / "finished").glob("*/seed_*.json")):
            try:
                runs.append(json.loads(file.read_text()))
            except (OSError, ValueError):
                raise ConfigError(f"--pilot: cannot read the run record {file}") from None
        try:
            marker = json.loads((path / "spec.json").read_text())
        except (OSError, ValueError):
            marker = {}
        return runs, _baseline_of(marker)
    raise ConfigError(f"--pilot {path}: give a study.json, a study folder or a study's record folder")


def _baseline_of(study: dict) -> str | None:
    spec = study.get("spec") if isinstance(study, dict) else None
    return spec.get("baseline") if isinstance(spec, dict) else None


def as_baseline(records: list[dict], pilot_baseline: str | None, baseline: str) -> tuple[list[dict], str]:
    """A pilot whose baseline arm has another name than this study's (its `ttur` for this study's `recipe`)
    stands in for this study's baseline: its runs are relabelled, and the returned note says so. Arms are
    otherwise matched by name; an arm the pilot lacks is planned from the baseline's spread."""
    if not pilot_baseline or pilot_baseline == baseline or any(r.get("arm") == baseline for r in records):
        return records, ""
    relabelled = [{**r, "arm": baseline} if r.get("arm") == pilot_baseline else r for r in records]
    return relabelled, f" (its baseline {pilot_baseline!r} stands in for {baseline!r})"


def plan(spec, records: list[dict], seeds: int, differences: dict[str, float] | float | None = None,
         power: float = POWER) -> dict:
    """For each arm against the baseline and each headline score: the spread of the difference, the smallest
    difference detectable at `seeds` seeds, and the seeds a wanted difference needs; plus what it assumed."""
    from sagan.study.compare import summarise

    arms = summarise(spec, records)["arms"]
    base = arms.get(spec.baseline, {}).get("scores", {})
    keys = [k for k in main_metrics(base) if is_primary(k, getattr(spec, "eval", {}).get("primary"))]
    others = [a.name for a in spec.arms if a.name != spec.baseline]
    tests = max(1, len(others) * len(keys))
    alpha = ALPHA / tests
    rows = []
    for name in others:
        mine = arms[name].get("scores", {})
        for key in keys:
            theirs = dict(zip(base[key]["seeds"], base[key]["values"]))
            own = dict(zip(mine[key]["seeds"], mine[key]["values"])) if key in mine else {}
            sd, how = difference_spread(own, theirs)
            wanted = differences.get(key) if isinstance(differences, dict) else differences
            rows.append({"arm": name, "metric": key, "sd": sd, "spread_from": how,
                         "detectable": detectable_difference(sd, seeds, alpha, power=power),
                         "difference": wanted,
                         "seeds_needed": seeds_needed(wanted, sd, alpha, power) if wanted is not None else None})
    runs = sum(e["runs_done"] for e in arms.values())
    return {"seeds": seeds, "power": power, "alpha": ALPHA, "tests": tests, "alpha_per_test": alpha,
            "runs": runs, "rows": rows}


def plan_text(name: str, result: dict, source: str) -> str:
    """The plan as a table for the terminal."""
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    if not result["rows"]:
        return (f"Plan for study {name}: no finished baseline run in {source}, so no seed spread to plan from; run "
                "a pilot (a few seeds of the study, or a shorter budget) or give --pilot STUDY.\n")
    lines = [f"Plan for study {name}: {result['seeds']} seeds; paired t test by seed, two-sided, power "
             f"{result['power']:.0%}, alpha {result['alpha']:.2g} with Holm over {result['tests']} comparisons "
             f"(planned at its strictest step, {result['alpha_per_test']:.2g} each).",
             f"Seed spread from {result['runs']} finished run(s) of {source}; a spread measured on few seeds is "
             "itself uncertain, so read these as rough sizes.", ""]
    header = ["score", "arm", "sd of difference", f"detectable at {result['seeds']} seeds"]
    wanted = any(r["difference"] is not None for r in result["rows"])
    if wanted:
        header.append("seeds for difference")
    table = [header]
    for r in result["rows"]:
        row = [r["metric"], r["arm"], f"{num(r['sd'])} ({r['spread_from']})",
               "-" if r["detectable"] is None else f"±{r['detectable']:.3g}"]
        if wanted:
            n = r["seeds_needed"]
            row.append("-" if r["difference"] is None or n is None else
                       (f"more than {MOST_SEEDS:,}" if n > MOST_SEEDS else str(n)) + f" (for {num(r['difference'])})")
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines) + "\n"


def plan_of_study(spec, out: Path, seeds: int, difference: str | None = None, pilot: str | None = None) -> str:
    """What `sagan study SPEC --plan` prints: the plan from the seed spread of the study's finished runs (in `out`
    and its record), or of the pilot study's runs matched by arm name."""
    from sagan.study.runner import collect_records

    differences = parse_differences(difference)
    if pilot:
        records, pilot_baseline = load_pilot(pilot)
        records, note = as_baseline(records, pilot_baseline, spec.baseline)
        source = f"the pilot {pilot}{note}"
    else:
        where = f"{out}" + (f" and the record {spec.record}" if spec.record else "")
        records, source = collect_records(spec, out), f"this study ({where})"
    return plan_text(spec.name, plan(spec, records, seeds, differences), source)
