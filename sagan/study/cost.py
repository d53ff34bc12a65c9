"""What one training step of a config costs on this machine, in seconds: measured by training it (its data, model,
batch size, n_dis, loss terms and augmentation) for a few steps. A search with `equal: time` gives each
configuration the steps that take as long as the base's budget, so a configuration that is slower per step does
not win by being given more compute (the flaw of equal-step rungs: the emoji search's rung 1 gave one
configuration 3.2x another's seconds).

Measured, not counted: on the 2-core Intel Xeon, torch's FLOP formulas predicted these seconds badly. Over the
emoji search's 9 rung-1 configurations the measured seconds per TFLOP of a step ranged from 6 to 24 (small
widths, attention and the regularisers' extra passes cost more time than their FLOPs say).

The seconds are measured once per search or study, one configuration at a time, at the threads each run will
have, and kept (the folder's costs.json and its record): a resumed search or study, on this CPU or another, uses
the same step budgets, so its runs stay comparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sagan.config import TrainConfig

WARMUP_STEPS = 2  # the first steps allocate buffers and warm the caches
HOW = (f"mean wall-clock seconds of a generator step over reg_every steps after {WARMUP_STEPS} warm-up steps, one "
       "configuration at a time (sagan.study.cost)")


def seconds_per_step(cfg: TrainConfig) -> float | None:
    """The mean wall-clock seconds of one generator step (its n_dis D updates, the G update and G_ema's), over
    cfg.reg_every steps after a warm-up, so a lazy regulariser's every-k-th update counts its share. A loss that
    becomes non-finite ends the timing: the mean of the steps timed before, or None if there were none."""
    import torch

    from sagan.models import model_config
    from sagan.regularize import check_model
    from sagan.runtime import setup_runtime, shutdown_runtime
    from sagan.train import build_parts, train_step, wrap_networks

    cfg.validate()
    check_model(cfg, model_config(cfg.model, **cfg.model_args))
    rt = setup_runtime(cfg.device, cfg.precision, cfg.threads, cfg.deterministic, cfg.dist_timeout)
    try:
        parts = build_parts(cfg, rt)
        wrap_networks(parts, cfg, rt)
        steps, timed = max(cfg.reg_every, 4), 0
        try:
            for step in range(WARMUP_STEPS):
                train_step(parts, cfg, rt, step, measure_grads=False)
            if rt.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for step in range(WARMUP_STEPS, WARMUP_STEPS + steps):
                train_step(parts, cfg, rt, step, measure_grads=False)
                timed += 1
        except FloatingPointError:  # the configuration diverged: its rung-1 run will fail and never be promoted
            pass
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / timed if timed else None
    finally:
        shutdown_runtime(rt)


def measure_costs(jobs: Sequence[tuple[str, TrainConfig]], known: dict[str, float | None],
                  keep: Callable[[dict], None], say: Callable[[str], None]) -> dict[str, float | None]:
    """{name: seconds per step} for each (name, train config), one at a time; the ones in `known` are not measured
    again, and `keep` is called after each measurement (a killed measurement resumes where it stopped). None: the
    loss became non-finite before a step was timed."""
    costs = dict(known)
    for name, cfg in jobs:
        if name in costs:
            continue
        seconds = seconds_per_step(cfg)
        costs[name] = None if seconds is None else round(seconds, 5)
        keep(costs)
        say(f"measured {name}: " + ("the loss became non-finite before a step was timed" if seconds is None
                                    else f"{costs[name]:.3f} s per step"))  # the kept figure
    return costs


def kept_or_measured(jobs: Sequence[tuple[str, TrainConfig]], kept: dict | None, write: Callable[[dict], None],
                     threads: int, say: Callable[[str], None], what: str) -> dict[str, float | None]:
    """{name: seconds per step} for each (name, train config): the kept ones (a costs.json body: {"cpu", "threads",
    "seconds_per_step", "how"}) when they hold every name, else measured here, one at a time, at `threads`, with
    `write(body)` after each measurement. An incomplete measurement from another CPU is started over: the step
    budgets compare seconds from one CPU."""
    from sagan.study.machine import cpu_name

    kept = kept or {}
    known = kept.get("seconds_per_step") or {}
    if all(name in known for name, _ in jobs):
        return known
    if kept.get("cpu") != cpu_name():
        known = {}

    def keep(costs: dict) -> None:
        write({"cpu": cpu_name(), "threads": threads or None, "seconds_per_step": costs, "how": HOW})

    say(f"{what}: equal time: measuring the seconds per step of {len(jobs)} configurations, one at a time "
        f"({len(known)} measured before)")
    return measure_costs(jobs, known, keep, say)
