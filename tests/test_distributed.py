"""Several machines and elastic restarts, on this one: torchrun agents on 127.0.0.1 train one run together.

Both tests run the same fp32, deterministic 12-step run on gloo, so the elastic run (a worker SIGKILLed once a
checkpoint exists, the group restarted by torchrun) is compared bitwise with the two-agent run.
"""

import os
import shutil
import signal
import warnings

import pytest
import torch

from sagan import runtime
from sagan.checkpoint import checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from sagan.stats import read_metrics
from tests.launch import children, free_port, launched, torchrun, wait_for

STEPS, EVERY = 12, 4
# torchrun's agent shares its rendezvous store with the workers by default, and a restarted group can then read
# the dead group's addresses (pytorch/pytorch#135712); the README tells users to set this with --max-restarts.
ELASTIC_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def _args(data, out):
    return ["train", "--model", "sagan_32", "--data", str(data), "--out", str(out), "--max-steps", str(STEPS),
            "--batch-size", "8", "--threads", "1", "--precision", "fp32", "--deterministic", "--no-channels-last",
            "--set", "model_args.g_ch=8", "--set", "model_args.d_ch=8", "--set", "log_every=1",
            "--set", "standing_samples=32", "--set", "dist_timeout=30", "--sample-every", "1000",
            "--checkpoint-every", str(EVERY)]


def _final_state(run):
    state = load_checkpoint(list_checkpoints(run)[-1])
    return state


def _assert_same_training_state(a, b):
    for part in ("generator", "discriminator", "generator_ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    for part in ("opt_g", "opt_d"):
        for k, slots in a[part]["state"].items():
            for name, value in slots.items():
                assert torch.equal(value, b[part]["state"][k][name]), f"{part} state {k}.{name} differs"


@pytest.fixture(scope="module")
def two_agent_run(tiny_folder, tmp_path_factory):
    """Two torchrun agents, one worker each, meeting through a c10d rendezvous on 127.0.0.1: (run, codes, logs)."""
    tmp = tmp_path_factory.mktemp("two_agents")
    run, port = tmp / "run", free_port()
    cmds = [torchrun(*_args(tiny_folder, run), nnodes=2, port=port, run_id="two-agents") for _ in range(2)]
    logs = [tmp / f"agent{i}.log" for i in range(2)]
    with launched(*cmds, logs=logs) as procs:
        for proc in procs:
            proc.wait(timeout=50)
    return run, [p.returncode for p in procs], [log.read_text() for log in logs]


@pytest.mark.slow
def test_two_agents_train_one_run(two_agent_run):
    run, codes, logs = two_agent_run
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    state = _final_state(run)
    assert state["step"] == STEPS and len(state["rng"]["ranks"]) == 2
    # global rank 0 alone writes: one agent's worker reports, one metrics record per step
    assert sum("training sagan_32" in log for log in logs) == 1
    assert sum("2 process(es)" in log for log in logs) == 1
    assert [r["step"] for r in read_metrics(run) if r["kind"] == "train"] == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_a_killed_worker_restarts_the_group_which_resumes_from_its_checkpoint(two_agent_run, tiny_folder, tmp_path):
    """torchrun --max-restarts 1: SIGKILL a worker once a checkpoint exists; the group restarts, resumes from the
    newest checkpoint and ends bitwise equal to the uninterrupted two-agent run (same ranks, same steps)."""
    run = tmp_path / "run"
    cmd = torchrun(*_args(tiny_folder, run), nproc=2, max_restarts=1)
    with launched(cmd, logs=[tmp_path / "agent.log"], env=ELASTIC_ENV) as (agent,):
        wait_for(lambda: len(list_checkpoints(run)) > 0, 45, "the first checkpoint", [agent])
        workers = children(agent.pid)
        assert len(workers) == 2, workers
        os.kill(workers[-1], signal.SIGKILL)
        agent.wait(timeout=50)
    log = (tmp_path / "agent.log").read_text()
    assert agent.returncode == 0, log[-3000:]
    assert "resuming" in log, "the restarted group did not resume from the checkpoint"
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in log
    resumed_at = int(log.split("(step ")[1].split(")")[0])
    assert 0 < resumed_at < STEPS, resumed_at
    state = _final_state(run)
    assert state["step"] == STEPS
    reference_run, codes, _ = two_agent_run
    assert codes == [0, 0]
    _assert_same_training_state(_final_state(reference_run), state)


@pytest.mark.slow
def test_machines_that_see_different_run_folders_stop_instead_of_diverging(two_agent_run, tiny_folder, tmp_path):
    """One agent's --out holds the run's checkpoints, the other's is empty (no shared storage): both stop, one line."""
    run = tmp_path / "run"
    shutil.copytree(two_agent_run[0], run)
    port = free_port()
    outs = (run, tmp_path / "other")
    cmds = [torchrun(*_args(tiny_folder, out), nnodes=2, port=port, run_id="split") for out in outs]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with launched(*cmds, logs=logs) as procs:
        for proc in procs:
            proc.wait(timeout=50)
    assert all(p.returncode != 0 for p in procs)
    said = [line for log in logs for line in log.read_text().splitlines() if "found different checkpoints" in line]
    assert len(said) == 2 and all(line.startswith("sagan train: error:") for line in said), said


def _fake_distributed_env(monkeypatch, rank, local_rank, world_size, **extra):
    for key, value in {"RANK": rank, "LOCAL_RANK": local_rank, "WORLD_SIZE": world_size, **extra}.items():
        monkeypatch.setenv(key, str(value))
    started = []
    monkeypatch.setattr(runtime.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(runtime.dist, "init_process_group", lambda backend, **kw: started.append(backend))
    return started


def test_the_global_rank_shards_the_data_and_the_local_rank_picks_the_gpu(monkeypatch):
    """The second machine's first worker: RANK 2, LOCAL_RANK 0 of 4 processes."""
    started = _fake_distributed_env(monkeypatch, rank=2, local_rank=0, world_size=4)
    rt = runtime.setup_runtime("cpu", "fp32", 0, False, 30)
    assert (rt.rank, rt.world_size, rt.device.type, started) == (2, 4, "cpu", ["gloo"])
    started = _fake_distributed_env(monkeypatch, rank=3, local_rank=1, world_size=4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    rt = runtime.setup_runtime("auto", "fp32", 0, False, 30)
    assert (rt.rank, str(rt.device), started) == (3, "cuda:1", ["nccl"])


@pytest.mark.parametrize("share", ["True", "False"])
def test_restartable_groups_on_a_shared_rendezvous_store_are_warned_about(monkeypatch, share):
    _fake_distributed_env(monkeypatch, rank=0, local_rank=0, world_size=2, TORCHELASTIC_MAX_RESTARTS=3,
                          TORCHELASTIC_USE_AGENT_STORE=share)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.setup_runtime("cpu", "fp32", 0, False, 30)
    said = [str(w.message) for w in caught if "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in str(w.message)]
    assert len(said) == (1 if share == "True" else 0)


def test_a_half_written_or_torn_newer_checkpoint_is_never_resumed(tmp_path):
    for step in (4, 8):
        save_checkpoint({"step": step}, checkpoint_path(tmp_path, step))
    torn = checkpoint_path(tmp_path, 12)
    torn.write_bytes(checkpoint_path(tmp_path, 8).read_bytes()[:100])  # a file cut short (not written by sagan)
    half = torn.parent / f".{checkpoint_path(tmp_path, 16).name}.abc123.tmp"  # atomic_write's temporary file
    half.write_bytes(checkpoint_path(tmp_path, 8).read_bytes())
    with pytest.warns(UserWarning, match="skipping"):
        path, state = latest_checkpoint(tmp_path)
    assert path == checkpoint_path(tmp_path, 8) and state["step"] == 8
