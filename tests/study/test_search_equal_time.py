"""A search with `equal: time`: every configuration of a rung gets the steps that take as long as the base's budget,
at its measured seconds per step (sagan.study.cost), so a configuration that is slower per step is not given more
compute. The end-to-end test stands in a known cost for the measurement (seconds proportional to the batch size),
so every step budget is known in advance; the measurement itself is tested on a real tiny run."""

import json
import math

import pytest
import yaml

from sagan.cli import main
from sagan.errors import ConfigError
from sagan.study import cost, search
from sagan.study.search_spec import parse_search_spec
from sagan.study.spec import parse_spec
from tests.study.conftest import Killed, fresh_checkout, tiny_search_spec
from tests.study.test_search import GOOD, _with

BATCHES = [2, 4, 8, 16]  # the base's batch is 8


def fake_seconds(cfg) -> float:
    return 0.01 * cfg.batch_size  # the base: 0.08 s; batch 16 twice that, batch 2 a quarter


def _spec(tiny_folder, **search_keys) -> dict:
    spec = tiny_search_spec(tiny_folder)
    spec["search"] = {**spec["search"], "grid": {"batch_size": BATCHES}, "first_steps": 4, "equal": "time",
                      **search_keys}
    return spec


def _steps(run) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.pt"))


def test_equal_time_gives_each_configuration_the_base_budgets_time():
    spec, configs = parse_search_spec(_with(search={"equal": "time"}))
    costs = {"base": 0.5, "c00": 1.0, "c01": 0.25, "c02": 0.3}
    assert [spec.steps_at(r, "c00", costs) for r in range(3)] == [50, 150, 450]  # half the base's steps
    assert [spec.steps_at(r, "c01", costs) for r in range(3)] == [200, 600, 1800]
    assert spec.steps_at(0, "c02", costs) == 167  # rounded
    assert spec.steps_at(0, "c00", {"base": 1e-9, "c00": 1.0}) == 1  # never 0
    with pytest.raises(ConfigError, match="no measured seconds per step for 'c03'"):
        spec.steps_at(0, "c03", costs)
    final = spec.final_spec(configs[:2], costs=costs)
    assert [(a.name, a.steps, final.steps_for(a)) for a in final.arms] == [("base", None, 900), ("c00", 450, 450),
                                                                           ("c01", 1800, 1800)]
    assert final.train_config(final.arm("c00"), 1, "x").max_steps == 450
    # equal steps, the default, ignores costs and keeps the identity searches had before the key existed
    plain = parse_search_spec(GOOD)[0]
    assert plain.steps_at(2, "c00", costs) == 900 and "equal" not in plain.to_dict()["search"]
    assert spec.identity() != plain.identity()
    with pytest.raises(ConfigError, match="search equal must be steps or time"):
        parse_search_spec(_with(search={"equal": "wall"}))


def test_an_arm_of_its_own_steps_needs_a_steps_budget():
    base = {"name": "s", "base": {"data": "fashion-mnist"}, "budget": {"steps": 100}, "arms": [{"name": "a"}]}
    spec = parse_spec({**base, "arms": [{"name": "a"}, {"name": "b", "steps": 40}]})
    assert [spec.steps_for(a) for a in spec.arms] == [100, 40]
    assert spec.to_dict()["arms"] == [{"name": "a", "overrides": {}}, {"name": "b", "overrides": {}, "steps": 40}]
    for bad in (0, 2.5, True, "40"):
        with pytest.raises(ConfigError, match="steps must be a positive integer"):
            parse_spec({**base, "arms": [{"name": "b", "steps": bad}]})
    with pytest.raises(ConfigError, match="in a study with a steps budget"):
        parse_spec({**base, "budget": {"minutes": 3}, "arms": [{"name": "b", "steps": 40}]})


def test_the_measurement_trains_real_steps_and_resumes(tiny_folder, tmp_path):
    spec, configs = parse_search_spec(tiny_search_spec(tiny_folder))
    final = spec.final_spec(configs[:1])
    cfg = final.train_config(final.arm("c00"), 0, tmp_path / "run")
    seconds = cost.seconds_per_step(cfg)
    assert math.isfinite(seconds) and seconds > 0
    assert not (tmp_path / "run").exists()  # nothing written: it trains in memory
    kept, said = [], []
    costs = cost.measure_costs([("base", cfg), ("c00", cfg)], {"base": 0.5}, lambda c: kept.append(dict(c)),
                               said.append)
    assert costs["base"] == 0.5 and costs["c00"] > 0  # the known one is not measured again
    assert kept == [costs] and said == [f"measured c00: {costs['c00']:.3f} s per step"]


def test_a_configuration_that_diverges_while_timed_gets_the_rungs_steps(tiny_folder, tmp_path, monkeypatch):
    import sagan.train

    spec, configs = parse_search_spec(tiny_search_spec(tiny_folder))
    final = spec.final_spec(configs[:1])
    cfg = final.train_config(final.arm("c00"), 0, tmp_path / "run")
    real, calls = sagan.train.train_step, []

    def diverges_at(n):
        def step(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise FloatingPointError("discriminator")
            return real(*args, **kwargs)
        return step

    monkeypatch.setattr(sagan.train, "train_step", diverges_at(5))  # 2 warm-up steps, 2 timed, then NaN
    seconds = cost.seconds_per_step(cfg)
    assert seconds is not None and seconds > 0
    calls.clear()
    monkeypatch.setattr(sagan.train, "train_step", diverges_at(2))  # in the warm-up: nothing timed
    said = []
    costs = cost.measure_costs([("c00", cfg)], {"base": 0.5}, lambda c: None, said.append)
    assert costs == {"base": 0.5, "c00": None} and "non-finite before a step was timed" in said[0]
    timed = parse_search_spec(_with(search={"equal": "time"}))[0]
    assert timed.steps_at(1, "c00", costs) == 300  # the rung's steps: it fails there and is not promoted
    with pytest.raises(ConfigError, match="no measured seconds per step"):
        timed.steps_at(1, "c00", {"base": None, "c00": 0.5})


@pytest.mark.slow
def test_an_equal_time_search_runs_each_configuration_for_the_base_time(tiny_folder, stand_in, monkeypatch,
                                                                       tmp_path):
    measured = []
    monkeypatch.setattr(cost, "seconds_per_step", lambda cfg: (measured.append(cfg.batch_size), fake_seconds(cfg))[1])
    real_train, calls = search._train, []

    def killed_in_rung_2(cfg):
        calls.append(cfg.max_steps)
        if len(calls) == 5:  # the first run of rung 2
            raise Killed
        real_train(cfg)

    text = yaml.safe_dump({**_spec(tiny_folder), "record": "rec"})
    first = tmp_path / "first"
    first.mkdir()
    (first / "s.yaml").write_text(text)
    monkeypatch.chdir(first)
    monkeypatch.setattr(search, "_train", killed_in_rung_2)
    with pytest.raises(Killed):
        main(["study", "s.yaml", "--out", "out"])
    assert measured == [8, *BATCHES]  # the base, then each configuration, once
    # rung 1: the time of the base's 4 steps at 0.08 s = 0.32 s, so batch 2 trains 16 steps and batch 16 trains 2
    doubled = {"c00": 32, "c01": 16, "c02": 8, "c03": 4}  # rung 2: the time of the base's 8 steps
    assert calls[:4] == [16, 8, 4, 2] and len(calls) == 5 and calls[4] in doubled.values()
    assert [_steps(first / "out" / "runs" / c)[-1] for c in ("c01", "c02", "c03")] == [8, 4, 2]
    costs = json.loads((first / "rec" / "costs.json").read_text())
    assert costs["seconds_per_step"] == {"base": 0.08, "c00": 0.02, "c01": 0.04, "c02": 0.08, "c03": 0.16}
    assert costs == json.loads((first / "out" / "costs.json").read_text()) and costs["cpu"]

    # a fresh checkout with the record: the kept seconds set the budgets, nothing is measured again
    fresh = fresh_checkout(tmp_path, text, first / "rec", monkeypatch)
    monkeypatch.setattr(search, "_train", lambda cfg: (calls.append(cfg.max_steps), real_train(cfg)))
    calls.clear()
    assert main(["study", "s.yaml", "--out", "out"]) == 0
    study = json.loads((fresh / "out" / "study.json").read_text())
    r1, r2 = study["rungs"]
    assert {row["id"]: row["step"] for row in r1["rows"]} == {"c00": 16, "c01": 8, "c02": 4, "c03": 2}
    promoted = r1["promoted"]
    assert {row["id"]: row["step"] for row in r2["rows"]} == {c: doubled[c] for c in promoted}
    # the final study: the base at the last rung's 8 steps, the finalist at its own steps of the same time
    (finalist,) = study["finalists"]
    own = doubled[finalist]
    final = json.loads((fresh / "out" / "final" / "study.json").read_text())
    steps = {(r["arm"], r["seed"]): r["segments"][-1]["step"] for r in final["runs"]}
    assert steps == {(arm, seed): (8 if arm == "base" else own) for arm in ("base", finalist) for seed in (1, 2, 3)}
    md = (fresh / "out" / "study.md").read_text()
    assert "## Rung 1: 4 configuration(s) at the time of 4 base steps" in md and "| s/step |" in md
    assert "Equal time: every configuration of a rung trains as long as the base's steps take" in md
    if own != 8:
        assert f"except `{finalist}` {own}: the steps each took as long as the budget" in md
