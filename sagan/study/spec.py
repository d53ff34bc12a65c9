"""A study spec: a base train config, a budget, seeds, an evaluation and a list of arms (YAML, validated).

Everything that can be wrong with a spec is found here, before any run starts: an unknown key, an unknown
model, two arms of one name, an override the train config refuses, a missing budget.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from sagan.config import NO_STEP_LIMIT, TrainConfig, apply_overrides
from sagan.errors import ConfigError, did_you_mean
from sagan.metrics.evaluation import parse_metrics
from sagan.models import model_config

SPEC_KEYS = ("name", "base", "budget", "seeds", "eval", "baseline", "arms", "record")
BUDGET_KEYS = ("minutes", "steps", "equal")
EQUAL = ("steps", "time")  # what a steps budget's arms share: the steps, or the baseline's time at those steps
EVAL_KEYS = ("metrics", "num", "features", "against", "fractions", "primary")
ARM_KEYS = ("name", "overrides", "steps")
# keys a study sets itself for every run: neither the base nor an arm may set them (a steps budget would
# otherwise be cut short by a base's max_minutes, unnoticed)
RUN_KEYS = ("out", "seed", "max_steps", "max_minutes", "resume")


@dataclass
class Arm:
    name: str
    overrides: dict = field(default_factory=dict)
    # this arm's own step budget in a steps study (None: the spec's): a search with `equal: time` gives each arm
    # the steps that take it as long as the base's budget (sagan.study.cost)
    steps: int | None = None


class NotTimed(ConfigError):
    """An `equal: time` study asked for an arm's steps before its seconds per step were measured."""


@dataclass
class StudySpec:
    name: str
    base: dict
    budget: dict  # {"minutes": m}, {"steps": s} or {"steps": s, "equal": "time"}
    seeds: list[int]
    eval: dict
    baseline: str
    arms: list[Arm]
    # a folder in the repository that keeps every finished run's record and the scorer (sagan.study.record), so
    # the study goes on in a fresh checkout; relative to where `sagan study` runs, like the data paths
    record: str | None = None
    # with `equal: time`: {arm: measured seconds per step} (sagan.study.cost), which set each arm's steps; not part
    # of the spec (nor of its identity): measured by the study runner, or read from where it kept them
    costs: dict | None = field(default=None, compare=False)

    @property
    def budget_kind(self) -> str:
        return "minutes" if "minutes" in self.budget else "steps"

    @property
    def equal_time(self) -> bool:
        """Every arm trains as long as the baseline takes for the budget's steps, at its own seconds per step."""
        return self.budget.get("equal") == "time"

    def timed(self, costs: dict) -> StudySpec:
        """This spec with the measured seconds per step that set its arms' steps."""
        return replace(self, costs=dict(costs))

    def at_budget_steps(self) -> StudySpec:
        """With `equal: time`, every arm at the budget's steps: for checks and timing, where the steps do not matter."""
        return self.timed({a.name: 1.0 for a in self.arms})

    @property
    def fractions(self) -> list[float]:
        """The budget fractions at which every run is scored; the last is always 1."""
        return sorted({float(f) for f in self.eval.get("fractions", (0.25, 0.5, 0.75))} | {1.0})

    def steps_for(self, arm: Arm) -> int:
        """The arm's step budget in a steps study: its own, else the spec's; with `equal: time`, the steps that take
        it as long as the baseline's budget at the measured seconds per step (an arm whose loss became non-finite
        while it was timed gets the budget's steps: it fails there)."""
        if arm.steps or not self.equal_time:
            return int(arm.steps or self.budget["steps"])
        if self.costs is None or arm.name not in self.costs or not self.costs.get(self.baseline):
            raise NotTimed(f"study {self.name!r}: no measured seconds per step for arm {arm.name!r} (and the "
                           f"baseline {self.baseline!r}), which `equal: time` needs to set its steps")
        if self.costs[arm.name] is None:
            return int(self.budget["steps"])
        return max(1, round(self.budget["steps"] * self.costs[self.baseline] / self.costs[arm.name]))

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def train_config(self, arm: Arm, seed: int, out: str | Path, threads: int = 0) -> TrainConfig:
        """The run's full train config: base, then the arm's overrides, then what the study sets (threads only
        when given: `--parallel P` gives each run cores/P)."""
        cfg = apply_overrides(TrainConfig(), _flatten_model_args(self.base))
        cfg = apply_overrides(cfg, _flatten_model_args(arm.overrides))
        run = {"out": str(out), "seed": seed, "resume": True, **({"threads": threads} if threads else {})}
        if self.budget_kind == "steps":
            run["max_steps"] = self.steps_for(arm)
        else:
            run["max_steps"] = NO_STEP_LIMIT  # the clock stops the run
        return apply_overrides(cfg, run)

    def identity(self) -> str:
        """A hash of what makes two studies comparable (everything but the seeds, which may grow, where the record
        is kept, and which scores are primary: that changes how the runs are judged, not the runs)."""
        body = {k: v for k, v in self.to_dict().items() if k not in ("seeds", "record")}
        body["eval"] = {k: v for k, v in body["eval"].items() if k != "primary"}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"name": self.name, "base": self.base, "budget": self.budget, "seeds": self.seeds,
                "eval": self.eval, "baseline": self.baseline,
                "arms": [{"name": a.name, "overrides": a.overrides, **({"steps": a.steps} if a.steps else {})}
                         for a in self.arms],
                **({"record": self.record} if self.record else {})}


def _flatten_model_args(overrides: dict) -> dict:
    """{model_args: {g_ch: 8}} -> {model_args.g_ch: 8}, so an arm adds to the base's model_args."""
    out = {}
    for key, value in overrides.items():
        if key == "model_args":
            if not isinstance(value, dict):
                raise ConfigError("model_args must be a mapping of model options, e.g. {g_attention: []}")
            out.update({f"model_args.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def check_keys(where: str, mapping: object, allowed: tuple[str, ...]) -> None:
    """A one-line error for a `where` that is not a mapping or holds a key outside `allowed`."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} must be a mapping")
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} in {where}{did_you_mean(str(key), list(allowed))}; "
                              f"allowed: {', '.join(allowed)}")


def _check_run_keys(where: str, overrides: dict) -> None:
    """Keys the study owns, and evaluation during training (its minutes would count as training time)."""
    for key, value in _flatten_model_args(overrides).items():
        if key in RUN_KEYS:
            raise ConfigError(f"{where} sets {key!r}, which the study sets for every run (its budget is the "
                              "spec's budget)")
        if key == "eval_every" and value:
            raise ConfigError(f"{where} sets 'eval_every': evaluation during training would count as training "
                              "time; the study scores every run itself, at eval: fractions")


def _check_run_config(spec: StudySpec, arm: Arm) -> None:
    """Build the arm's train config and model config without training: the train config's own checks, and that
    the model has the parts its loss terms need."""
    _check_run_keys(f"arm {arm.name!r}", arm.overrides)
    if spec.equal_time and spec.costs is None:  # the check needs no timing
        spec = spec.at_budget_steps()
    try:
        cfg = spec.train_config(arm, spec.seeds[0], "unused")
    except ConfigError as exc:
        raise ConfigError(f"arm {arm.name!r}: {exc}") from None
    from sagan.regularize import check_model

    try:
        check_model(cfg, model_config(cfg.model, **cfg.model_args))  # the model has what the loss terms need
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"arm {arm.name!r}: {exc}") from None


def parse_spec(data: dict, source: str = "the spec") -> StudySpec:
    """Validate a spec mapping; ConfigError naming the first problem."""
    check_keys(source, data, SPEC_KEYS)
    for key in ("name", "base", "budget", "arms"):
        if key not in data:
            raise ConfigError(f"{source} has no {key!r}" + (": give {minutes: M} or {steps: S}" if key == "budget"
                                                             else ""))
    check_keys("budget", data["budget"], BUDGET_KEYS)
    budget = dict(data["budget"])
    equal = budget.pop("equal", "steps")
    if equal not in EQUAL:
        raise ConfigError(f"budget equal must be steps or time (what the arms share), got {equal!r}")
    if len(budget) != 1:
        raise ConfigError("budget needs exactly one of minutes or steps, e.g. {minutes: 8} or {steps: 2000}")
    (kind, amount), = budget.items()
    if equal == "time":
        if kind != "steps":
            raise ConfigError("budget equal: time goes with a steps budget ({steps: 2000, equal: time}: every arm "
                              "trains as long as the baseline's 2,000 steps take); a minutes budget is equal time "
                              "already")
        budget["equal"] = "time"  # only written when it is time, so the identity of every other spec is unchanged
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount <= 0:
        raise ConfigError(f"budget {kind} must be a positive number, got {amount!r}")
    seeds = data.get("seeds", [0, 1, 2])
    if (not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds)
            or len(set(seeds)) < len(seeds)):
        raise ConfigError(f"seeds must be a list of distinct integers, got {seeds!r}")
    ev = data.get("eval", {}) or {}
    check_keys("eval", ev, EVAL_KEYS)
    parse_metrics(ev.get("metrics", ["fd", "kid", "pr"]))
    num = ev.get("num", 5000)
    if not isinstance(num, int) or num < 10:
        raise ConfigError(f"eval num must be an integer >= 10, got {num!r}")
    for f in ev.get("fractions", []):
        if not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ConfigError(f"eval fractions must lie in (0, 1], got {f!r}")
    _check_primary(ev.get("primary"), parse_metrics(ev.get("metrics", ["fd", "kid", "pr"])))
    if not isinstance(data["arms"], list) or not data["arms"]:
        raise ConfigError("arms must be a non-empty list of {name: ..., overrides: {...}}")
    arms = []
    for i, raw in enumerate(data["arms"]):
        check_keys(f"arm {i + 1}", raw, ARM_KEYS)
        if not raw.get("name") or not isinstance(raw["name"], str):
            raise ConfigError(f"arm {i + 1} has no name")
        if any(a.name == raw["name"] for a in arms):
            raise ConfigError(f"two arms are named {raw['name']!r}; arm names must be unique")
        steps = raw.get("steps")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1
                                  or "steps" not in budget):
            raise ConfigError(f"arm {raw['name']!r}: steps must be a positive integer, in a study with a steps "
                              f"budget (the arm's own), got {steps!r}")
        if steps is not None and equal == "time":
            raise ConfigError(f"arm {raw['name']!r} sets its own steps in a study with equal: time, where the "
                              "measured seconds per step set them; drop one of the two")
        arms.append(Arm(raw["name"], dict(raw.get("overrides") or {}), steps))
    baseline = data.get("baseline", arms[0].name)
    if baseline not in [a.name for a in arms]:
        raise ConfigError(f"baseline {baseline!r} is not an arm{did_you_mean(str(baseline), [a.name for a in arms])}")
    if not isinstance(data["base"] or {}, dict):
        raise ConfigError("base must be a mapping of train config keys, e.g. {data: fashion-mnist, model: sagan_32}")
    base = dict(data["base"] or {})
    _check_run_keys("base", base)
    record = parse_record(data)
    spec = StudySpec(str(data["name"]), base, budget, list(seeds),
                     {"metrics": list(parse_metrics(ev.get("metrics", ["fd", "kid", "pr"]))), "num": num,
                      **{k: ev[k] for k in ("features", "against", "fractions", "primary") if k in ev}},
                     baseline, arms, record)
    for arm in arms:
        _check_run_config(spec, arm)
    return spec


def parse_record(data: dict) -> str | None:
    """A spec's `record:` folder (sagan.study.record), or None; a value that is no folder path is refused."""
    record = data.get("record")
    if record is not None and (not isinstance(record, str) or not record.strip()):
        raise ConfigError(f"record must be a folder path (e.g. docs/studies/records/{data.get('name')}/), "
                          f"got {record!r}")
    return record


def read_spec_file(path: str | Path, what: str, keys: str) -> dict:
    """A spec file's YAML mapping; a missing file, bad YAML or no mapping is one line naming `what` it should be
    and the `keys` it should hold."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping ({keys})")
    return data


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec file."""
    data = read_spec_file(path, "study spec", "name, base, budget, seeds, eval, baseline, arms")
    return parse_spec(data, str(path))


# the score names each metric group of `eval: metrics` writes (sagan.metrics.evaluation)
_SCORES_OF = {"fd": ("fd",), "fid": ("fid",), "kid": ("kid",), "is": ("is",), "pr": ("precision", "recall"),
              "dc": ("density", "coverage")}


def _check_primary(primary, metrics) -> None:
    """`eval: primary` lists score names the study's metrics write (fd, kid, precision, ... with or without the
    feature suffix): the scores whose comparisons are tested."""
    if primary is None:
        return
    if not isinstance(primary, list) or not primary or not all(isinstance(p, str) and p for p in primary):
        raise ConfigError(f"eval primary must be a non-empty list of score names, e.g. [fd], got {primary!r}")
    known = [name for m in metrics for name in _SCORES_OF.get(m, (m,))]
    for p in primary:
        if p.split("_")[0] not in known:
            raise ConfigError(f"eval primary names {p!r}, which the study's metrics ({', '.join(metrics)}) do not "
                              f"score; choose from {', '.join(known)}")

