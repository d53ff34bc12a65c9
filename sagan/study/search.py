"""Run a search: screen every configuration at a short step budget, promote the best 1/eta to a budget eta times
longer, rung after rung (sagan/study/rungs.py); then run the last rung's best again over fresh seeds beside the
base and compare them by the study's intervals (an ordinary study in DIR/final). Running again resumes.

A promoted run continues its own run folder from its checkpoint: training has no schedule tied to max_steps (the
learning rates are constant; G_ema's buffers are copied from G every step and standing statistics leave the
global RNG alone), and resuming is bitwise exact, so a run promoted from 200 to 600 steps is the run that would
have trained 600 steps at once.

Layout of a search folder:
    DIR/spec.json                  the spec and its identity (a folder made by another spec is refused)
    DIR/configs.json               the drawn configurations, written once: a rerun reads them, never redraws
    DIR/costs.json                 with `equal: time`: each configuration's seconds per step (sagan.study.cost),
                                   measured once; they set its step budgets
    DIR/runs/cNN/                  an ordinary run, trained rung after rung (sample, eval, report work on it)
    DIR/runs/cNN/search_run.json   that run's scores at the end of each rung it reached
    DIR/final/                     an ordinary study: the finalists and the base over the final seeds
    DIR/study.json, study.md, study.html   every rung (what ran, the scores, what was promoted and why) and the
                                           final comparison; written by `write_search_outputs` from the records

A spec with `record: FOLDER` also keeps the drawn configurations, every rung's scores, the scorer and the final
study's record in that folder of the repository (sagan.study.search_record): the search then goes on in a fresh
checkout, where the run folders are gone.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from sagan.checkpoint import latest_checkpoint
from sagan.errors import ConfigError, SaganError
from sagan.study.compare import main_metrics
from sagan.study.files import read_json, write_json
from sagan.study.folder import MARKER, claim_folder
from sagan.study.machine import cpu_name
from sagan.study.rungs import promote, rank, why
from sagan.study.runner import run_study
from sagan.study.search_record import COSTS, choose_configs, merge_runs, search_record
from sagan.study.search_spec import BASELINE, SearchSpec
from sagan.study.spec import StudySpec

RECORD = "search_run.json"
_OUTPUTS = ("runs", "final", "study.json", "study.md", "study.html", "configs.json", COSTS, MARKER)


def prepare_search_folder(spec: SearchSpec, configs: list[dict], out: Path, fresh: bool) -> list[dict]:
    """Create the search folder, or check that it holds this spec's search; `fresh` starts it over. Returns the
    configurations to run: the ones written at the first start (a newer Optuna could draw others)."""
    claim_folder(out, {"identity": spec.identity(), "kind": "search", "spec": spec.to_dict()}, _OUTPUTS, fresh)
    store = search_record(spec)
    if store is not None:
        store.prepare(fresh)
    stored = (read_json(out / "configs.json") or {}).get("configs")
    chosen = choose_configs(store, stored, configs)
    if stored is None:
        write_json(out / "configs.json", {"configs": chosen})
    if store is not None and store.configs() is None:
        store.keep_configs(chosen)
    return chosen


def kept_costs(spec: SearchSpec, out: Path) -> dict | None:
    """The measured costs as kept ({"cpu", "threads", "seconds_per_step": {id: s}}): the record's, else the search
    folder's; None when neither holds them."""
    store = search_record(spec)
    return (store.costs() if store is not None else None) or read_json(out / COSTS)


def step_costs(spec: SearchSpec, configs: list[dict], out: Path, threads: int,
               say: Callable[[str], None]) -> dict | None:
    """{id: seconds per step}, the base's under "base", for a search with `equal: time` (None for equal steps):
    the kept ones, or measured here one configuration at a time, at the threads each run will have."""
    from sagan.study.cost import kept_or_measured

    if spec.equal != "time":
        return None
    screen = spec.final_spec(configs)
    names = [BASELINE] + [c["id"] for c in configs]
    jobs = [(name, screen.train_config(screen.arm(name), spec.seed, out / "runs" / name, threads)) for name in names]
    store = search_record(spec)

    def write(body: dict) -> None:
        write_json(out / COSTS, body)
        if store is not None:
            store.keep_costs(body)

    return kept_or_measured(jobs, kept_costs(spec, out), write, threads, say, f"search {spec.name}")


def load_run(spec: SearchSpec, out: Path, cid: str) -> dict | None:
    """A configuration's rung entries: its run folder's, with the record's (a fresh checkout has only those)."""
    store = search_record(spec)
    return merge_runs(read_json(out / "runs" / cid / RECORD), store.run(cid) if store is not None else None)


def metric_value(scores: dict, metric: str) -> float | None:
    """The ranking score: the key itself (fd_fmnist), or the one headline key of its family (fd -> fd_fmnist)."""
    if metric in scores:
        value = scores[metric]
    else:
        family = {"fid": "fd"}.get(metric, metric)
        keys = [k for k in main_metrics(scores) if {"fid": "fd"}.get(k.split("_")[0], k.split("_")[0]) == family
                and not k.endswith("_std")]
        if not keys:
            raise ConfigError(f"the search metric {metric!r} is not among the scores "
                              f"({', '.join(main_metrics(scores))}); name one of them as the metric and rerun "
                              "with --fresh")
        value = scores[keys[0]]
    return None if value is None or math.isnan(value) else float(value)


def score_checkpoint(spec: SearchSpec, cfg, checkpoint: Path, state: dict) -> dict:
    """Score a run's G_ema as the spec's eval says: {"scores": {...}, "provenance": {...}}."""
    from sagan.checkpoint import load_generator
    from sagan.metrics import evaluate_generator
    from sagan.metrics.evaluation import scores_only

    g_ema, _ = load_generator(checkpoint, ema=True)
    against = spec.eval.get("against", cfg.data)
    own = {"labels": cfg.labels, "label_column": cfg.label_column, "allow_unlabelled": cfg.allow_unlabelled} \
        if against == cfg.data else {}  # the run's own data keeps its labels file
    result = evaluate_generator(g_ema, against=against, num=spec.eval["num"], seed=0, metrics=spec.eval["metrics"],
                                features=spec.eval.get("features"), data_root=cfg.data_root, step=state["step"],
                                ema=True, checkpoint=str(checkpoint), **own)
    return {"scores": scores_only(result), "provenance": result["provenance"]}


def _train(cfg) -> None:
    from sagan.train import train

    train(cfg)


def run_rung(spec: SearchSpec, config: dict, rung: int, out: Path, threads: int = 0, costs: dict | None = None
             ) -> dict:
    """Train one configuration to the rung's budget (continuing its run folder) and score it; a rung already
    scored is not run again (in the run folder or the spec's record). A run whose loss became NaN is recorded as
    failed, with no score. A promoted run whose folder is gone starts again from its seed."""
    from sagan.config import apply_overrides
    from sagan.metrics.classifier import classifier_from

    folder = out / "runs" / config["id"]
    record_path = folder / RECORD
    store = search_record(spec)
    record = load_run(spec, out, config["id"]) or {"id": config["id"], "overrides": config["overrides"],
                                                   "seed": spec.seed, "rungs": []}

    def save() -> None:
        if store is not None:  # first: it refuses scores from another scorer than the record's
            store.save_run(record)
        write_json(record_path, record)

    done = [e for e in record["rungs"] if e["rung"] == rung]
    if done:
        return record
    steps = spec.steps_at(rung, config["id"], costs)
    screen = spec.final_spec([config])
    cfg = apply_overrides(screen.train_config(screen.arm(config["id"]), spec.seed, folder, threads),
                          {"max_steps": steps, "max_minutes": 0})
    entry: dict = {"rung": rung, "steps": steps}
    latest = latest_checkpoint(folder)
    if (latest[1]["step"] if latest else 0) < steps:
        try:
            _train(cfg)
        except SaganError as exc:
            if "NaN or infinite" not in str(exc):  # the one training failure that is the configuration's fault
                raise
            record["rungs"].append({**entry, "failed": str(exc), "score": None})
            save()
            return record
    path, state = latest_checkpoint(folder)
    seconds = state.get("train_seconds", 0.0)
    images = state["step"] * cfg.batch_size * cfg.n_dis
    with classifier_from(store.scorer_dir if store is not None else None):
        scored = score_checkpoint(spec, cfg, path, state)
    record["rungs"].append({**entry, "step": state["step"], "minutes": round(seconds / 60, 4),
                            "images_per_sec": round(images / max(seconds, 1e-9), 2), "cpu": cpu_name(), **scored,
                            "score": metric_value(scored["scores"], spec.metric)})
    save()
    return record


def _rung_job(spec: SearchSpec, out: str, rung: int, costs: dict | None, threads: int, config: dict) -> dict:
    return run_rung(spec, config, rung, Path(out), threads, costs)


def budget_words(spec: SearchSpec, rung: int) -> str:
    """A rung's budget in words: its steps, or with `equal: time` the time of the base's steps."""
    steps = f"{spec.budgets[rung]:,} steps"
    return steps if spec.equal == "steps" else f"the time of the base's {steps}"


def run_rung_jobs(spec: SearchSpec, configs: list[dict], rung: int, out: Path, parallel: int,
                  say: Callable[[str], None], costs: dict | None = None) -> dict[str, float | None]:
    """Run one rung's configurations, `parallel` at a time (each with cores/parallel threads; on a 2-core CPU two
    one-thread runs train about 1.5x the steps of one two-thread run); {id: score}. A signal stops them cleanly
    (sagan.study.jobs), as in a study."""
    from sagan.study.jobs import run_jobs

    scores: dict[str, float | None] = {}

    def done(_: int, config: dict, record: dict) -> None:
        entry = rung_entry(record, rung)
        scores[config["id"]] = entry["score"]
        got = "failed (non-finite loss)" if entry.get("failed") else f"{spec.metric} {entry['score']:.4g}"
        say(f"search {spec.name}: rung {rung + 1}/{spec.rungs} ({budget_words(spec, rung)}) "
            f"[{len(scores)}/{len(configs)}] {config['id']}: {got} at step {entry.get('step', entry['steps'])}")
        # [k/n] counts the ones scored before a stop too

    todo = []
    for config in configs:
        record = load_run(spec, out, config["id"])
        if rung_entry(record, rung) is None:
            todo.append(config)
        else:  # scored in an earlier sitting
            done(0, config, record)
    run_jobs(todo, partial(_rung_job, spec, str(out), rung, costs), done, parallel if len(todo) > 1 else 1)
    return scores


def rung_entry(record: dict | None, rung: int) -> dict | None:
    return next((e for e in (record or {}).get("rungs", []) if e["rung"] == rung), None)


def keep_after(spec: SearchSpec, rung: int) -> int:
    """How many configurations leave a rung: the next rung's size, or the finalists after the last."""
    return spec.sizes[rung + 1] if rung + 1 < spec.rungs else spec.finalists


def run_search(spec: SearchSpec, configs: list[dict], out: str | Path, seeds: Sequence[int] | None = None,
               parallel: int = 1, fresh: bool = False, say: Callable[[str], None] | None = None) -> list[str]:
    """Run (or resume) every rung, then the final study; returns the finalists' ids, best first."""
    say = say or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out)
    seeds = list(seeds if seeds is not None else spec.seeds)
    if parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {parallel}")
    if len(seeds) < 3 or spec.seed in seeds:
        raise ConfigError(f"a search's final runs need at least 3 seeds other than the screening seed {spec.seed}, "
                          f"got {seeds}")
    configs = prepare_search_folder(spec, configs, out, fresh)
    by_id = {c["id"]: c for c in configs}
    ids = list(by_id)
    from sagan.study.jobs import threads_per_job

    costs = step_costs(spec, configs, out, threads_per_job(parallel), say)  # at the threads each run will have
    direction = "higher" if spec.maximize else "lower"
    for rung in range(spec.rungs):
        scores = run_rung_jobs(spec, [by_id[cid] for cid in ids], rung, out, parallel, say, costs)
        ids = promote({cid: scores[cid] for cid in ids}, keep_after(spec, rung), spec.maximize)  # in draw order
        if not ids:
            raise SaganError(f"every run of rung {rung + 1} failed (the loss became NaN or infinite); narrow the "
                             "search space, e.g. lower learning rates")
        what = "finalists" if rung + 1 == spec.rungs else f"promoted to {budget_words(spec, rung + 1)}"
        say(f"search {spec.name}: rung {rung + 1}: {what}: {', '.join(ids)} (best {len(ids)} of {len(scores)} by "
            f"{spec.metric}, {direction} is better)")
    final = spec.final_spec([by_id[c] for c in ids], seeds, costs)
    if (store := search_record(spec)) is not None:
        store.seed_final_scorer()
    run_study(final, out / "final", seeds=seeds, parallel=parallel, say=say)
    return ids


def rung_views(spec: SearchSpec, configs: list[dict], out: Path) -> tuple[list[dict], list[str] | None]:
    """Each rung as run so far: what ran, each score, what was promoted and why (recomputed from the run records
    by the same `promote` the search used); and the finalists once the last rung is complete."""
    records = {c["id"]: load_run(spec, out, c["id"]) for c in configs}
    ids, views = [c["id"] for c in configs], []
    for rung in range(spec.rungs):
        entries = {cid: rung_entry(records[cid], rung) for cid in ids}
        scores = {cid: e["score"] for cid, e in entries.items() if e is not None}
        complete = len(scores) == len(ids)
        keep = keep_after(spec, rung)
        promoted = promote(scores, keep, spec.maximize) if complete else []
        order = rank(scores, spec.maximize) + [cid for cid in ids if cid not in scores]
        rows = []
        for cid in order:
            e = entries[cid]
            fate = (why(cid, order, promoted, keep, scores, rung + 1 == spec.rungs) if complete
                    else "scored; the rung is not finished" if e is not None else "not run yet")
            run_scores = (e or {}).get("scores") or {}
            headline = set(main_metrics(list(run_scores))) - {spec.metric}  # shown beside the metric, not ranked by
            rows.append({"id": cid, "step": e.get("step") if e else None, "minutes": e.get("minutes") if e else None,
                         "score": e.get("score") if e else None, "failed": e.get("failed") if e else None,
                         "others": {k: v for k, v in run_scores.items() if k in headline},
                         "promoted": cid in promoted, "fate": fate})
        views.append({"rung": rung + 1, "steps": spec.budgets[rung], "equal_time": spec.equal == "time",
                      "planned": len(ids), "ran": len(scores),
                      "keep": keep, "complete": complete, "promoted": promoted, "rows": rows})
        if not complete or not promoted:  # not finished, or every run failed (the search stopped there)
            return views, None
        ids = promoted
    return views, ids


def final_study(spec: SearchSpec, configs: list[dict], finalists: list[str], out: Path,
                seeds: Sequence[int] | None = None) -> StudySpec:
    """The final comparison as a study spec: the finalists (ids of `configs`) and the base over the seeds, each
    finalist at its own steps of the base's time under `equal: time` (the costs kept in `out` or the record)."""
    by_id = {c["id"]: c for c in configs}
    costs = (kept_costs(spec, out) or {}).get("seconds_per_step")
    return spec.final_spec([by_id[c] for c in finalists], list(seeds) if seeds else None, costs)


def planned_final(spec: SearchSpec, configs: list[dict], out: str | Path, seeds: Sequence[int] | None = None
                  ) -> StudySpec | None:
    """What `--plan` plans for a search: its final comparison, once the rungs (in `out` or the record) have chosen
    the finalists; None before. Reads only."""
    out = Path(out)
    configs = choose_configs(search_record(spec), (read_json(out / "configs.json") or {}).get("configs"), configs)
    finalists = rung_views(spec, configs, out)[1]
    return final_study(spec, configs, finalists, out, seeds) if finalists else None


def write_recipes(spec: SearchSpec, finalists: list[dict], out: Path, store) -> list[str]:
    """Each finalist as a recipe file, DIR/recipes/cNN.yaml (and in the record): adopting one is `sagan train
    --config` with it. Returns the file names."""
    import yaml

    names = []
    for config in finalists:
        header = (f"# Finalist {config['id']} of the search {spec.name!r}: its base config with the search's settings "
                  f"for {config['id']}.\n# How it compared with the base over seeds: the search's study.md. Give it a "
                  "budget to train it, e.g.\n#   sagan train --config recipes/"
                  f"{config['id']}.yaml --max-minutes 60 --out runs/{config['id']}\n")
        text = header + yaml.safe_dump(spec.recipe(config["overrides"]), sort_keys=False)
        for folder in [out] + ([store.folder] if store is not None and store.folder.is_dir() else []):
            (folder / "recipes").mkdir(parents=True, exist_ok=True)
            (folder / "recipes" / f"{config['id']}.yaml").write_text(text)
        names.append(f"recipes/{config['id']}.yaml")
    return names


def write_search_outputs(spec: SearchSpec, configs: list[dict], out: str | Path, html: bool = True) -> dict:
    """Gather the rungs and the final study into study.json, and write study.md (and study.html); the final
    study's own study.json/md/html are written in DIR/final."""
    from sagan.study import write_outputs
    from sagan.study.search_page import search_markdown, write_search_page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # --tables-only in a fresh checkout: the rungs are in the record only
    store = search_record(spec)
    configs = choose_configs(store, (read_json(out / "configs.json") or {}).get("configs"), configs)
    rungs, finalists = rung_views(spec, configs, out)
    final = None
    final_kept = store is not None and (store.folder / "final" / "spec.json").exists()
    if finalists and ((out / "final" / "spec.json").exists() or final_kept):
        final = write_outputs(final_study(spec, configs, finalists, out), out / "final", html=html)
    recipes = write_recipes(spec, [c for c in configs if c["id"] in (finalists or [])], out, store)
    study = {"kind": "search", "spec": spec.to_dict(), "identity": spec.identity(), "configs": configs,
             "rungs": rungs, "finalists": finalists, "final": final, "recipes": recipes,
             **({"costs": kept_costs(spec, out)} if spec.equal == "time" else {})}
    write_json(out / "study.json", study)
    (out / "study.md").write_text(search_markdown(study))
    if store is not None and store.folder.is_dir():  # the tables travel with the record, into the next checkout
        (store.folder / "study.md").write_text(search_markdown(study))
    if html:
        write_search_page(study, out / "study.html")
    return study
