import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sagan import losses
from sagan.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, load_generator, save_checkpoint
from sagan.config import TrainConfig, apply_overrides
from sagan.errors import CheckpointError, ConfigError, SaganError
from sagan.stats import read_metrics
from sagan.train import train
from tests.conftest import tiny_train_args

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**kw):
    return apply_overrides(TrainConfig(), kw)


def _weights(path):
    state = load_checkpoint(path)
    return {k: state[k] for k in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d")}


def _assert_identical(a, b):
    for part in a:
        if part.startswith("opt"):
            for (k1, v1), (_, v2) in zip(sorted(a[part]["state"].items()), sorted(b[part]["state"].items())):
                for name in v1:
                    assert torch.equal(v1[name], v2[name]), f"{part} state {k1}.{name} differs"
            continue
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"


def test_run_folder_contents(tiny_folder, tmp_path):
    summary = train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 6)))
    run = tmp_path / "run"
    assert summary["steps"] == 6
    assert (run / "config.yaml").exists() and (run / "samples" / "final.png").exists()
    assert (run / "generator.safetensors").exists() and (run / "generator.json").exists()
    assert list((run / "tensorboard").iterdir())
    records = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert [r["step"] for r in records] == [2, 3, 4, 6]  # every 2 steps, and the checkpoint at 3
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "images_per_sec", "lr_g", "lr_d", "gamma/G.16",
                "gamma/D.16", "sigma/G.max", "sigma/D.mean", "grad_norm_g", "grad_norm_d", "diversity"):
        assert key in records[-1], key
    assert records[-1]["lr_g"] == 1e-4 and records[-1]["lr_d"] == 4e-4
    state = load_checkpoint(list_checkpoints(run)[-1])
    assert state["model"]["num_classes"] == 2 and state["model"]["img_channels"] == 3
    assert state["train_config"]["beta1"] == 0.0 and state["train_config"]["beta2"] == 0.9
    # the generator alone can be rebuilt from the checkpoint and from the export
    g1, info = load_generator(run)
    g2, _ = load_generator(run / "generator.safetensors")
    z, y = torch.randn(2, 128), torch.tensor([0, 1])
    assert info["ema"] and info["step"] == 6
    assert torch.equal(g1(z, y), g2(z, y))


@pytest.mark.parametrize("recipe", [{}, {"reuse_fakes": False, "mode_seeking": 0.0},
                                    {"augment": "translation,cutout,color"},
                                    {"augment": "translation,cutout,color", "augment_p": "auto", "ada_kimg": 0.1}],
                         ids=["default", "sagan-loss", "diffaugment", "diffaugment-auto"])
def test_exact_resume_is_bitwise_identical(tiny_folder, tmp_path, recipe):
    """2N steps in one go == N steps, stop, resume, N steps: G, D, G_ema and optimiser states."""
    train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "straight", 8, checkpoint_every=4, **recipe)))
    train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "split", 4, checkpoint_every=4, **recipe)))
    assert load_checkpoint(list_checkpoints(tmp_path / "split")[-1])["step"] == 4
    train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "split", 8, checkpoint_every=4, **recipe)))
    a = _weights(tmp_path / "straight" / "checkpoints" / "step_000000008.pt")
    b = _weights(tmp_path / "split" / "checkpoints" / "step_000000008.pt")
    _assert_identical(a, b)


@pytest.mark.parametrize("n_dis", [1, 2])
@pytest.mark.parametrize("reuse", [False, True])
def test_reuse_fakes_saves_one_generator_forward(tiny_folder, tmp_path, monkeypatch, reuse, n_dis):
    """reuse_fakes: the G step back-propagates through the last D step's fakes; otherwise it draws new ones."""
    import sagan.train as loop

    calls, real_generate = [], loop.generate

    def counting(generator, z, y, rt, keep_graph):
        fake = real_generate(generator, z, y, rt, keep_graph)
        calls.append((keep_graph, fake.requires_grad))
        return fake

    monkeypatch.setattr(loop, "generate", counting)
    train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 3, reuse_fakes=reuse, n_dis=n_dis,
                                 standing_samples=0)))
    per_step = [(False, False)] * (n_dis - 1) + ([(True, True)] if reuse else [(False, False), (True, True)])
    assert calls == per_step * 3


def test_mode_seeking_term_and_paired_labels(tiny_folder, tmp_path, monkeypatch):
    z = torch.randn(4, 8)
    same = torch.ones(4, 3, 2, 2)
    assert losses.mode_seeking(same, z) == pytest.approx(1e5)  # identical halves: 1 / eps
    far, near = torch.cat([same, -same]), torch.cat([same, 0.5 * same])
    assert losses.mode_seeking(far, torch.cat([z, -z])) < losses.mode_seeking(near, torch.cat([z, -z]))
    fake = near.clone().requires_grad_(True)
    losses.mode_seeking(fake, torch.cat([z, -z])).backward()
    assert (fake.grad[:4] < 0).all() and (fake.grad[4:] > 0).all()  # descent pulls the halves apart

    import sagan.train as loop

    labels, real_generate = [], loop.generate
    monkeypatch.setattr(loop, "generate", lambda g, z, y, rt, keep_graph: labels.append(y) or real_generate(
        g, z, y, rt, keep_graph))
    train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 2, mode_seeking=1.0, standing_samples=0)))
    assert labels and all(torch.equal(y[:4], y[4:]) for y in labels)
    with pytest.raises(ConfigError, match="batch_size must be even"):
        _cfg(mode_seeking=1.0, batch_size=7)


def test_resume_refuses_another_model(tiny_folder, tmp_path):
    train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 3)))
    with pytest.raises(CheckpointError, match="other settings"):
        train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 6, model="sngan_32")))
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["step"] == 3  # nothing lost


def test_truncated_newest_checkpoint_falls_back(tiny_folder, tmp_path):
    run = tmp_path / "run"
    train(_cfg(**tiny_train_args(tiny_folder, run, 6)))
    newest = list_checkpoints(run)[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="skipping"):
        path, state = latest_checkpoint(run)
    assert state["step"] == 3
    with pytest.warns(UserWarning):
        train(_cfg(**tiny_train_args(tiny_folder, run, 9)))  # resumes from step 3
    assert load_checkpoint(list_checkpoints(run)[-1])["step"] == 9


def test_checkpoint_write_failure_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def disk_full(obj, f):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left.*previous checkpoint is intact"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "no temporary file may be left behind"


def test_crafted_checkpoint_is_refused_and_its_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"format": "sagan-checkpoint", "version": 1, "payload": Exploit()}, f)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_file_that_is_no_pickle_is_called_corrupt_not_unsafe(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"garbage, not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
        load_checkpoint(path)


def test_foreign_and_future_files_are_refused(tmp_path):
    torch.save({"some": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a sagan checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "sagan-checkpoint", "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "text.pt")


def test_resume_takes_the_learning_rates_of_the_config_not_the_checkpoint(tiny_folder, tmp_path, capsys):
    """The NaN message says: lower the rates and resume. The lowered rates must be the ones that train."""
    run = tmp_path / "run"
    train(_cfg(**tiny_train_args(tiny_folder, run, 3)))
    capsys.readouterr()
    train(_cfg(**tiny_train_args(tiny_folder, run, 5, log_every=1, lr_d=1e-5, lr_g=2e-5)))
    said = capsys.readouterr().err
    assert "lr_d 1e-05 (the checkpoint had 0.0004)" in said and "lr_g 2e-05 (the checkpoint had 0.0001)" in said
    state = load_checkpoint(list_checkpoints(run)[-1])
    assert state["step"] == 5
    assert [g["lr"] for g in state["opt_d"]["param_groups"]] == [1e-5]
    assert [g["lr"] for g in state["opt_g"]["param_groups"]] == [2e-5]
    records = [r for r in read_metrics(run) if r["kind"] == "train" and r["step"] > 3]
    assert records and all(r["lr_d"] == 1e-5 and r["lr_g"] == 2e-5 for r in records)
    train(_cfg(**tiny_train_args(tiny_folder, run, 6, lr_d=1e-5, lr_g=2e-5)))
    assert "checkpoint had" not in capsys.readouterr().err  # unchanged rates: nothing to say


def test_non_finite_loss_stops_and_keeps_the_last_clean_checkpoint(tiny_folder, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_hinge = losses.hinge_d

    def flaky(real, fake):
        calls["n"] += 1
        return real_hinge(real, fake) * (float("nan") if calls["n"] == 5 else 1.0)

    monkeypatch.setitem(losses.LOSSES, "hinge", (flaky, losses.hinge_g))
    with pytest.raises(SaganError, match="NaN or infinite at step 5.*last clean checkpoint is step 3"):
        train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 10)))
    # the periodic checkpoint (every 3 steps) is the resume point; the 4 steps done were not saved as clean
    paths = list_checkpoints(tmp_path / "run")
    assert [load_checkpoint(p)["step"] for p in paths] == [3]
    state = load_checkpoint(paths[-1])
    assert all(torch.isfinite(v).all() for v in state["discriminator"].values() if v.is_floating_point())


def test_a_nan_generator_loss_leaves_the_clean_checkpoint_of_its_step_byte_identical(tiny_folder, tmp_path,
                                                                                     monkeypatch):
    """G's loss is NaN in the step after a checkpoint: D has stepped, the data and RNG have moved on, so that
    state must not be written under the clean checkpoint's name."""
    import hashlib

    import sagan.train as train_module

    written = {}
    real_save = train_module.save_checkpoint

    def recording_save(state, path):
        out = real_save(state, path)
        written.setdefault(Path(path).name, hashlib.sha256(Path(path).read_bytes()).hexdigest())
        return out

    calls = {"n": 0}

    def flaky_g(fake):
        calls["n"] += 1
        return losses.hinge_g(fake) * (float("nan") if calls["n"] == 4 else 1.0)

    monkeypatch.setattr(train_module, "save_checkpoint", recording_save)
    monkeypatch.setitem(losses.LOSSES, "hinge", (losses.hinge_d, flaky_g))
    with pytest.raises(SaganError, match="generator loss became NaN or infinite at step 4"):
        train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 10)))
    clean = tmp_path / "run" / "checkpoints" / "step_000000003.pt"
    assert hashlib.sha256(clean.read_bytes()).hexdigest() == written[clean.name]
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == [clean.name]


def test_bad_values_are_config_errors(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="n_dis must be positive"):
        _cfg(n_dis=0)
    with pytest.raises(ConfigError, match="lr_d must be positive"):
        _cfg(lr_d=-1e-4)
    with pytest.raises(ConfigError, match="did you mean: lr_d"):
        _cfg(lr_dd=1e-4)
    with pytest.raises(ConfigError, match="larger than the data set"):
        train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 2, batch_size=100)))


def test_time_budget_stops_and_saves(tiny_folder, tmp_path):
    summary = train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 100_000, max_minutes=0.05)))
    assert 0 < summary["steps"] < 100_000
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["step"] == summary["steps"]


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "sagan", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _tiny_cli_args(data, out, steps):
    return ["train", "--model", "sagan_32", "--data", str(data), "--out", str(out), "--max-steps", str(steps),
            "--batch-size", "8", "--threads", "1", "--precision", "fp32", "--set", "model_args.g_ch=8",
            "--set", "model_args.d_ch=8", "--set", "log_every=1", "--checkpoint-every", "1000"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_exits_cleanly(tiny_folder, tmp_path, sig, code):
    run = tmp_path / "run"
    proc = _cli(*_tiny_cli_args(tiny_folder, run, 100_000))
    deadline = time.time() + 60
    while time.time() < deadline and len(read_metrics(run)) < 3:
        time.sleep(0.2)
    t0 = time.time()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert time.time() - t0 < 20
    assert "interrupted: saved" in err and "Traceback" not in err
    state = load_checkpoint(list_checkpoints(run)[-1])
    assert state["step"] >= 3


def test_cli_errors_are_one_line(tmp_path, capsys):
    from sagan.cli import main

    for args, needle in [
        (["train", "--data", str(tmp_path / "missing")], "no such file or folder"),
        (["train", "--model", "sagan32"], "did you mean: sagan_32"),
        (["train", "--set", "lr_dd=1"], "did you mean: lr_d"),
        (["train", "--lr-d", "-1"], "lr_d must be positive"),
        (["train", "--device", "cuda:0"], "no CUDA GPU"),
        (["sample", str(tmp_path), "--out", str(tmp_path / "x.npz")], "holds no checkpoints"),
    ]:
        extra = ["--out", str(tmp_path / "o")] if args[0] == "train" else []
        assert main([*args, *extra]) == 2, args
        err = capsys.readouterr().err
        lines = [line for line in err.strip().splitlines() if line]
        assert len(lines) == 1 and needle in lines[0], (args, err)
        assert "Traceback" not in err


def test_a_run_that_fails_before_training_leaves_no_empty_folder_and_touches_no_old_one(tmp_path, capsys):
    from sagan.cli import main

    new = tmp_path / "deep" / "new-run"
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(new)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not new.exists()  # the folder the run made is taken back
    old = tmp_path / "old-run"
    (old / "samples").mkdir(parents=True)
    (old / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(old)]) == 2
    assert (old / "notes.txt").read_text() == "mine" and (old / "samples").is_dir()  # a folder it found is kept


def test_sample_command(tiny_folder, tmp_path):
    import numpy as np

    from sagan.cli import main

    run = tmp_path / "run"
    train(_cfg(**tiny_train_args(tiny_folder, run, 3)))
    out = []
    for i in range(2):
        code = main(["sample", str(run), "--num", "10", "--out", str(tmp_path / f"s{i}.npz"), "--grid",
                     str(tmp_path / "grid.png"), "--seed", "3"])
        assert code == 0
        out.append(np.load(tmp_path / f"s{i}.npz"))
    assert out[0]["images"].shape == (10, 32, 32, 3) and out[0]["images"].dtype.name == "uint8"
    assert (out[0]["images"] == out[1]["images"]).all(), "the same seed gives the same samples"
    assert list(out[0]["labels"]) == [0, 1] * 5
    assert (tmp_path / "grid.png").exists()

    # --per-class: class by class, the same latents in every class, one grid row per class
    code = main(["sample", str(run), "--per-class", "4", "--out", str(tmp_path / "pc.npz"), "--grid",
                 str(tmp_path / "pc.png"), "--seed", "3"])
    assert code == 0
    per_class = np.load(tmp_path / "pc.npz")
    assert list(per_class["labels"]) == [0] * 4 + [1] * 4
    class1 = main(["sample", str(run), "--num", "4", "--class", "1", "--out", str(tmp_path / "c1.npz"), "--seed", "3"])
    assert class1 == 0 and (np.load(tmp_path / "c1.npz")["images"] == per_class["images"][4:]).all()
    from PIL import Image
    width, height = Image.open(tmp_path / "pc.png").size
    assert height == 1 + 2 * 33 and width > 1 + 4 * 33, "4 columns, one row per class (named on its left)"
    assert main(["sample", str(run), "--per-class", "0", "--grid", str(tmp_path / "x.png")]) == 2
    assert main(["sample", str(run), "--per-class", "2", "--class", "1", "--grid", str(tmp_path / "y.png")]) == 2
    assert not (tmp_path / "y.png").exists()


@pytest.mark.slow
def test_two_process_distributed_run(tiny_folder, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sagan",
           *_tiny_cli_args(tiny_folder, run, 4)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(list_checkpoints(run)[-1])
    assert state["step"] == 4 and len(state["rng"]["ranks"]) == 2
    assert json.loads(json.dumps(state["batches"]))["position"] >= 0
    # rank 0 alone writes: one metrics file with one record per logged step
    steps = [r["step"] for r in read_metrics(run) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]
    assert "trained 4 steps" in proc.stderr and "2 process(es)" in proc.stderr


def test_ema_warms_up_then_averages():
    from torch import nn

    from sagan.train import ema_decay_at, update_ema

    assert ema_decay_at(0, 0.999) == 0.1 and ema_decay_at(5, 0.999, start=10) == 0.0
    assert ema_decay_at(10**6, 0.999) == 0.999
    assert all(ema_decay_at(t, 0.999) <= ema_decay_at(t + 1, 0.999) for t in range(2000))
    model, ema = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(7.0)
    update_ema(ema, model, 0.75)
    assert torch.allclose(ema.weight, torch.full((2,), 0.75 * 1 + 0.25 * 3))
    assert torch.equal(ema.running_mean, model.running_mean), "buffers are copied, not averaged"


@pytest.mark.parametrize("standing", [0, 32])
def test_g_ema_gets_its_own_batch_norm_statistics(tiny_folder, tmp_path, standing):
    train(_cfg(**tiny_train_args(tiny_folder, tmp_path / "run", 3, standing_samples=standing)))
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    keys = [k for k in state["generator"] if k.endswith("running_mean")]
    assert keys
    same = [torch.equal(state["generator"][k], state["generator_ema"][k]) for k in keys]
    # standing_samples=0: the raw G's statistics are copied; otherwise every BN has G_ema's own
    assert all(same) if standing == 0 else not any(same)


def test_logged_diversity_is_that_of_the_sampled_g_ema(tiny_folder, tmp_path):
    """The collapse alarm must watch the G_ema that `sagan sample` draws from: standing statistics included."""
    from sagan.sampling import fixed_batch
    from sagan.training.health import sample_diversity

    run = tmp_path / "run"
    train(_cfg(**tiny_train_args(tiny_folder, run, 6, checkpoint_every=2)))
    logged = {r["step"]: r["diversity"] for r in read_metrics(run) if r["kind"] == "train" and "diversity" in r}
    assert {2, 4, 6} <= set(logged)  # checkpoints at 2 and 4, the end at 6
    for step, target in ((2, run / "checkpoints" / "step_000000002.pt"), (6, run)):
        g_ema, info = load_generator(target)
        assert info["ema"] and info["step"] == step
        z, y = fixed_batch(g_ema.num_classes, g_ema.z_dim, seed=0)
        assert sample_diversity(g_ema, z, y, torch.device("cpu")) == pytest.approx(logged[step], rel=1e-6)
