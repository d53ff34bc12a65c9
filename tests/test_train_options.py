"""The faster-converging options in real (tiny) training runs: each changes what trains, shows in the train record,
and resumes bit for bit; a term that turns NaN stops the run as a NaN loss does; bad values are one-line errors."""

import math

import pytest
import torch

import sagan.regularize.gradient
import sagan.regularize.lecam
import sagan.regularize.reconstruction
from sagan.checkpoint import list_checkpoints, load_checkpoint
from sagan.cli import main
from sagan.config import TrainConfig, apply_overrides
from sagan.errors import SaganError
from sagan.stats import read_metrics
from sagan.train import train
from tests.conftest import tiny_train_args
from tests.test_train import _assert_identical, _weights

WIDTHS = {"g_ch": 8, "d_ch": 8}
DECODER = {**WIDTHS, "d_recon": 8}  # D with FastGAN's decoder, reading its 8x8 features

# name: (the option's settings, the train-record keys it adds, the model options it needs)
OPTIONS = {
    # n_dis 2 and an interval of 3 D updates: the lazy clock runs across training steps and across the resume
    "r1": ({"r1_gamma": 1.0, "reg_every": 3, "n_dis": 2}, ["r1"], WIDTHS),
    "r2": ({"r2_gamma": 1.0, "reg_every": 2}, ["r2"], WIDTHS),
    "lecam": ({"lecam_weight": 0.3}, ["lecam", "lecam_anchor_real", "lecam_anchor_fake"], WIDTHS),
    "bcr": ({"bcr_real": 1.0, "bcr_fake": 1.0}, ["bcr_real", "bcr_fake"], WIDTHS),
    "recon": ({"recon_weight": 1.0}, ["recon"], DECODER),
    "rpgan": ({"loss": "rpgan"}, [], WIDTHS),
    "rpgan-fresh-fakes": ({"loss": "rpgan", "reuse_fakes": False}, [], WIDTHS),
    "mirror": ({"mirror": True}, [], WIDTHS),
    "ema_kimg": ({"ema_kimg": 0.005}, ["ema_decay"], WIDTHS),
}
STEPS = 6


def _args(folder, out, steps, option=None, model_args=WIDTHS, **extra):
    settings = {"checkpoint_every": STEPS // 2, "log_every": 1, "sample_every": 100, "standing_samples": 0,
                "model_args": model_args, **(option or {}), **extra}
    return tiny_train_args(folder, out, steps, **settings)


def _run(folder, out, steps, option=None, model_args=WIDTHS, **extra):
    return train(apply_overrides(TrainConfig(), _args(folder, out, steps, option, model_args, **extra)))


def _last(run):
    return load_checkpoint(list_checkpoints(run)[-1])


@pytest.fixture(scope="module")
def baselines(tiny_folder, tmp_path_factory):
    """The run without the option, for each model and n_dis the options use (trained once, on first use)."""
    runs = {}

    def baseline(model_args, n_dis):
        key = (tuple(sorted(model_args.items())), n_dis)
        if key not in runs:
            out = tmp_path_factory.mktemp("baseline")
            _run(tiny_folder, out, STEPS, model_args=model_args, n_dis=n_dis)
            runs[key] = _last(out)
        return runs[key]

    return baseline


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPTIONS))
def test_an_option_changes_training_is_logged_and_resumes_bitwise(name, tiny_folder, tmp_path, baselines):
    option, keys, model_args = OPTIONS[name]
    _run(tiny_folder, tmp_path / "straight", STEPS, option, model_args)
    _run(tiny_folder, tmp_path / "split", STEPS // 2, option, model_args)
    assert _last(tmp_path / "split")["step"] == STEPS // 2
    _run(tiny_folder, tmp_path / "split", STEPS, option, model_args)
    straight, split = _last(tmp_path / "straight"), _last(tmp_path / "split")
    assert straight["step"] == split["step"] == STEPS
    _assert_identical(_weights(list_checkpoints(tmp_path / "straight")[-1]),
                      _weights(list_checkpoints(tmp_path / "split")[-1]))
    assert straight.get("loss_terms") == split.get("loss_terms")

    plain = baselines(model_args, option.get("n_dis", 1))
    part = "generator_ema" if name == "ema_kimg" else "generator"
    assert any(not torch.equal(straight[part][k], plain[part][k]) for k in plain[part]), "the option changes G"

    records = [r for r in read_metrics(tmp_path / "straight") if r["kind"] == "train"]
    assert len(records) == STEPS
    for key in keys:
        assert all(math.isfinite(r[key]) for r in records), key


def test_the_logged_ema_decay_is_ema_kimgs_half_life_per_step(tiny_folder, tmp_path):
    _run(tiny_folder, tmp_path / "run", STEPS, {"ema_kimg": 0.005})
    decay = apply_overrides(TrainConfig(), {"ema_kimg": 0.005, "batch_size": 8}).ema_decay_per_step()
    assert decay == pytest.approx(0.5 ** 1.6)  # 8 reals a step, half-life 5 images
    logged = [r["ema_decay"] for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    # the warm-up (1 + t) / (10 + t) first, then ema_kimg's decay once the warm-up passes it (t = 4)
    assert logged == pytest.approx([min(decay, (1 + t) / (10 + t)) for t in range(STEPS)])
    assert logged[-1] == pytest.approx(decay)


def test_reconstruction_trains_the_decoder_with_d(tiny_folder, tmp_path, baselines):
    """The decoder is a submodule of D, so D's optimiser steps it; without the term it gets no gradient."""
    _run(tiny_folder, tmp_path / "run", STEPS, {"recon_weight": 1.0}, DECODER)
    trained, plain = _last(tmp_path / "run"), baselines(DECODER, 1)
    decoder = [k for k in trained["discriminator"] if k.startswith("decoder.")]
    assert decoder
    assert all(not torch.equal(trained["discriminator"][k], plain["discriminator"][k]) for k in decoder
               if k.endswith("weight") or k.endswith("original")), "every decoder weight moved"
    assert len(trained["opt_d"]["state"]) > len(plain["opt_d"]["state"]), "Adam holds state for the decoder too"


@pytest.mark.parametrize("module, function", [
    (sagan.regularize.gradient, "gradient_penalty"),
    (sagan.regularize.lecam, "lecam_penalty"),
    (sagan.regularize.reconstruction, "reconstruction_loss"),
])
def test_a_term_that_turns_nan_stops_the_run_at_the_last_clean_checkpoint(tiny_folder, tmp_path, monkeypatch,
                                                                          module, function):
    real, calls = getattr(module, function), {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setattr(module, function, poisoned)
    option = {"r1_gamma": 1.0, "reg_every": 1, "lecam_weight": 0.3, "recon_weight": 1.0}
    with pytest.raises(SaganError, match="discriminator loss became NaN or infinite at step 5"):
        _run(tiny_folder, tmp_path / "run", 8, option, DECODER, checkpoint_every=4)
    assert [load_checkpoint(p)["step"] for p in list_checkpoints(tmp_path / "run")] == [4]


@pytest.mark.parametrize("setting, needle", [
    ("r1_gamma=-1", "r1_gamma must be >= 0"),
    ("r2_gamma=inf", "r2_gamma must be a finite number"),
    ("lecam_weight=nan", "lecam_weight must be >= 0"),
    ("reg_every=0", "reg_every must be positive"),
    ("loss=rpgn", "did you mean: rpgan"),
    ("bcr_augment=flip", "unknown augment policy 'flip'"),
    ("mirror=maybe", "mirror expects a bool"),
    ("recon_weight=1", "add model_args.d_recon=8"),
    ("model_args.g_sle=true", "g_sle is a list of whole numbers"),
])
def test_bad_option_values_are_one_line_errors_before_any_training(setting, needle, tmp_path, capsys):
    for dry_run in ([], ["--dry-run"]):
        assert main(["train", "--out", str(tmp_path / "o"), "--set", setting, *dry_run]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line]
        assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "o").exists(), "nothing was written"


def test_every_option_is_a_set_away(tiny_folder, tmp_path, capsys):
    sets = ["r1_gamma=0.5", "r2_gamma=0.5", "reg_every=4", "lecam_weight=0.1", "lecam_decay=0.9", "bcr_real=10",
            "bcr_fake=10", "bcr_augment=translation,color", "bcr_flip=false", "recon_weight=0.5", "mirror=true",
            "ema_kimg=10", "loss=rpgan", "model_args.d_recon=8", "model_args.g_sle=[16,32]"]
    assert main(["train", "--dry-run", *(a for s in sets for a in ("--set", s))]) == 0
    printed = capsys.readouterr().out
    for s in sets:
        key, value = s.split("=")
        assert f'"{key.split(".")[-1]}"' in printed, key
