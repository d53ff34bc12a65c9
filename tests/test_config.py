from pathlib import Path

import pytest

from sagan.commands.train import add_arguments, resolve_config
from sagan.config import TrainConfig, apply_overrides, load_yaml
from sagan.errors import ConfigError
from sagan.models import model_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _parse(*argv):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return resolve_config(parser.parse_args(list(argv)))


def test_defaults_are_the_papers_recipe():
    cfg = TrainConfig()
    assert (cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2, cfg.n_dis, cfg.loss) == (1e-4, 4e-4, 0.0, 0.9, 1, "hinge")
    assert model_config(cfg.model).g_spectral_norm and model_config(cfg.model).d_spectral_norm


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_resolve(path):
    cfg = apply_overrides(TrainConfig(), load_yaml(path))
    model_config(cfg.model, **cfg.model_args)


def test_precedence_file_then_flags_then_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr_d: 1.0e-3\nbatch_size: 16\nmodel_args: {g_ch: 16}\n")
    cfg = _parse("--config", str(f), "--batch-size", "32", "--set", "lr_d=2e-4", "--set", "model_args.d_ch=8")
    assert cfg.lr_d == 2e-4 and cfg.batch_size == 32 and cfg.model_args == {"g_ch": 16, "d_ch": 8}
    assert isinstance(cfg.beta1, float)


@pytest.mark.parametrize("text, needle", [
    ("lr_dd: 1\n", "did you mean: lr_d"),
    ("batch_size: lots\n", "batch_size expects a int"),
    ("- a\n- b\n", "must hold a mapping"),
    ("lr_d: [\n", "not valid YAML"),
    ("loss: hinj\n", "did you mean: hinge"),
    ("precision: fp16\n", "unknown precision"),
])
def test_bad_config_files(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        _parse("--config", str(f))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        _parse("--config", str(tmp_path / "nope.yaml"))


def test_another_data_flag_drops_the_config_files_labels(tmp_path):
    """A config's labels file describes the config's data: `--config emoji64.yaml --data mine` must not apply the
    emoji labels to `mine` (every image would lack a row); `--labels` and `--label-column` then come from the flags."""
    f = tmp_path / "c.yaml"
    f.write_text("data: ../shared/data/emoji64\nlabels: ../shared/data/emoji64/labels.csv\nlabel_column: category\n")
    own = _parse("--config", str(f))
    assert (own.labels, own.label_column) == ("../shared/data/emoji64/labels.csv", "category")
    other = _parse("--config", str(f), "--data", "my_images")
    assert (other.data, other.labels, other.label_column) == ("my_images", None, None)
    labelled = _parse("--config", str(f), "--data", "my_images", "--labels", "my_images/l.csv")
    assert (labelled.labels, labelled.label_column) == ("my_images/l.csv", None)  # its own columns, found anew
    same = _parse("--config", str(f), "--data", "../shared/data/emoji64")
    assert same.labels == "../shared/data/emoji64/labels.csv"


def _studied_and_shipped(study: str, arm_name: str, recipe: str) -> tuple[TrainConfig, TrainConfig]:
    """The train config a study's arm scored (studies/STUDY: its base, then the arm's overrides) and the one a shipped
    recipe file (configs/RECIPE) gives."""
    root = Path(__file__).resolve().parents[1]
    spec = load_yaml(root / "studies" / study)
    arm = next(a for a in spec["arms"] if a["name"] == arm_name)
    studied = apply_overrides(apply_overrides(TrainConfig(), spec["base"]), arm.get("overrides", {}))
    return studied, apply_overrides(TrainConfig(), load_yaml(root / "configs" / recipe))


def test_the_fast_recipe_is_the_arm_its_study_measured():
    """configs/fmnist_fast.yaml (the quick start's) must train what studies/fmnist_quickstart_20min_fast.yaml scored
    as `fast`: the same train config, up to keys that change nothing (ema_decay is unused when ema_kimg is set)."""
    studied, shipped = _studied_and_shipped("fmnist_quickstart_20min_fast.yaml", "fast", "fmnist_fast.yaml")
    assert shipped.ema_kimg and shipped.ema_decay_per_step() == studied.ema_decay_per_step()
    assert {**vars(shipped), "ema_decay": None} == {**vars(studied), "ema_decay": None}


@pytest.mark.parametrize("recipe, study, arm_name", [
    ("emoji64.yaml", "emoji64_recipe_60min.yaml", "search-c05"),
    ("emoji64_sagan.yaml", "emoji64_recipe_60min.yaml", "recipe"),
])
def test_the_emoji_recipes_are_the_arms_their_study_measured(recipe, study, arm_name):
    """configs/emoji64.yaml was adopted from the 60-minute side-by-side's `search-c05` arm and
    configs/emoji64_sagan.yaml is its baseline: each must train what the study scored, up to keys that change no run
    (the time and step limits, which the study sets from its budget) and model_args spelled out at their registered
    default."""
    studied, shipped = _studied_and_shipped(study, arm_name, recipe)
    assert model_config(shipped.model, **shipped.model_args) == model_config(studied.model, **studied.model_args)
    limits = {"model_args": None, "max_minutes": None, "max_steps": None}
    assert {**vars(shipped), **limits} == {**vars(studied), **limits}
