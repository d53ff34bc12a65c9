"""A tiny study end to end (2 arms, 2 seeds, a few steps): ordinary run folders, seed-major order, resume after a
kill with the same scores, the tables and the page (rendered in headless Chromium)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sagan.cli import main
from sagan.study import parse_spec
from sagan.study.runner import jobs_in_order
from tests.browser import find_chromium, render

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _spec(data) -> dict:
    return {
        "name": "tiny", "budget": {"steps": 4}, "seeds": [0, 1], "baseline": "sagan",
        "base": {"data": str(data), "model": "sagan_32", "model_args": {"g_ch": 8, "d_ch": 8}, "batch_size": 8,
                 "threads": 1, "precision": "fp32", "deterministic": True, "channels_last": False,
                 "standing_samples": 32, "log_every": 2, "sample_every": 4, "checkpoint_every": 1},
        "eval": {"metrics": ["fd", "pr"], "num": 48, "features": "fmnist", "against": "fashion-mnist",
                 "fractions": [0.5]},
        "arms": [{"name": "sagan"},
                 {"name": "no-attention", "overrides": {"model_args": {"g_attention": [], "d_attention": []}}}],
    }


def _scores(study_json: Path) -> list:
    study = json.loads(study_json.read_text())
    return [(r["arm"], r["seed"], [(s["fraction"], s["step"], s["scores"]) for s in r["segments"]])
            for r in study["runs"]]


@pytest.fixture(scope="module")
def study(tiny_folder, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    spec = tmp / "tiny.yaml"
    spec.write_text(yaml.safe_dump(_spec(tiny_folder)))
    assert main(["study", str(spec), "--out", str(tmp / "out")]) == 0
    return spec, tmp / "out"


def test_every_run_is_an_ordinary_run_folder_scored_at_each_fraction(study):
    spec, out = study
    data = json.loads((out / "study.json").read_text())
    assert [(r["arm"], r["seed"]) for r in data["runs"]] == [("sagan", 0), ("no-attention", 0), ("sagan", 1),
                                                             ("no-attention", 1)]  # seed-major
    for r in data["runs"]:
        assert [(s["fraction"], s["step"]) for s in r["segments"]] == [(0.5, 2), (1.0, 4)]
        final = r["segments"][-1]
        assert {"fd_fmnist", "precision_fmnist", "recall_fmnist"} <= set(final["scores"])
        assert final["provenance"]["ema"] is True and final["provenance"]["step"] == 4
        assert final["images_per_sec"] > 0 and final["cpu"]
        run = out / "runs" / r["arm"] / f"seed_{r['seed']}"
        assert (run / "config.yaml").exists() and (run / "generator.safetensors").exists()
    # the other commands work on a study's run
    assert main(["sample", str(out / "runs" / "sagan" / "seed_1"), "--num", "4", "--out", str(out / "s.npz")]) == 0
    arms = data["summary"]["arms"]
    assert arms["sagan"]["runs_done"] == 2 and arms["sagan"]["scores"]["fd_fmnist"]["n"] == 2
    verdicts = {v["verdict"] for v in arms["no-attention"]["versus_baseline"].values()}
    assert verdicts <= {"no difference measured", "better than the baseline", "worse than the baseline"}
    md = (out / "study.md").read_text()
    assert "| sagan (baseline) | 2/2 | 4 ± 0 |" in md and "| no-attention (paired by seed) |" in md and "Holm" in md


def test_seed_major_order_keeps_every_arm_in_a_study_stopped_early():
    spec = parse_spec(_spec("fashion-mnist"))
    order = [(a.name, s) for a, s in jobs_in_order(spec, [0, 1, 2], None)]
    assert order[:2] == [("sagan", 0), ("no-attention", 0)] and order[-1] == ("no-attention", 2)
    assert [(a.name, s) for a, s in jobs_in_order(spec, [0, 1], ["no-attention"])] == [("no-attention", 0),
                                                                                       ("no-attention", 1)]


def test_rerunning_a_finished_study_trains_nothing(study, capsys):
    spec, out = study
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/checkpoints/*.pt")}
    assert main(["study", str(spec), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/checkpoints/*.pt")} == before
    assert "4 finished run(s)" in capsys.readouterr().err


def test_a_killed_study_resumes_to_the_same_scores(study, tmp_path):
    spec, out = study
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sagan", "study", str(spec), "--out", str(killed)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:  # kill it inside the second run, once that run has a checkpoint
        second = killed / "runs" / "no-attention" / "seed_0" / "checkpoints"
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not list(second.glob("step_*.pt")):
            time.sleep(0.05)
        assert proc.poll() is None, "the study ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (killed / "study.json").exists()
    assert main(["study", str(spec), "--out", str(killed)]) == 0
    assert _scores(killed / "study.json") == _scores(out / "study.json")


def test_the_page_renders_with_every_image(study, tmp_path):
    if find_chromium() is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    _, out = study
    result = render(out / "study.html")
    assert result["errors"] == [] and result["requests"] == []
    # 3 score curves, 2 sample grids, 1 attention figure (the arm without attention has none)
    assert len(result["images"]) == 6
    assert all(img["naturalWidth"] > 0 for img in result["images"])
    assert result["title"] == "sagan study: tiny"


def _diverging_spec(data) -> dict:
    """One seed of the tiny study and an arm whose learning rates make its losses infinite at the first step."""
    spec = _spec(data)
    spec["seeds"] = [0]
    spec["arms"][1] = {"name": "diverges", "overrides": {"lr_d": 1e38, "lr_g": 1e38}}
    return spec


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_diverging_run_is_recorded_as_failed_and_the_study_goes_on(tiny_folder, tmp_path, parallel):
    spec = tmp_path / "diverging.yaml"
    spec.write_text(yaml.safe_dump(_diverging_spec(tiny_folder)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sagan", "study", str(spec), "--out", str(out), "--parallel", str(parallel)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 finished run(s), 1 failed" in result.stderr
    study = json.loads((out / "study.json").read_text())
    failed = next(r for r in study["runs"] if r["arm"] == "diverges")
    assert failed["failed"].startswith("diverged: the generator loss became NaN or infinite at step 1")
    arms = study["summary"]["arms"]
    assert arms["sagan"]["runs_done"] == 1 and arms["diverges"]["runs_done"] == 0
    assert arms["diverges"]["failed"] == [{"seed": 0, "reason": failed["failed"]}]
    md = (out / "study.md").read_text()
    assert "| diverges | 0/1, 1 failed |" in md and "`diverges` seed 0: diverged: the generator loss" in md
    # running again trains nothing: the failure is a result, not retried
    record = out / "runs" / "diverges" / "seed_0" / "study_run.json"
    before = record.stat().st_mtime_ns
    assert main(["study", str(spec), "--out", str(out)]) == 0
    assert record.stat().st_mtime_ns == before


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_interrupting_a_parallel_study_stops_every_run_cleanly_and_writes_the_tables(tiny_folder, tmp_path, how):
    """Ctrl-C reaches the whole process group; `kill PID` (SIGTERM) only the study, which tells its workers."""
    data = _spec(tiny_folder)
    data["budget"] = {"steps": 16}
    data["base"]["checkpoint_every"] = 2
    spec = tmp_path / "long.yaml"
    spec.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sagan", "study", str(spec), "--out", str(out), "--parallel", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:  # interrupt once a third run is training: the first ones have finished, or nearly
        started = lambda: [p for p in out.glob("runs/*/*") if list(p.glob("checkpoints/step_*.pt"))]  # noqa: E731
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and len(started()) < 3:
            time.sleep(0.05)
        assert proc.poll() is None, "the study ended before it could be interrupted"
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == (130 if how == "ctrl-c" else 143), err[-3000:]
    assert "Traceback" not in err and "BrokenProcessPool" not in err, err[-3000:]
    assert "interrupted; the finished runs are in" in err
    study = json.loads((out / "study.json").read_text())
    finished = {(r["arm"], r["seed"]) for r in study["runs"] if r["done"]}
    assert finished and not any(r.get("failed") for r in study["runs"])
    assert sum(e["runs_done"] for e in study["summary"]["arms"].values()) == len(finished)
    assert (out / "study.md").exists()
    for run in started():  # every run that started kept its training: a checkpoint, and a record if it finished
        state = json.loads((run / "study_run.json").read_text()) if (run / "study_run.json").exists() else None
        assert (state is not None and state["done"]) or (run.parent.name, int(run.name[5:])) not in finished
    assert not list(out.glob("runs/*/*/checkpoints/*.tmp"))
    if how == "kill":
        return
    # nothing is lost: the same command finishes the study from there
    assert main(["study", str(spec), "--out", str(out), "--parallel", "2"]) == 0
    assert sum(e["runs_done"] for e in json.loads((out / "study.json").read_text())["summary"]["arms"].values()) == 4
