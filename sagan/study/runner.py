"""Run a study: every (arm, seed) is an ordinary run folder, trained through `sagan.train.train` and scored
through `sagan.metrics.evaluate_generator` at fixed fractions of its budget. Running again resumes.

Layout of a study folder:
    DIR/spec.json                  the spec and its identity (a folder made by another spec is refused)
    DIR/costs.json                 with `budget: {steps: S, equal: time}`: each arm's seconds per step, measured
                                   once (sagan.study.cost); they set its step budget
    DIR/runs/ARM/seed_S/           an ordinary run (sample, eval, attention, report work on it)
    DIR/runs/ARM/seed_S/study_run.json   that run's scores at each budget fraction, CPU, images/s; or why it
                                         failed (a diverged run is a result: recorded, not run again)
    DIR/study.json, study.md, study.html   written by `write_outputs` from the run records

A spec with `record: FOLDER` also keeps every finished run's record, and the classifier that scored it, in that
folder of the repository (sagan.study.record): the study then goes on in a fresh checkout, where the run folders
are gone, skipping the recorded runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from sagan.checkpoint import latest_checkpoint
from sagan.errors import ConfigError, SaganError
from sagan.study.files import read_json, write_json
from sagan.study.folder import MARKER, claim_folder
from sagan.study.machine import cpu_name, device_name
from sagan.study.record import COSTS, study_record
from sagan.study.spec import Arm, StudySpec

RECORD = "study_run.json"


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / arm / f"seed_{seed}"


def prepare_folder(spec: StudySpec, out: Path, fresh: bool) -> None:
    """Create the study folder, or check that it holds this spec's study; `fresh` starts it over."""
    claim_folder(out, {"identity": spec.identity(), "spec": spec.to_dict()},
                 ("runs", "study.json", "study.md", "study.html", COSTS, MARKER), fresh)


def kept_costs(spec: StudySpec, out: Path) -> dict | None:
    """An `equal: time` study's measured costs as kept ({"cpu", "threads", "seconds_per_step": {arm: s}, "how"}):
    the record's, else the study folder's; None when neither holds them."""
    store = study_record(spec)
    return (store.costs() if store is not None else None) or read_json(out / COSTS)


def timed_spec(spec: StudySpec, out: Path, threads: int, say: Callable[[str], None]) -> StudySpec:
    """An `equal: time` spec with its arms' seconds per step: the kept ones, or measured here, one arm at a time
    at the threads each run will have, and kept in the study folder and the record (a later session, on any CPU,
    then gives every arm the same steps)."""
    from sagan.study.cost import kept_or_measured

    untimed = spec.at_budget_steps()  # the configs to time
    jobs = [(a.name, untimed.train_config(a, spec.seeds[0], run_dir(out, a.name, spec.seeds[0]), threads))
            for a in spec.arms]
    store = study_record(spec)

    def write(body: dict) -> None:
        write_json(out / COSTS, body)
        if store is not None:
            store.keep_costs(body)

    return spec.timed(kept_or_measured(jobs, kept_costs(spec, out), write, threads, say, f"study {spec.name}"))


def _evaluate(spec: StudySpec, cfg, checkpoint: Path, state: dict) -> dict:
    from sagan.checkpoint import load_generator
    from sagan.data.run import RunData
    from sagan.metrics import evaluate_generator
    from sagan.metrics.evaluation import scores_only

    g_ema, _ = load_generator(checkpoint, ema=True)
    against = spec.eval.get("against", cfg.data)
    own = RunData.from_config(cfg).label_options(against)  # the run's own data keeps its labels file
    result = evaluate_generator(g_ema, against=against, num=spec.eval["num"], seed=0,
                                metrics=spec.eval["metrics"], features=spec.eval.get("features"),
                                data_root=cfg.data_root, step=state["step"], ema=True, checkpoint=str(checkpoint),
                                **own)
    return {"scores": scores_only(result), "provenance": result["provenance"]}


def _diverged(exc: SaganError) -> str | None:
    """Why a run failed, when train() stopped it on a non-finite loss (raised while handling FloatingPointError);
    None for any other error (a missing data set, say), which stops the study."""
    if not isinstance(exc.__context__, FloatingPointError):
        return None
    return "diverged: " + str(exc).split(", so the run stopped")[0]  # not train's advice on resuming


def run_one(spec: StudySpec, arm: Arm, seed: int, out: Path, threads: int = 0) -> dict:
    """Train one (arm, seed) run to its budget, scoring it at each budget fraction; resumes where it stopped. A
    run that diverges is recorded as failed, with the reason, and is not run again. With a record folder, a run
    it holds is not run again, and a run that ends is kept there."""
    from sagan.metrics.classifier import classifier_from

    store = study_record(spec)
    if store is not None and (kept := store.load(arm.name, seed)) is not None:
        return kept
    with classifier_from(store.scorer_dir if store is not None else None):
        record = _train_and_score(spec, arm, seed, out, threads, store)
    if store is not None and record["done"]:
        store.save(record)
    return record


def _train_and_score(spec: StudySpec, arm: Arm, seed: int, out: Path, threads: int, store) -> dict:
    from sagan.config import apply_overrides
    from sagan.train import train

    folder = run_dir(out, arm.name, seed)
    record_path = folder / RECORD
    record = read_json(record_path) or {"arm": arm.name, "seed": seed, "segments": [], "done": False}
    if record["done"]:
        return record
    base_cfg = spec.train_config(arm, seed, folder, threads)
    for fraction in spec.fractions:
        if any(s["fraction"] == fraction for s in record["segments"]):
            continue
        latest = latest_checkpoint(folder)
        done_steps = latest[1]["step"] if latest else 0
        done_seconds = latest[1].get("train_seconds", 0.0) if latest else 0.0
        if spec.budget_kind == "steps":
            target = max(1, round(fraction * spec.steps_for(arm)))
            segment_cfg = apply_overrides(base_cfg, {"max_steps": target}) if done_steps < target else None
        else:
            remaining = fraction * spec.budget["minutes"] * 60 - done_seconds
            segment_cfg = apply_overrides(base_cfg, {"max_minutes": max(remaining, 1e-3) / 60}) \
                if remaining > 0 else None
        if segment_cfg is not None:
            try:
                train(segment_cfg)
            except SaganError as exc:
                if (reason := _diverged(exc)) is None:
                    raise
                record.update(done=True, failed=reason)
                write_json(record_path, record)
                return record
        path, state = latest_checkpoint(folder)
        seconds = state.get("train_seconds", 0.0)
        images = state["step"] * base_cfg.batch_size * base_cfg.n_dis
        segment = {"fraction": fraction, "step": state["step"], "minutes": round(seconds / 60, 4),
                   "images_per_sec": round(images / max(seconds, 1e-9), 2), "cpu": cpu_name(),
                   "device": device_name(base_cfg.device),
                   "threads": threads or None, **_evaluate(spec, base_cfg, path, state)}
        if store is not None:  # scored by the record's scorer, or refused before any more training
            store.keep_scorer(segment["provenance"])
        record["segments"].append(segment)
        write_json(record_path, record)
    record["done"] = True
    write_json(record_path, record)
    return record


def _run_job(spec: StudySpec, out: str, threads: int, job: tuple[str, int]) -> dict:
    arm_name, seed = job
    return run_one(spec, spec.arm(arm_name), seed, Path(out), threads)


def jobs_in_order(spec: StudySpec, seeds: Sequence[int], only: Sequence[str] | None) -> list[tuple[Arm, int]]:
    """Seed-major: every arm's first seed, then every arm's second seed, ... (a study stopped early still compares
    all arms)."""
    arms = [a for a in spec.arms if not only or a.name in only]
    return [(arm, seed) for seed in seeds for arm in arms]


def run_study(spec: StudySpec, out: str | Path, seeds: Sequence[int] | None = None, only: Sequence[str] | None = None,
              parallel: int = 1, fresh: bool = False, say: Callable[[str], None] | None = None) -> list[dict]:
    """Run (or resume) every (arm, seed) of the study; returns the run records, seed-major. On SIGINT/SIGTERM
    every run stops cleanly (sagan.study.jobs) and `Interrupted` is raised."""
    say = say or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out)
    seeds = list(seeds if seeds is not None else spec.seeds)
    unknown = [name for name in (only or []) if name not in [a.name for a in spec.arms]]
    if unknown:
        raise ConfigError(f"--only names no arm {unknown[0]!r}; the arms are {', '.join(a.name for a in spec.arms)}")
    if parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {parallel}")
    prepare_folder(spec, out, fresh)
    if (store := study_record(spec)) is not None:
        store.prepare(fresh)
    from sagan.study.jobs import run_jobs, threads_per_job

    if spec.equal_time:
        spec = timed_spec(spec, out, threads_per_job(parallel), say)
    jobs = jobs_in_order(spec, seeds, only)
    total = len(jobs)

    records: dict[tuple[str, int], dict] = {}

    def report(i: int, job: tuple[str, int], record: dict) -> None:
        records[job] = record
        where = f"study {spec.name}: [{i}/{total}] {record['arm']} seed {record['seed']}"
        if record.get("failed"):
            again = f"its folder and {spec.record}/finished/ARM/seed_S.json" if spec.record else "its folder"
            say(f"{where}: FAILED, {record['failed']}; the study goes on (delete {again} to run it again)")
            return
        last = record["segments"][-1] if record["segments"] else {}
        scores = ", ".join(f"{k} {v:.4g}" for k, v in last.get("scores", {}).items()
                           if k.split("_")[0] in ("fd", "fid", "precision", "recall"))
        say(f"{where}: {last.get('step')} steps in {last.get('minutes')} min of training "
            f"({last.get('images_per_sec')} img/s); {scores}")

    named = [(arm.name, seed) for arm, seed in jobs]
    run_jobs(named, partial(_run_job, spec, str(out)), report, parallel)
    return [records[job] for job in named]


def collect_records(spec: StudySpec, out: Path) -> list[dict]:
    """Every run record in the study folder (finished, failed, or scored at some fraction) or in the spec's record
    folder (which wins: it is what every session shares), seed-major."""
    store = study_record(spec)
    kept = {(r["arm"], r["seed"]): r for r in store.records()} if store is not None else {}
    seeds = sorted({int(p.name.split("_", 1)[1]) for p in (out / "runs").glob("*/seed_*")} | set(spec.seeds)
                   | {seed for _, seed in kept})
    found = []
    for arm, seed in jobs_in_order(spec, seeds, None):
        record = kept.get((arm.name, seed)) or read_json(run_dir(out, arm.name, seed) / RECORD)
        if record and (record.get("segments") or record.get("failed")):
            found.append(record)
    return found
