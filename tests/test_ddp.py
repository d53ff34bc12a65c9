"""Data-parallel training under torchrun (2 gloo processes on this CPU): what each rank draws, exact resume,
and a non-finite loss on one rank."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sagan.checkpoint import list_checkpoints, load_checkpoint
from tests.test_train import _assert_identical, _weights

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "ddp_probe.py"

pytestmark = pytest.mark.slow


def _torchrun(data, out, steps, env=None, timeout=240, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(PROBE),
           "train", "--model", "sagan_32", "--data", str(data), "--out", str(out), "--max-steps", str(steps),
           "--batch-size", "8", "--threads", "1", "--precision", "fp32", "--deterministic",
           "--set", "model_args.g_ch=8", "--set", "model_args.d_ch=8", "--set", "log_every=1",
           "--set", "standing_samples=32", "--set", "dist_timeout=30", "--checkpoint-every", "2", *extra]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def test_each_rank_draws_its_own_fakes_and_resume_stays_exact(tiny_folder, tmp_path):
    record = tmp_path / "noise"
    record.mkdir()
    proc = _torchrun(tiny_folder, tmp_path / "straight", 4, {"PROBE_RECORD": str(record)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(record / f"rank{r}.pt") for r in (0, 1))
    assert r0["z"].shape == r1["z"].shape
    assert not torch.equal(r0["z"], r1["z"]), "both ranks drew the same noise: their fakes are identical"
    assert not torch.equal(r0["y"], r1["y"]), "both ranks drew the same fake labels"
    # the models start identical on every rank (same initialisation), which DDP needs
    state = load_checkpoint(list_checkpoints(tmp_path / "straight")[-1])
    rng = state["rng"]["ranks"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])

    # 2 steps, stop, resume to 4: bitwise the state of the uninterrupted 4-step run
    for steps in (2, 4):
        proc = _torchrun(tiny_folder, tmp_path / "split", steps)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a = _weights(tmp_path / "straight" / "checkpoints" / "step_000000004.pt")
    b = _weights(tmp_path / "split" / "checkpoints" / "step_000000004.pt")
    _assert_identical(a, b)


def test_a_nan_on_one_rank_stops_both_with_the_same_message(tiny_folder, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(tiny_folder, run, 20, {"PROBE_NAN": "1:3"})
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if "sagan train: error:" in ln]
    assert len(lines) == 2, proc.stderr[-3000:]
    assert lines[0] == lines[1] and "generator loss became NaN or infinite at step 3" in lines[0]
    assert "Timeout" not in proc.stderr and "timed out" not in proc.stderr
    # the clean checkpoint of step 2 is the resume point; nothing was written for the failed step
    assert [load_checkpoint(p)["step"] for p in list_checkpoints(run)] == [2]
