"""benchmarks/gpu_check.sh and its fp16 smoke, as far as a CPU can take them."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_fails_in_one_line_without_a_gpu(tmp_path):
    results = tmp_path / "results.txt"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(results)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no CUDA GPU" in proc.stderr and not results.exists()


def test_fp16_smoke_with_a_gradient_scaler_trains_on_the_cpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py"), "fp16", "--device", "cpu",
                           "--width", "8", "--steps", "3", "--batch-size", "4"], cwd=ROOT, capture_output=True,
                          text=True, timeout=50, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["check"] == "fp16" and result["steps"] == 3
    assert 0 < result["scale_d"] <= 65536 and 0 < result["scale_g"] <= 65536
