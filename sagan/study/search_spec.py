"""A search spec: instead of a fixed list of arms, the train-config keys to vary (a grid, or ranges to sample),
a metric to rank by, a first step budget and a reduction factor eta (successive halving, sagan/study/rungs.py).

    name: fmnist-search
    base: {data: fashion-mnist}            # or a recipe file: base: configs/emoji64.yaml
    search:
      space:                               # or grid: {lr_d: [2.0e-4, 4.0e-4], batch_size: [16, 32]}
        lr_d: {log_uniform: [1.0e-4, 1.0e-3]}
        model_args.g_ch: {choice: [16, 32]}
        n_dis: {int: [1, 3]}
        recon: {together: [{}, {recon_weight: 1.0, model_args.d_recon: 8}]}   # keys that only work together
      samples: 9                           # configurations drawn from the space (a grid runs all of its own)
      metric: fd_fmnist                    # ranked by; direction from the metric, or direction: maximize
      first_steps: 200                     # the first rung's budget; each rung eta times longer
      equal: time                          # optional: every configuration gets the base's time, not its steps
      eta: 3
    seeds: [1, 2, 3]                       # the finalists and the baseline (the base) are run again over these
    eval: {metrics: [fd, pr], num: 2000, features: fmnist}

Everything that can be wrong is found here, before any run starts, by building every configuration's train
config and model (the checks of an ordinary study, sagan/study/spec.py).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from sagan.config import FIELDS, load_yaml
from sagan.errors import ConfigError, did_you_mean
from sagan.metrics.evaluation import parse_metrics
from sagan.study.compare import higher_is_better, main_metrics
from sagan.study.rungs import rung_budgets, rung_sizes
from sagan.study.spec import RUN_KEYS, StudySpec, check_keys, parse_record, parse_spec, read_spec_file

SEARCH_SPEC_KEYS = ("name", "base", "search", "seeds", "eval", "record")
SEARCH_KEYS = ("space", "grid", "samples", "sampler_seed", "metric", "direction", "first_steps", "eta", "rungs",
               "finalists", "seed", "equal")
EQUAL = ("steps", "time")
RANGES = ("log_uniform", "uniform", "int", "choice", "together")
BASELINE = "base"
# the eval metric that fills each score family
_FAMILY = {"fd": "fd", "fid": "fd", "kid": "kid", "is": "is", "precision": "pr", "recall": "pr", "density": "dc",
           "coverage": "dc"}


@dataclass
class SearchSpec:
    name: str
    base: dict
    space: dict  # key -> {range: bounds}; empty for a grid
    grid: dict  # key -> [values]; empty for a sampled space
    samples: int
    sampler_seed: int
    metric: str
    maximize: bool
    first_steps: int
    eta: int
    rungs: int
    finalists: int
    seed: int  # the screening runs' seed
    seeds: list[int]  # the final runs' seeds
    eval: dict
    # a folder in the repository that keeps every rung's scores, the drawn configurations, the scorer and the final
    # study's record (sagan.study.search_record), so the search goes on in a later session's checkout
    record: str | None = None
    # what the configurations of a rung share: its steps (budgets are generator steps), or its time (budgets are the
    # base's steps; each configuration gets the steps that take as long at its measured seconds per step,
    # sagan.study.cost), so a configuration that is slower per step is not given more compute
    equal: str = "steps"

    @property
    def sizes(self) -> list[int]:
        return rung_sizes(self.samples, self.eta, self.rungs)

    @property
    def budgets(self) -> list[int]:
        return rung_budgets(self.first_steps, self.eta, self.rungs)

    def recipe(self, overrides: dict) -> dict:
        """A configuration as a recipe file's mapping: the base with the configuration's settings (model_args
        merged), no run keys (budget, seed, out: the user's to give)."""
        recipe = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.base.items()}
        for key, value in nested(overrides).items():
            recipe[key] = {**recipe.get(key, {}), **value} if key == "model_args" else value
        return recipe

    def steps_at(self, rung: int, cid: str, costs: dict | None = None) -> int:
        """A configuration's step budget at a rung: the rung's, or with `equal: time` the steps that take as long
        as the base's budget ({id: seconds per step}, with the base's under "base"). A configuration whose loss
        became non-finite while it was timed (None) gets the rung's steps: its run fails and is not promoted."""
        if self.equal == "steps":
            return self.budgets[rung]
        if not costs or cid not in costs or not costs.get(BASELINE):
            raise ConfigError(f"search {self.name!r}: no measured seconds per step for {cid!r}, which `equal: time` "
                              "needs")
        if costs[cid] is None:
            return self.budgets[rung]
        return max(1, round(self.budgets[rung] * costs[BASELINE] / costs[cid]))

    def final_spec(self, finalists: list[dict], seeds: list[int] | None = None, costs: dict | None = None
                   ) -> StudySpec:
        """The study that runs the finalists ({id, overrides}) and the base over the seeds at the last rung's
        budget (with `equal: time`, each finalist at its own steps of the same time) and compares them by the
        study's intervals."""
        return parse_spec(_final_dict(self, finalists, seeds or self.seeds, costs), f"search {self.name!r}")

    def to_dict(self) -> dict:
        return {"name": self.name, "base": self.base, "seeds": self.seeds, "eval": self.eval,
                "search": {"space": self.space, "grid": self.grid, "samples": self.samples,
                           "sampler_seed": self.sampler_seed, "metric": self.metric,
                           "direction": "maximize" if self.maximize else "minimize", "first_steps": self.first_steps,
                           "eta": self.eta, "rungs": self.rungs, "finalists": self.finalists, "seed": self.seed,
                           **({"equal": self.equal} if self.equal != "steps" else {})},
                **({"record": self.record} if self.record else {})}

    def identity(self) -> str:
        """A hash of what makes two searches the same (everything but the final seeds, which may grow, and where
        the record is kept)."""
        body = {k: v for k, v in self.to_dict().items() if k not in ("seeds", "record")}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def nested(overrides: dict) -> dict:
    """{"model_args.g_ch": 16, "lr_d": 1e-4} -> {"model_args": {"g_ch": 16}, "lr_d": 1e-4} (an arm's form)."""
    out: dict = {}
    for key, value in overrides.items():
        if key.startswith("model_args."):
            out.setdefault("model_args", {})[key.split(".", 1)[1]] = value
        else:
            out[key] = value
    return out


def final_record(record: str) -> str:
    """Where a search's record keeps its final study's record."""
    return str(Path(record) / "final")


def _final_dict(spec: SearchSpec, finalists: list[dict], seeds: list[int], costs: dict | None = None) -> dict:
    timed = spec.equal == "time" and costs is not None  # without costs (a spec check): the rung's steps
    return {"name": f"{spec.name}-final", "base": spec.base, "budget": {"steps": spec.budgets[-1]}, "seeds": seeds,
            "eval": spec.eval, "baseline": BASELINE, **({"record": final_record(spec.record)} if spec.record else {}),
            "arms": [{"name": BASELINE}] + [{"name": c["id"], "overrides": nested(c["overrides"]),
                                             **({"steps": spec.steps_at(spec.rungs - 1, c["id"], costs)} if timed
                                                else {})}
                                            for c in finalists]}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_config_key(key: object, where: str) -> None:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where} keys must be train-config keys, got {key!r}")
    if key in RUN_KEYS:
        raise ConfigError(f"{where} varies {key!r}, which the search sets for every run")
    if key == "model_args":
        raise ConfigError(f"{where}: vary one model option at a time, e.g. model_args.g_ch")
    if not key.startswith("model_args.") and key not in FIELDS:
        raise ConfigError(f"unknown config key {key!r} in {where}{did_you_mean(key, list(FIELDS))}")


def _check_range(key: str, raw: object) -> dict:
    where = f"search space {key!r}"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{where} must be one of {{log_uniform: [lo, hi]}}, {{uniform: [lo, hi]}}, "
                          "{int: [lo, hi]}, {choice: [a, b, ...]}, {together: [{key: value, ...}, ...]}")
    (kind, bounds), = raw.items()
    if kind not in RANGES:
        raise ConfigError(f"unknown range {kind!r} in {where}{did_you_mean(str(kind), RANGES)}; use "
                          f"{', '.join(RANGES)}")
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise ConfigError(f"{where}: choice needs a non-empty list of values")
        return {kind: bounds}
    if kind == "together":
        if not isinstance(bounds, list) or len(bounds) < 2 or not all(isinstance(b, dict) for b in bounds):
            raise ConfigError(f"{where}: together needs a list of at least 2 mappings of train-config keys set "
                              "together, e.g. [{}, {recon_weight: 1.0, model_args.d_recon: 8}]")
        for mapping in bounds:
            for inner in mapping:
                _check_config_key(inner, where)
        return {kind: bounds}
    if not isinstance(bounds, list) or len(bounds) != 2 or not all(_is_number(b) for b in bounds):
        raise ConfigError(f"{where}: {kind} needs [low, high], got {bounds!r}")
    lo, hi = bounds
    if not lo < hi:
        raise ConfigError(f"{where}: {kind} needs low < high, got [{lo}, {hi}]")
    if kind == "log_uniform" and lo <= 0:
        raise ConfigError(f"{where}: log_uniform needs a positive low bound, got {lo}")
    if kind == "int" and not (_is_int(lo) and _is_int(hi)):
        raise ConfigError(f"{where}: int needs integer bounds, got [{lo}, {hi}]")
    return {kind: [lo, hi]}


def _check_together_keys(space: dict) -> None:
    """A key set by a together and also varied on its own (or by two togethers) would be drawn twice."""
    seen: dict[str, str] = {key: key for key, rng in space.items() if "together" not in rng}
    for name, rng in space.items():
        for inner in {k for mapping in rng.get("together", []) for k in mapping}:
            if inner in seen:
                raise ConfigError(f"search space {name!r} sets {inner!r}, which {seen[inner]!r} varies too; vary "
                                  "each key in one place")
            seen[inner] = name


def _load_base(raw: object, source: str) -> dict:
    """The base train config: a mapping, or a recipe file (whose run keys, e.g. max_minutes, the search sets)."""
    if isinstance(raw, str):
        data = load_yaml(raw)
        return {k: v for k, v in data.items() if k not in RUN_KEYS}
    if not isinstance(raw, dict):
        raise ConfigError(f"base in {source} must be a mapping of train-config keys or a recipe file (YAML)")
    for key in raw:
        if key in RUN_KEYS:
            raise ConfigError(f"base sets {key!r}, which the search sets for every run")
    return dict(raw)


def _metric(raw: object, metrics: tuple[str, ...]) -> str:
    if not isinstance(raw, str) or not main_metrics([raw]):
        raise ConfigError(f"search metric must be a score such as fd_fmnist, kid, precision or recall, got {raw!r}")
    family = raw.split("_")[0]
    if _FAMILY[family] not in metrics:
        raise ConfigError(f"search metric {raw!r} is not scored: add {_FAMILY[family]!r} to eval metrics "
                          f"(now {', '.join(metrics)})")
    return raw


def parse_search_spec(data: dict, source: str = "the spec") -> tuple[SearchSpec, list[dict]]:
    """Validate a search spec mapping and draw its configurations: (spec, [{id, overrides}]); ConfigError naming
    the first problem."""
    check_keys(source, data, SEARCH_SPEC_KEYS)
    for key in ("name", "base", "search"):
        if key not in data:
            raise ConfigError(f"{source} has no {key!r}")
    if not isinstance(data["name"], str) or not data["name"]:
        raise ConfigError(f"name in {source} must be a non-empty string")
    base = _load_base(data["base"], source)
    s = data["search"]
    check_keys("search", s, SEARCH_KEYS)
    if ("space" in s) == ("grid" in s):
        raise ConfigError("search needs exactly one of space (ranges to sample) or grid (lists of values)")
    space, grid = {}, {}
    if "space" in s:
        if not isinstance(s["space"], dict) or not s["space"]:
            raise ConfigError("search space is empty: name at least one train-config key to vary")
        for key, raw in s["space"].items():
            space[key] = _check_range(key, raw)
            if "together" not in space[key]:  # a together's name is a label; its mappings hold the config keys
                _check_config_key(key, "search space")
        _check_together_keys(space)
        samples = s.get("samples")
        if not _is_int(samples) or samples < 1:
            raise ConfigError(f"search samples must be a positive integer (configurations to draw), got {samples!r}")
    else:
        if not isinstance(s["grid"], dict) or not s["grid"]:
            raise ConfigError("search grid is empty: name at least one train-config key and its values")
        for key, values in s["grid"].items():
            _check_config_key(key, "search grid")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"search grid {key!r} needs a non-empty list of values")
            grid[key] = values
        if "samples" in s:
            raise ConfigError("search samples is for a space: a grid runs every combination of its values")
        samples = len(list(itertools.product(*grid.values())))
    sampler_seed = s.get("sampler_seed", 0)
    if not _is_int(sampler_seed):
        raise ConfigError(f"search sampler_seed must be an integer, got {sampler_seed!r}")
    eta = s.get("eta", 3)
    if not _is_int(eta) or eta < 2:
        raise ConfigError(f"search eta must be an integer >= 2 (keep the best 1/eta of each rung), got {eta!r}")
    first = s.get("first_steps")
    if not _is_int(first) or first <= 0:
        raise ConfigError(f"search first_steps must be a positive integer (the first rung's step budget), "
                          f"got {first!r}")
    most = len(rung_sizes(samples, eta))
    rungs = s.get("rungs", most)
    if not _is_int(rungs) or not 1 <= rungs <= most:
        raise ConfigError(f"search rungs must be an integer from 1 to {most} for {samples} configuration(s) at eta "
                          f"{eta}, got {rungs!r}")
    last = rung_sizes(samples, eta, rungs)[-1]
    finalists = s.get("finalists", last)
    if not _is_int(finalists) or not 1 <= finalists <= last:
        raise ConfigError(f"search finalists must be an integer from 1 to {last} (the last rung's configurations), "
                          f"got {finalists!r}")
    equal = s.get("equal", "steps")
    if equal not in EQUAL:
        raise ConfigError(f"search equal must be steps or time (what a rung's configurations share), got {equal!r}")
    seed = s.get("seed", 0)
    if not _is_int(seed):
        raise ConfigError(f"search seed must be an integer (the screening runs' seed), got {seed!r}")
    seeds = data.get("seeds", [1, 2, 3])
    if (not isinstance(seeds, list) or len(seeds) < 3 or not all(_is_int(x) for x in seeds)
            or len(set(seeds)) < len(seeds)):
        raise ConfigError(f"seeds must be a list of at least 3 distinct integers (the finalists are run again over "
                          f"them), got {seeds!r}")
    if seed in seeds:
        # the finalists won on the screening seed's scores: counting that run again would favour them
        raise ConfigError(f"seeds {seeds} include the screening seed {seed}; the final runs need fresh seeds")
    ev = data.get("eval") or {}
    if not isinstance(ev, dict):
        raise ConfigError("eval must be a mapping")
    metric = _metric(s.get("metric"), parse_metrics(ev.get("metrics", ["fd", "kid", "pr"])))
    direction = s.get("direction", "maximize" if higher_is_better(metric) else "minimize")
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"search direction must be minimize or maximize, got {direction!r}")
    spec = SearchSpec(data["name"], base, space, grid, samples, sampler_seed, metric, direction == "maximize", first,
                      eta, rungs, finalists, seed, list(seeds), dict(ev), parse_record(data), equal)
    configs = draw_configs(spec)
    # every configuration's train config and model, and the eval, checked as a study's arms are
    spec.eval = parse_spec(_final_dict(spec, configs, spec.seeds), f"search {spec.name!r}").eval
    return spec, configs


def _draw_space(spec: SearchSpec) -> list[dict]:
    """`samples` distinct configurations drawn by Optuna's RandomSampler with a fixed seed (in memory: the drawn
    list is written to the search folder once, and a rerun reads it instead of drawing again)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {}
    for key, rng in spec.space.items():
        (kind, bounds), = rng.items()
        if kind in ("choice", "together"):  # by index: Optuna's choices are scalars (a choice may be a list)
            distributions[key] = CategoricalDistribution(list(range(len(bounds))))
        elif kind == "int":
            distributions[key] = IntDistribution(bounds[0], bounds[1])
        else:
            distributions[key] = FloatDistribution(float(bounds[0]), float(bounds[1]), log=kind == "log_uniform")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.sampler_seed))
    drawn: list[dict] = []
    for _ in range(100 * spec.samples):
        params = study.ask(distributions).params
        config: dict = {}
        for k, v in params.items():
            rng = spec.space[k]
            if "together" in rng:
                config.update(rng["together"][v])
            else:
                config[k] = rng["choice"][v] if "choice" in rng else v
        if config not in drawn:
            drawn.append(config)
        if len(drawn) == spec.samples:
            return drawn
    raise ConfigError(f"the search space holds fewer than {spec.samples} distinct configurations; lower samples "
                      "or widen the space")


def draw_configs(spec: SearchSpec) -> list[dict]:
    """The search's configurations, [{id: c00, overrides: {key: value}}], in a fixed order."""
    if spec.grid:
        keys = list(spec.grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*spec.grid.values())]
    else:
        combos = _draw_space(spec)
    width = len(str(len(combos) - 1))
    return [{"id": f"c{i:0{max(2, width)}d}", "overrides": c} for i, c in enumerate(combos)]


def is_search_spec(path: str | Path) -> bool:
    """Whether a spec file asks for a search (a top-level `search`); False for anything else, whose errors the
    study's own loader reports."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "search" in data


def load_search_spec(path: str | Path) -> tuple[SearchSpec, list[dict]]:
    """Read and validate a search spec file and draw its configurations."""
    data = read_spec_file(path, "search spec", "name, base, search, seeds, eval, record")
    return parse_search_spec(data, str(path))
