"""A search's study.md and study.html: what was searched, each rung (what ran, the scores, what was promoted and
why) and the final comparison with the base. Views of the search's study.json; the final comparison's rows are
the study's own (sagan/study/table.py), and its curves and samples are on final/study.html."""

from __future__ import annotations

import json
from pathlib import Path

from sagan.errors import SaganError
from sagan.report import escape, html_page, html_table
from sagan.study.rungs import rung_budgets, rung_sizes
from sagan.study.table import arm_rows, md_table, notes, versus_rows


def _value(v: object) -> str:
    if isinstance(v, float):
        # a value the spec wrote (a choice such as ema_decay 0.9999) is shown exactly; a sampled one to 3 digits
        exact = f"{v:.6g}"
        return exact if float(exact) == v else f"{v:.3g}"
    return json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None or v == "" else str(v)


def _score(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def config_rows(study: dict) -> tuple[list[str], list[list[str]]]:
    """One row per configuration: its id and the value of every key the search varies."""
    keys: list[str] = []
    for c in study["configs"]:
        keys += [k for k in c["overrides"] if k not in keys]
    header = ["config", *keys]
    rows = [[c["id"], *[_value(c["overrides"].get(k)) for k in keys]] for c in study["configs"]]
    seconds = (study.get("costs") or {}).get("seconds_per_step")
    if seconds:  # equal time: what set each configuration's steps
        header.append("s/step")
        rows = [row + [_score(seconds.get(row[0]))] for row in rows]
    return header, rows


def rung_rows(study: dict, rung: dict) -> tuple[list[str], list[list[str]]]:
    """One row per configuration of a rung, best first: step reached, minutes, the metric, and its fate."""
    metric = study["spec"]["search"]["metric"]
    others: list[str] = []  # the eval's other headline scores, shown beside the ranking one and not ranked by
    for r in rung["rows"]:
        others += [k for k in r.get("others") or {} if k not in others]
    rows = [[r["id"], _value(r["step"]) if r["step"] is not None else "-",
             "-" if r["minutes"] is None else f"{r['minutes']:.2f}", _score(r["score"]),
             *[_score((r.get("others") or {}).get(k)) for k in others],
             r["fate"] + (f" ({r['failed']})" if r["failed"] else "")] for r in rung["rows"]]
    return ["config", "step", "minutes", metric, *[f"{k} (not ranked)" for k in others], "outcome"], rows


def search_notes(study: dict) -> list[str]:
    """What the search did, in sentences: the space, successive halving, the final runs."""
    spec, s = study["spec"], study["spec"]["search"]
    drawn = (f"a grid of {s['samples']} configuration(s)" if s["grid"] else
             f"{s['samples']} configurations drawn from the space by Optuna's RandomSampler (seed {s['sampler_seed']})")
    space = "; ".join(f"{k}: {_value(v)}" for k, v in (s["grid"] or s["space"]).items())
    sizes = rung_sizes(s["samples"], s["eta"], s["rungs"])
    budgets = rung_budgets(s["first_steps"], s["eta"], s["rungs"])
    timed = s.get("equal") == "time"
    plan = ", ".join(f"{n} x {'the time of ' if timed else ''}{b:,} {'base ' if timed else ''}steps"
                     for n, b in zip(sizes, budgets))
    better = "higher" if s["direction"] == "maximize" else "lower"
    costs = study.get("costs") or {}
    time_note = [] if not timed else [
        "Equal time: every configuration of a rung trains as long as the base's steps take, at its own seconds per "
        "step (the s/step column, " + (f"measured on {costs['cpu']} at {costs.get('threads') or 'the default'} "
                                       f"thread(s): {costs['how']}" if costs.get("cpu") else "not measured yet")
        + "); the step column says how many steps that gave it. The final runs get the same time as the base."]
    return [f"Searched: {drawn} ({space}); everything else from the base.",
            f"Successive halving, eta {s['eta']}: each rung keeps the best 1/{s['eta']} by {s['metric']} ({better} is "
            f"better) and trains them {s['eta']} times longer, continuing each run from its checkpoint; screening "
            f"seed {s['seed']}. Rungs: {plan}.",
            f"Final: the best {s['finalists']} of the last rung and the base config (arm base, the baseline) run again "
            f"over the fresh seeds {', '.join(map(str, spec['seeds']))} at the last rung's budget, compared by the "
            "study's intervals (runs and page in final/)."] + time_note


def finalist_settings(study: dict) -> str:
    """The finalists' settings in words: 'c03: lr_d 0.000231, batch_size 16; ...'."""
    by_id = {c["id"]: c["overrides"] for c in study["configs"]}
    return "; ".join(f"{cid}: " + ", ".join(f"{k} {_value(v)}" for k, v in by_id[cid].items())
                     for cid in study.get("finalists") or [])


def _rung_title(rung: dict) -> str:
    state = "" if rung["complete"] else f" ({rung['ran']} of {rung['planned']} scored so far)"
    budget = f"{rung['steps']:,} steps" if not rung.get("equal_time") else f"the time of {rung['steps']:,} base steps"
    return f"Rung {rung['rung']}: {rung['planned']} configuration(s) at {budget}{state}"


def _rung_summary(rung: dict, last: bool) -> str:
    if not rung["complete"]:
        return "Not finished: rerun the same command to continue."
    if not rung["promoted"]:
        return "Every run of this rung failed: the search stopped here."
    what = "Finalists" if last else "Promoted"
    return f"{what}: {', '.join(rung['promoted'])} (the best {rung['keep']} of {rung['planned']})."


def search_markdown(study: dict) -> str:
    """study.md of a search from its study.json mapping."""
    spec = study["spec"]
    lines = [f"# Search {spec['name']}", ""] + [f"- {n}" for n in search_notes(study)] + ["", "## Configurations", ""]
    lines += md_table(*config_rows(study))
    for rung in study["rungs"]:
        last = rung["rung"] == spec["search"]["rungs"]
        lines += ["", f"## {_rung_title(rung)}", ""] + md_table(*rung_rows(study, rung))
        lines += ["", _rung_summary(rung, last)]
    lines += ["", "## Final comparison", ""]
    final = study.get("final")
    if final is None:
        lines.append("Not run yet: it starts when the last rung is finished.")
    else:
        lines += [f"- Finalists (best first): {finalist_settings(study)}; `base` is the base config."]
        if study.get("recipes"):
            lines += [f"- Each finalist as a recipe file, to train with `sagan train --config FILE`: "
                      f"{', '.join(study['recipes'])}."]
        lines += [f"- {n}" for n in notes(final)] + [""] + md_table(*arm_rows(final))
        lines += ["", "Against the baseline:", ""] + md_table(*versus_rows(final))
    return "\n".join(lines) + "\n"


def write_search_page(study: dict, path: Path) -> Path:
    """Write a search's study.html from its study.json mapping."""
    spec = study["spec"]
    rungs = "".join(f"<h3>{escape(_rung_title(r))}</h3>{html_table(*rung_rows(study, r))}"
                    f"<p>{escape(_rung_summary(r, r['rung'] == spec['search']['rungs']))}</p>" for r in study["rungs"])
    final = study.get("final")
    if final is None:
        final_html = '<p class="muted">Not run yet: it starts when the last rung is finished.</p>'
    else:
        final_html = (f"<p>Finalists (best first): {escape(finalist_settings(study))}; <code>base</code> is the base "
                      "config.</p>" + "".join(f"<p class='small'>{escape(n)}</p>" for n in notes(final))
                      + html_table(*arm_rows(final))
                      + "<h3>Against the baseline</h3>" + html_table(*versus_rows(final))
                      + '<p><a href="final/study.html">Curves, samples and attention maps of the final runs</a></p>')
    sections = [
        ("search", "What was searched", "".join(f"<p>{escape(n)}</p>" for n in search_notes(study))
         + html_table(*config_rows(study))),
        ("rungs", "Rungs", rungs or '<p class="muted">No rung has run yet.</p>'),
        ("final", "Final comparison", final_html),
    ]
    page = html_page(f"sagan search: {spec['name']}", f" from {path.parent / 'study.json'}", sections)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise SaganError(f"cannot write {path}: {exc.strerror}") from None
    return path
