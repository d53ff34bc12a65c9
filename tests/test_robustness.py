"""Crashes, kills and unwritable places: nothing already written is lost, and the run resumes exactly."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sagan.checkpoint import list_checkpoints, load_checkpoint
from sagan.cli import main
from sagan.config import TrainConfig, apply_overrides
from sagan.train import train
from tests.conftest import tiny_train_args

ROOT = Path(__file__).resolve().parents[1]

# Runs the CLI with atomic_write slowed down between writing the temporary file and renaming it, so that a
# test can SIGKILL the process while a checkpoint is half written.
SLOW_WRITER = """
import sys, time
import sagan.checkpoint as c
original = c.atomic_write
def slow(path, write):
    def slow_write(f):
        write(f)
        f.flush()
        time.sleep(0.4)
    return original(path, slow_write)
c.atomic_write = slow
from sagan.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _args(data, out, steps):
    return ["train", "--model", "sagan_32", "--data", str(data), "--out", str(out), "--max-steps", str(steps),
            "--batch-size", "8", "--threads", "1", "--precision", "fp32", "--deterministic", "--no-channels-last",
            "--set", "model_args.g_ch=8", "--set", "model_args.d_ch=8", "--set", "log_every=2",
            "--set", "standing_samples=32", "--sample-every", "1000", "--checkpoint-every", "2"]


def _state(run, step):
    state = load_checkpoint(Path(run) / "checkpoints" / f"step_{step:09d}.pt")
    return {k: state[k] for k in ("generator", "discriminator", "generator_ema")}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tiny_folder, tmp_path):
    steps, kills = 24, 6
    reference = tmp_path / "reference"
    assert main(_args(tiny_folder, reference, steps)) == 0

    run = tmp_path / "crashy"
    rng = random.Random(0)
    done = 0
    for attempt in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, *_args(tiny_folder, run, steps)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        during_write = attempt % 2 == 0  # half the kills land inside a checkpoint write
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            ckpt_dir = run / "checkpoints"
            if during_write and ckpt_dir.is_dir() and any(p.name.endswith(".tmp") for p in ckpt_dir.iterdir()):
                break
            if not during_write and len(list_checkpoints(run)) and rng.random() < 0.05:
                break
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            done += 1
        proc.wait(timeout=60)
        # whatever was on disk before the kill still loads
        for path in list_checkpoints(run):
            load_checkpoint(path)
    assert done >= 5, f"only {done} kills landed before the run finished"
    # final, uninterrupted resume to the end
    assert main(_args(tiny_folder, run, steps)) == 0
    a, b = _state(reference, steps), _state(run, steps)
    for part in a:
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after {done} kills"


def test_unwritable_run_folder_is_a_one_line_error(tiny_folder, tmp_path, capsys):
    if os.geteuid() == 0:
        target = Path("/proc/sagan-cannot-write-here")  # even root cannot create folders in /proc
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
    code = main(["train", "--data", str(tiny_folder), "--out", str(target), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the run folder" in err and len(err.strip().splitlines()) == 1


def test_nothing_written_is_lost_on_a_config_error(tiny_folder, tmp_path):
    run = tmp_path / "run"
    train(apply_overrides(TrainConfig(), tiny_train_args(tiny_folder, run, 3)))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts}
    assert main(["train", "--data", str(tiny_folder), "--out", str(run), "--model", "sngan_32", "--max-steps", "6",
                 "--set", "model_args.g_ch=8", "--set", "model_args.d_ch=8"]) == 2
    for path, data in before.items():
        if path.name != "config.yaml":
            assert path.read_bytes() == data, f"{path} changed"


@pytest.mark.slow
def test_a_dying_worker_stops_the_others(tiny_folder, tmp_path):
    """Kill one of two distributed workers: the survivor must exit, not wait forever."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sagan",
           *_args(tiny_folder, tmp_path / "run", 100_000)[:-4], "--sample-every", "1000", "--checkpoint-every", "1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            time.sleep(0.2)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2, workers
        os.kill(int(workers[-1]), signal.SIGKILL)
        t0 = time.time()
        proc.wait(timeout=150)
        assert proc.returncode != 0
        assert time.time() - t0 < 150
        for pid in workers:
            assert subprocess.run(["kill", "-0", pid], capture_output=True).returncode != 0, "a worker is still alive"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
