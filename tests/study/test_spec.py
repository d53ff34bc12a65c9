"""Study specs: every error is one line, exit 2, before any run starts; another spec's folder is refused."""

from pathlib import Path

import pytest
import yaml

from sagan.cli import main
from sagan.errors import ConfigError
from sagan.study import parse_spec
from sagan.study.runner import prepare_folder
from sagan.study.spec import load_spec

GOOD = {
    "name": "t", "base": {"data": "fashion-mnist", "model": "sagan_32_cpu"}, "budget": {"steps": 10},
    "seeds": [0, 1], "eval": {"metrics": ["fd", "pr"], "num": 100}, "baseline": "sagan",
    "arms": [{"name": "sagan"}, {"name": "no-attention", "overrides": {"model_args": {"g_attention": [],
                                                                                        "d_attention": []}}}],
}


def _with(**changes):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


def test_a_good_spec_builds_each_runs_config():
    spec = parse_spec(GOOD)
    cfg = spec.train_config(spec.arm("no-attention"), 1, "x")
    assert cfg.model_args == {"g_attention": [], "d_attention": []} and cfg.seed == 1 and cfg.max_steps == 10
    assert spec.fractions == [0.25, 0.5, 0.75, 1.0]
    # the seeds may grow without making it another study; anything else may not
    assert parse_spec(_with(seeds=[0, 1, 2])).identity() == spec.identity()
    assert parse_spec(_with(budget={"steps": 11})).identity() != spec.identity()


@pytest.mark.parametrize("spec, message", [
    (_with(colour="red"), "unknown key 'colour'"),
    (_with(base={"model": "sagan_33"}), "unknown model 'sagan_33'"),
    (_with(arms=[{"name": "a"}, {"name": "a"}], baseline="a"), "two arms are named 'a'"),
    (_with(arms=[{"name": "a", "overrides": {"lr_d": -1}}], baseline="a"), "arm 'a': lr_d must be positive"),
    (_with(arms=[{"name": "a", "overrides": {"recon_weight": 1.0}}], baseline="a"),
     "arm 'a': recon_weight needs a discriminator with a decoder"),
    (_with(arms=[{"name": "a", "overrides": {"n_dsi": 5}}], baseline="a"), "did you mean: n_dis"),
    (_with(arms=[{"name": "a", "overrides": {"model_args": {"g_attention": [64]}}}], baseline="a"),
     "g_attention at 64x64"),
    (_with(arms=[{"name": "a", "overrides": {"seed": 3}}], baseline="a"), "which the study sets"),
    (_with(budget=None), "no 'budget'"),
    (_with(budget={}), "exactly one of minutes or steps"),
    (_with(budget={"hours": 2}), "unknown key 'hours' in budget"),
    (_with(budget={"minutes": 0}), "must be a positive number"),
    (_with(baseline="sagn"), "baseline 'sagn' is not an arm"),
    (_with(seeds=[0, 0]), "distinct integers"),
    (_with(eval={"metrics": ["fdd"]}), "unknown metric"),
    # the clock would stop a steps budget early; evaluation during training would count as training time
    (_with(base={"model": "sagan_32_cpu", "max_minutes": 5}), "base sets 'max_minutes', which the study sets"),
    (_with(base={"model": "sagan_32_cpu", "max_steps": 5}), "base sets 'max_steps', which the study sets"),
    (_with(base={"model": "sagan_32_cpu", "eval_every": 100}), "base sets 'eval_every'.*training time"),
    (_with(arms=[{"name": "a", "overrides": {"eval_every": 50}}], baseline="a"), "arm 'a' sets 'eval_every'"),
])
def test_spec_errors_name_the_problem(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


def test_cli_spec_error_is_one_line_exit_2_and_starts_nothing(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(arms=[{"name": "a"}, {"name": "a"}])))
    assert main(["study", str(path), "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "two arms are named 'a'" in err
    assert not (tmp_path / "study").exists()
    assert main(["study", str(tmp_path / "missing.yaml")]) == 2
    assert "study spec not found" in capsys.readouterr().err


def test_base_budget_keys_are_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "capped.yaml"
    path.write_text(yaml.safe_dump(_with(base={"model": "sagan_32_cpu", "max_minutes": 2})))
    assert main(["study", str(path), "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "max_minutes" in err and not (tmp_path / "study").exists()
    assert parse_spec(_with(base={"model": "sagan_32_cpu", "eval_every": 0})).base["eval_every"] == 0  # 0 is "none"


def test_fresh_refuses_a_folder_that_is_not_a_study(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "good.yaml"  # no data: a study that got past the refusal would stop at its first run
    spec.write_text(yaml.safe_dump(_with(base={"model": "sagan_32_cpu", "data": str(tmp_path / "no-data")})))
    work = tmp_path / "work"
    (work / "runs" / "mine").mkdir(parents=True)
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    assert main(["study", str(spec), "--out", ".", "--fresh"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a study folder" in err
    assert (work / "runs" / "mine").is_dir() and (work / "notes.txt").read_text() == "keep me"
    assert main(["study", str(spec), "--out", "."]) != 0  # nor does it write its runs among yours
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a study folder" in err
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "runs"]
    with pytest.raises(ConfigError, match="not a study folder"):
        prepare_folder(parse_spec(GOOD), work, fresh=True)
    assert (work / "runs" / "mine").is_dir() and not (work / "spec.json").exists()
    (work / "runs" / "mine" / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match="training run's folder"):
        prepare_folder(parse_spec(GOOD), work / "runs" / "mine", fresh=False)
    assert [p.name for p in (work / "runs" / "mine").iterdir()] == ["checkpoints"]
    prepare_folder(parse_spec(GOOD), tmp_path / "new", fresh=True)  # a new folder is fine
    prepare_folder(parse_spec(GOOD), tmp_path / "new", fresh=True)  # and so is a study folder


def test_a_folder_of_another_spec_is_refused_unless_fresh(tmp_path):
    prepare_folder(parse_spec(GOOD), tmp_path, fresh=False)
    (tmp_path / "runs" / "sagan").mkdir()
    other = parse_spec(_with(budget={"steps": 20}))
    with pytest.raises(ConfigError, match="another spec.*--fresh"):
        prepare_folder(other, tmp_path, fresh=False)
    assert (tmp_path / "runs" / "sagan").is_dir(), "nothing written is touched by the refusal"
    prepare_folder(other, tmp_path, fresh=True)
    assert not (tmp_path / "runs" / "sagan").exists()
    prepare_folder(other, tmp_path, fresh=False)  # now it is this spec's folder


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_spec_is_valid(path):
    """The specs in studies/ pass every check a study makes before its first run (each arm's train config and model)."""
    spec = load_spec(path)
    assert spec.baseline in [arm.name for arm in spec.arms] and len(spec.seeds) >= 2
