"""A study with `budget: {steps: S, equal: time}`: every arm trains as long as the baseline's S steps take, at its
own measured seconds per step (sagan.study.cost), so an arm that is slower per step (five D steps, a bigger batch)
is not given more compute. The end-to-end test stands in a known cost for the measurement (seconds proportional to
the batch size), so every arm's steps are known in advance."""

import json

import pytest
import yaml

import sagan.train
from sagan.cli import main
from sagan.errors import ConfigError
from sagan.study import cost
from sagan.study.spec import NotTimed, parse_spec
from tests.study.conftest import Killed, fresh_checkout, tiny_search_spec

SPEC = {"name": "t", "base": {"data": "fashion-mnist"}, "budget": {"steps": 100, "equal": "time"},
        "baseline": "a", "arms": [{"name": "a"}, {"name": "b", "overrides": {"n_dis": 5}}]}


def test_each_arm_gets_the_steps_of_the_baselines_time():
    spec = parse_spec(SPEC)
    assert spec.equal_time and spec.costs is None
    with pytest.raises(NotTimed, match="no measured seconds per step for arm 'b'"):
        spec.steps_for(spec.arm("b"))
    timed = spec.timed({"a": 0.2, "b": 0.5})
    assert [timed.steps_for(a) for a in timed.arms] == [100, 40]
    assert timed.train_config(timed.arm("b"), 0, "x").max_steps == 40
    assert timed.timed({"a": 0.2, "b": 0.3}).steps_for(spec.arm("b")) == 67  # rounded
    assert timed.timed({"a": 1e-9, "b": 1.0}).steps_for(spec.arm("b")) == 1  # never 0
    assert timed.timed({"a": 0.2, "b": None}).steps_for(spec.arm("b")) == 100  # diverged when timed: fails there
    with pytest.raises(NotTimed):
        spec.timed({"a": None, "b": 0.5}).steps_for(spec.arm("b"))
    # the measured seconds are not the spec: its identity and its dict are the same before and after
    assert timed.identity() == spec.identity() and timed.to_dict() == spec.to_dict()


def test_equal_time_is_part_of_the_identity_and_equal_steps_is_the_old_spec():
    plain = {**SPEC, "budget": {"steps": 100}}
    assert parse_spec({**SPEC, "budget": {"steps": 100, "equal": "steps"}}).identity() == parse_spec(plain).identity()
    assert parse_spec({**SPEC, "budget": {"steps": 100, "equal": "steps"}}).budget == {"steps": 100}
    assert parse_spec(SPEC).identity() != parse_spec(plain).identity()
    assert not parse_spec(plain).equal_time


@pytest.mark.parametrize("budget, arms, message", [
    ({"minutes": 3, "equal": "time"}, None, "equal: time goes with a steps budget"),
    ({"steps": 100, "equal": "wall"}, None, "budget equal must be steps or time"),
    ({"equal": "time"}, None, "budget needs exactly one of minutes or steps"),
    ({"steps": 100, "equal": "time"}, [{"name": "a"}, {"name": "b", "steps": 40}], "sets its own steps"),
])
def test_bad_equal_time_budgets_are_one_line_errors(budget, arms, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec({**SPEC, "budget": budget, **({"arms": arms} if arms else {})})


def _study(tiny_folder) -> dict:
    base = tiny_search_spec(tiny_folder)["base"]  # batch 8
    return {"name": "tiny-time", "base": base, "budget": {"steps": 8, "equal": "time"}, "seeds": [0, 1],
            "eval": {"metrics": ["fd", "pr"], "num": 16, "fractions": [0.5]}, "baseline": "b8", "record": "rec",
            "arms": [{"name": "b8"}, {"name": "b4", "overrides": {"batch_size": 4}},
                     {"name": "b16", "overrides": {"batch_size": 16}}]}


@pytest.mark.slow
def test_an_equal_time_study_measures_once_and_a_fresh_checkout_keeps_the_budgets(tiny_folder, stand_in,
                                                                                    monkeypatch, tmp_path):
    measured = []

    def fake_seconds(cfg):
        measured.append(cfg.batch_size)
        return 0.01 * cfg.batch_size  # the baseline: 0.08 s a step; batch 4 half that, batch 16 twice

    monkeypatch.setattr(cost, "seconds_per_step", fake_seconds)
    real_train, calls = sagan.train.train, []

    def killed_at_the_fourth_segment(cfg):
        calls.append((cfg.batch_size, cfg.max_steps))
        if len(calls) == 4:
            raise Killed
        real_train(cfg)

    text = yaml.safe_dump(_study(tiny_folder))
    first = tmp_path / "first"
    first.mkdir()
    (first / "s.yaml").write_text(text)
    monkeypatch.chdir(first)
    monkeypatch.setattr(sagan.train, "train", killed_at_the_fourth_segment)
    with pytest.raises(Killed):
        main(["study", "s.yaml", "--out", "out"])
    assert measured == [8, 4, 16]  # each arm once, before any run
    # seed 0 of b8 (8 steps: half, then all), then b4 (16 steps in the same time): killed in its second half
    assert calls == [(8, 4), (8, 8), (4, 8), (4, 16)]
    costs = json.loads((first / "rec" / "costs.json").read_text())
    assert costs["seconds_per_step"] == {"b8": 0.08, "b4": 0.04, "b16": 0.16} and costs["cpu"]
    assert costs == json.loads((first / "out" / "costs.json").read_text())

    # a fresh checkout with the record: the kept seconds set the steps, nothing is measured again
    fresh = fresh_checkout(tmp_path, text, first / "rec", monkeypatch)
    monkeypatch.setattr(sagan.train, "train", real_train)
    assert main(["study", "s.yaml", "--out", "out"]) == 0
    study = json.loads((fresh / "out" / "study.json").read_text())
    steps = {(r["arm"], r["seed"]): [s["step"] for s in r["segments"]] for r in study["runs"]}
    assert steps == {(arm, seed): [n // 2, n] for arm, n in (("b8", 8), ("b4", 16), ("b16", 4)) for seed in (0, 1)}
    assert study["costs"]["seconds_per_step"]["b16"] == 0.16
    md = (fresh / "out" / "study.md").read_text()
    assert "the time of 8 generator steps of `b8` per run (equal time" in md
    assert "`b8` 8 steps (0.08 s), `b4` 16 steps (0.04 s), `b16` 4 steps (0.16 s)" in md
    assert (fresh / "rec" / "study.md").read_text() == md
