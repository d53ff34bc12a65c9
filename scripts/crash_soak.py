"""Crash soak: SIGKILL a training run many times at random moments, resume each time, compare with a clean run.

    python scripts/crash_soak.py [--kills 20] [--steps 200] [--checkpoint-every 3] [--seed 0] [--work DIR]

Not a CI test (tests/test_robustness.py has a 6-kill version). A tiny sagan_32 (8 channels) trains in fp32 with
--deterministic on a generated 48-image folder:
1. a reference run goes to --steps uninterrupted;
2. the same command is started again and again in another run folder and SIGKILLed each time: every third kill
   lands while a checkpoint is being written (atomic_write is slowed by 0.3 s between writing the temporary file
   and renaming it, and the kill comes once the temporary file exists), the others at a random moment 0.5-9 s
   after the start (importing, resuming, training or writing);
3. after every kill each checkpoint on disk must load; then the run is resumed, uninterrupted, to the end;
4. G, D, G_ema, both Adam states, the data order and the RNG state of the final checkpoint are compared
   bitwise with the reference's.
Prints one JSON line; exit 0 when the final states are equal, 1 when they differ or too few kills landed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sagan.checkpoint import list_checkpoints, load_checkpoint
from tests.test_robustness import SLOW_WRITER  # the CLI with checkpoint writes slowed, to kill mid-write


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(24):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / c / f"{i:03d}.png")
    return root


def train_args(data: Path, out: Path, steps: int, every: int) -> list[str]:
    return ["train", "--model", "sagan_32", "--data", str(data), "--out", str(out), "--max-steps", str(steps),
            "--batch-size", "8", "--threads", "1", "--precision", "fp32", "--deterministic", "--no-channels-last",
            "--set", "model_args.g_ch=8", "--set", "model_args.d_ch=8", "--set", "log_every=5",
            "--set", "standing_samples=32", "--sample-every", "100000", "--checkpoint-every", str(every)]


def start(code_or_module: list[str], args: list[str], log) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *code_or_module, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=log, start_new_session=True)


def temporary_files(run: Path) -> set[str]:
    """atomic_write's temporary files in the run's checkpoint folder (a killed write leaves one behind until the
    next checkpoint prunes it)."""
    folder = run / "checkpoints"
    return {p.name for p in folder.iterdir() if p.name.endswith(".tmp")} if folder.is_dir() else set()


def compare(a: dict, b: dict) -> list[str]:
    """Names of the tensors and values that differ between two checkpoints."""
    differ = []

    def walk(x, y, name):
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)):
                differ.append(name)
        elif isinstance(x, dict):
            if not isinstance(y, dict) or x.keys() != y.keys():
                differ.append(name)
                return
            for k in x:
                walk(x[k], y[k], f"{name}.{k}")
        elif isinstance(x, (list, tuple)):
            if not isinstance(y, (list, tuple)) or len(x) != len(y):
                differ.append(name)
                return
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{name}[{i}]")
        elif x != y:
            differ.append(name)

    for part in ("step", "generator", "discriminator", "generator_ema", "opt_g", "opt_d", "batches", "rng"):
        walk(a[part], b[part], part)
    return differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    p.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed at the end)")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="sagan_crash_soak_"))
    data = make_folder(work / "data")
    t_start = time.time()
    with open(work / "reference.log", "w") as log:
        ref = start(["-m", "sagan"], train_args(data, work / "reference", args.steps, args.checkpoint_every), log)
        if ref.wait(timeout=600) != 0:
            raise SystemExit(f"crash_soak: the reference run failed; see {work / 'reference.log'}")

    run, rng = work / "crashy", random.Random(args.seed)
    kills = during_write = finished_early = 0
    killed_at_steps = []
    with open(work / "crashy.log", "w") as log:
        while kills < args.kills:
            left_over = temporary_files(run)
            proc = start(["-c", SLOW_WRITER], train_args(data, run, args.steps, args.checkpoint_every), log)
            in_write = kills % 3 == 0
            deadline = time.time() + (120 if in_write else rng.uniform(0.5, 9.0))
            while proc.poll() is None and time.time() < deadline:
                if in_write and temporary_files(run) - left_over:
                    break
                time.sleep(0.01)
            if proc.poll() is not None:
                finished_early += 1
                if proc.returncode == 0:
                    break  # the run reached --steps before this kill: too few steps for the kills asked
                raise SystemExit(f"crash_soak: a run failed by itself (exit {proc.returncode}); see {work}")
            was_writing = bool(temporary_files(run) - left_over)  # a write this process began
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            during_write += was_writing
            found = list_checkpoints(run)
            for path in found:
                load_checkpoint(path)  # raises on a torn file: the soak fails loudly
            killed_at_steps.append(load_checkpoint(found[-1])["step"] if found else 0)
        final = start(["-m", "sagan"], train_args(data, run, args.steps, args.checkpoint_every), log)
        if final.wait(timeout=600) != 0:
            raise SystemExit(f"crash_soak: the final resume failed; see {work / 'crashy.log'}")
    resumes = (work / "crashy.log").read_text().count("resuming ")

    a = load_checkpoint(list_checkpoints(work / "reference")[-1])
    b = load_checkpoint(list_checkpoints(run)[-1])
    differ = compare(a, b)
    summary = {"kills": kills, "during_checkpoint_write": during_write, "resumes": resumes,
               "newest_checkpoint_step_after_each_kill": killed_at_steps, "steps": args.steps,
               "final_step": b["step"], "bitwise_equal": not differ, "differing": differ[:10],
               "minutes": round((time.time() - t_start) / 60, 1)}
    print(json.dumps(summary))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not differ and kills >= args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
