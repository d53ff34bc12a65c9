"""The study's tables: one row per arm (runs, steps, images/s, each score as mean ± std over seeds), then each
arm against the baseline with its interval, its Holm-adjusted p-value, the words it earns and the smallest difference
it could detect. Views of study.json:
study.md and the tables of study.html are built from the same rows (a study.json written before the correction
and the failed-run records existed renders too, without them)."""

from __future__ import annotations

from sagan.study.compare import LEVEL, main_metrics


def _num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if v != 0 and abs(v) < 10 ** -(digits - 1):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}f}"


def _mean_std(entry: dict | None, digits: int = 3) -> str:
    if not entry:
        return "-"
    if entry.get("std") is None:
        return _num(entry["mean"], digits)
    return f"{_num(entry['mean'], digits)} ± {_num(entry['std'], digits)}"


def score_keys(study: dict) -> list[str]:
    keys: list[str] = []
    for entry in study["summary"]["arms"].values():
        keys += [k for k in main_metrics(entry.get("scores", {})) if k not in keys]
    return keys


def arm_rows(study: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-arm table."""
    spec, arms, keys = study["spec"], study["summary"]["arms"], score_keys(study)
    header = ["arm", "runs done", "steps", "minutes", "images/s", *keys]
    rows = []
    for name, entry in arms.items():
        failed = len(entry.get("failed", []))
        row = [name + (" (baseline)" if name == spec["baseline"] else ""),
               f"{entry['runs_done']}/{entry['runs']}" + (f", {failed} failed" if failed else ""),
               _mean_std(entry.get("step"), 0), _mean_std(entry.get("minutes"), 2),
               _mean_std(entry.get("images_per_sec"), 1)]
        rows.append(row + [_mean_std(entry.get("scores", {}).get(k)) for k in keys])
    return header, rows


_TESTS = {"paired": "paired by seed", "welch": "Welch"}


def versus_rows(study: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison with the baseline: difference [interval], Holm-adjusted p: verdict; the
    arm's cell names the test (paired by seed, or Welch's)."""
    spec, arms, keys = study["spec"], study["summary"]["arms"], score_keys(study)
    rows = []
    for name, entry in arms.items():
        if name == spec["baseline"]:
            continue
        cells, tests = [], set()
        for k in keys:
            cmp = entry.get("versus_baseline", {}).get(k)
            if cmp is None:
                cells.append("-")
            elif cmp["interval"] is None:
                cells.append(cmp["verdict"])
            else:
                iv = cmp["interval"]
                tests.add(_TESTS.get(iv.get("test"), ""))
                p = f", p {cmp['p_holm']:.2g}" if "p_holm" in cmp else ""
                det = cmp.get("detectable")
                det = f" (detectable ±{det:.3g})" if det is not None else ""
                cells.append(f"{iv['diff']:+.3g} [{iv['low']:+.3g}, {iv['high']:+.3g}]{p}: {cmp['verdict']}{det}")
        tests.discard("")
        rows.append([name + (f" ({', '.join(sorted(tests))})" if tests else ""), *cells])
    return ["arm", *keys], rows


def notes(study: dict) -> list[str]:
    """What the tables rest on: budget, seeds, evaluation, test, CPUs (and a warning for mixed CPUs)."""
    spec, summary = study["spec"], study["summary"]
    kind, amount = ("minutes", spec["budget"]["minutes"]) if "minutes" in spec["budget"] else \
        ("steps", spec["budget"]["steps"])
    budget = (f"{amount:g} minutes of training per run (equal wall clock; evaluation not counted)"
              if kind == "minutes" else
              f"{amount:,} generator steps per run (equal steps; the minutes and images/s columns say what each "
              "arm cost)")
    own = {a["name"]: a["steps"] for a in spec["arms"] if a.get("steps")}
    if spec["budget"].get("equal") == "time":
        budget = equal_time_words(spec, study.get("costs") or {}, amount)
    elif own:
        budget = (f"{amount:,} generator steps per run, except {', '.join(f'`{n}` {s:,}' for n, s in own.items())}: "
                  "the steps each took as long as the budget at its measured seconds per step (equal time)")
    ev = spec["eval"]
    out = [f"Budget: {budget}; seeds {', '.join(map(str, spec['seeds']))}; baseline arm `{spec['baseline']}`.",
           f"Scores: {ev['num']:,} G_ema samples (seed 0) per run at the full budget, against "
           f"{ev.get('against') or spec['base'].get('data', 'fashion-mnist')}, features "
           f"{ev.get('features') or 'the default for that data'}; mean ± standard deviation over seeds.",
           f"Comparison (arm minus baseline): {summary['test']}. "
           + ("A difference is called better or worse only when its Holm-adjusted p (shown) is below "
              f"{1 - LEVEL:.2g}; otherwise the words say that no difference was measured. " if "tests" in summary else
              "Where the interval includes 0 the words say that no difference was measured. ")
           + "Lower is better for fd and kid; higher for is, precision, recall and coverage; density has no better "
             "side (real against real it is about 1), so its differences are called higher or lower.",
           f"CPU: {'; '.join(summary['cpus']) or 'no finished run yet'}"
           + (f"; device: {'; '.join(summary['devices'])}." if summary.get("devices") else ".")]
    failed = [f"`{name}` seed {f['seed']}: {f['reason']}" for name, entry in summary["arms"].items()
              for f in entry.get("failed", [])]
    if failed:
        kept = f" and its record {spec['record'].rstrip('/')}/finished/ARM/seed_S.json" if spec.get("record") else ""
        out.append("Failed runs (counted in the runs column, left out of the scores; delete a run's folder "
                   f"runs/ARM/seed_S{kept} to try it again): {'; '.join(failed)}.")
    if spec.get("record"):
        out.append(f"Record: every finished run is kept in `{spec['record']}` (scores, steps, minutes, CPU, device, "
                   "provenance; the scorer too), so the study goes on in a fresh checkout.")
    if summary.get("mixed_scorers"):
        out.append("**Warning: these runs were scored by different feature extractor weights (sha256 "
                   f"{', '.join(s[:12] for s in summary['scorers'])}), so their scores do not compare.**")
    if summary["mixed_cpus"] and kind == "minutes":
        out.append("**Warning: the runs of this wall-clock study ran on different CPUs, so equal minutes bought "
                   "different amounts of training; read the steps column.**")
    if summary.get("mixed_devices") and kind == "minutes":
        out.append(f"**Warning: the runs of this wall-clock study trained on different devices "
                   f"({', '.join(summary['devices'])}), so equal minutes bought different amounts of training; read "
                   "the steps column.**")
    return out


def equal_time_words(spec: dict, costs: dict, steps: int) -> str:
    """The budget of an `equal: time` study: the baseline's time at its steps, and what that bought each arm."""
    seconds = costs.get("seconds_per_step") or {}
    base = seconds.get(spec["baseline"])
    if not base:
        return (f"the time of {steps:,} generator steps of `{spec['baseline']}` per run (equal time; the seconds per "
                "step that set each arm's steps are not measured yet)")
    each = [f"`{a['name']}` {max(1, round(steps * base / seconds[a['name']])):,} steps ({seconds[a['name']]:.3g} s)"
            if seconds.get(a["name"]) else f"`{a['name']}` {steps:,} steps (not timed: its loss became non-finite)"
            for a in spec["arms"] if a["name"] in seconds]
    return (f"the time of {steps:,} generator steps of `{spec['baseline']}` per run (equal time: each arm trains the "
            f"steps that take as long at its seconds per step, measured on {costs.get('cpu')} at "
            f"{costs.get('threads') or 'the default'} thread(s), {costs.get('how', '')}: {', '.join(each)}; the "
            "minutes column is what each run took while it trained, next to other work)")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def study_markdown(study: dict) -> str:
    """study.md from a study.json mapping."""
    lines = [f"# Study {study['spec']['name']}", ""] + [f"- {n}" for n in notes(study)] + [""]
    lines += md_table(*arm_rows(study))
    corrected = ", Holm-adjusted p" if "tests" in study["summary"] else ""
    detectable = (f" (the smallest difference it detects with {study['summary']['power']:.0%} power)"
                  if "power" in study["summary"] else "")
    lines += ["", f"Against the baseline (difference of means [its {LEVEL:.0%} interval]{corrected}: the words it "
              f"earns{detectable}):", ""]
    lines += md_table(*versus_rows(study))
    return "\n".join(lines) + "\n"
