"""A study's record in the repository: finished runs and the scorer kept where a fresh checkout finds them; a study
interrupted, its run folders lost, goes on in a new checkout to the scores of an uninterrupted one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sagan.cli import main
from sagan.errors import ConfigError, SaganError
from sagan.study import parse_spec
from sagan.study.record import StudyRecord

ROOT = Path(__file__).resolve().parents[2]

SPEC = {
    "name": "r", "base": {"data": "fashion-mnist", "model": "sagan_32_cpu"}, "budget": {"steps": 10},
    "seeds": [0, 1], "eval": {"metrics": ["fd"], "num": 100, "features": "classifier"}, "baseline": "sagan",
    "arms": [{"name": "sagan"}, {"name": "other", "overrides": {"lr_g": 1.0e-4}}],
}


def _run(arm: str, seed: int, sha: str, weights: str = "unused", extractor: str = "classifier") -> dict:
    prov = {"extractor": extractor, "extractor_weights": weights, "extractor_weights_sha256": sha}
    return {"arm": arm, "seed": seed, "done": True,
            "segments": [{"fraction": 1.0, "step": 10, "minutes": 0.1, "images_per_sec": 1.0, "cpu": "c",
                          "scores": {"fd_classifier": 1.0}, "provenance": prov}]}


def _classifier(folder: Path) -> tuple[Path, str]:
    """A classifier file pair as the cache holds them; its weights' sha256."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "classifier-abc.safetensors"
    weights.write_bytes(b"weights of a classifier")
    weights.with_suffix(".json").write_text("{}")
    return weights, hashlib.sha256(weights.read_bytes()).hexdigest()


def test_the_record_keeps_the_classifier_once_and_refuses_other_weights(tmp_path):
    record = StudyRecord(parse_spec(SPEC), tmp_path / "rec")
    record.prepare()
    weights, sha = _classifier(tmp_path / "cache")
    record.save(_run("sagan", 0, sha, str(weights)))
    kept = tmp_path / "rec" / "scorer" / weights.name
    assert kept.read_bytes() == weights.read_bytes() and kept.with_suffix(".json").is_file()
    assert record.load("sagan", 0)["segments"][0]["provenance"]["extractor_weights_sha256"] == sha
    with pytest.raises(SaganError, match="not recorded"):
        record.save(_run("other", 0, "0" * 64, str(weights)))
    assert record.load("other", 0) is None
    record.save(_run("other", 0, sha, str(weights)))  # the same scorer: kept
    assert [(r["arm"], r["seed"]) for r in record.records()] == [("other", 0), ("sagan", 0)]


def test_a_record_whose_classifier_is_lost_takes_no_new_runs(tmp_path):
    folder = tmp_path / "rec"
    record = StudyRecord(parse_spec(SPEC), folder)
    record.prepare()
    (folder / "finished" / "sagan").mkdir(parents=True)
    (folder / "finished" / "sagan" / "seed_0.json").write_text(json.dumps(_run("sagan", 0, "b6834fff" * 8)))
    with pytest.raises(ConfigError, match="does not keep"):
        record.prepare()
    record.prepare(fresh=True)  # --fresh empties the record
    assert record.records() == []


def test_a_record_mixing_extractors_is_refused(tmp_path):
    spec = parse_spec({**SPEC, "eval": {"metrics": ["fd"], "num": 100}})
    folder = tmp_path / "rec"
    StudyRecord(spec, folder).prepare()
    for arm, sha in (("sagan", "a" * 64), ("other", "b" * 64)):
        (folder / "finished" / arm).mkdir(parents=True)
        (folder / "finished" / arm / "seed_0.json").write_text(json.dumps(_run(arm, 0, sha, extractor="fmnist")))
    with pytest.raises(ConfigError, match="mixes scores"):
        StudyRecord(spec, folder).prepare()


def test_a_record_of_another_spec_is_refused_and_the_record_is_not_identity(tmp_path):
    StudyRecord(parse_spec(SPEC), tmp_path / "rec").prepare()
    other = parse_spec({**SPEC, "budget": {"steps": 20}})
    with pytest.raises(ConfigError, match="another spec"):
        StudyRecord(other, tmp_path / "rec").prepare()
    assert parse_spec({**SPEC, "record": "docs/studies/r/"}).identity() == parse_spec(SPEC).identity()
    with pytest.raises(ConfigError, match="record must be a folder"):
        parse_spec({**SPEC, "record": 3})


# ---- end to end ----------------------------------------------------------------------------------------------
def _tiny_spec(data) -> dict:
    return {
        "name": "tiny-record", "budget": {"steps": 4}, "seeds": [0, 1], "baseline": "sagan", "record": "rec",
        "base": {"data": str(data), "model": "sagan_32", "model_args": {"g_ch": 8, "d_ch": 8}, "batch_size": 8,
                 "threads": 1, "precision": "fp32", "deterministic": True, "channels_last": False,
                 "standing_samples": 32, "log_every": 2, "sample_every": 4, "checkpoint_every": 1},
        "eval": {"metrics": ["fd", "pr"], "num": 48, "features": "classifier", "against": str(data),
                 "fractions": [0.5]},
        "arms": [{"name": "sagan"},
                 {"name": "no-attention", "overrides": {"model_args": {"g_attention": [], "d_attention": []}}}],
    }


def _finals(study_json: Path) -> list:
    study = json.loads(study_json.read_text())
    return [(r["arm"], r["seed"], [(s["fraction"], s["step"], s["scores"]) for s in r["segments"]])
            for r in study["runs"]]


@pytest.mark.slow
def test_an_interrupted_study_goes_on_in_a_fresh_checkout_to_the_same_scores(tiny_folder, tmp_path, monkeypatch):
    spec_text = yaml.safe_dump(_tiny_spec(tiny_folder))
    # the study without interruption
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "spec.yaml").write_text(spec_text)
    monkeypatch.chdir(whole)
    monkeypatch.setenv("SAGAN_CACHE", str(tmp_path / "cache-whole"))
    assert main(["study", "spec.yaml", "--out", "out"]) == 0
    scorer = list((whole / "rec" / "scorer").glob("classifier-*.safetensors"))
    assert len(scorer) == 1 and len(list((whole / "rec" / "finished").glob("*/seed_*.json"))) == 4

    # the same study in a first checkout, killed inside its second run
    first = tmp_path / "first"
    first.mkdir()
    (first / "spec.yaml").write_text(spec_text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAGAN_CACHE": str(tmp_path / "cache-first"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sagan", "study", "spec.yaml", "--out", "out"], cwd=first,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        second = first / "out" / "runs" / "no-attention" / "seed_0" / "checkpoints"
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not list(second.glob("step_*.pt")):
            time.sleep(0.05)
        assert proc.poll() is None, "the study ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    kept = sorted(p.relative_to(first / "rec") for p in (first / "rec" / "finished").glob("*/seed_*.json"))
    assert kept == [Path("finished/sagan/seed_0.json")]

    # a fresh checkout: the spec and a copy of the record folder; no run folders, an empty cache
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "spec.yaml").write_text(spec_text)
    shutil.copytree(first / "rec", fresh / "rec")
    recorded = (fresh / "rec" / kept[0]).read_text()
    monkeypatch.chdir(fresh)
    monkeypatch.setenv("SAGAN_CACHE", str(tmp_path / "cache-fresh"))
    assert main(["study", "spec.yaml", "--out", "out"]) == 0
    assert (fresh / "rec" / kept[0]).read_text() == recorded  # the finished run is kept, not run again
    assert not (fresh / "out" / "runs" / "sagan" / "seed_0").exists()
    assert not list((tmp_path / "cache-fresh").glob("classifiers/*.safetensors"))  # scored by the record's scorer
    assert _finals(fresh / "out" / "study.json") == _finals(whole / "out" / "study.json")
    md = (fresh / "out" / "study.md").read_text()
    assert "| sagan (baseline) | 2/2 |" in md and "Record:" in md and "detectable" in md
    assert (fresh / "rec" / "study.md").read_text() == md


def test_tables_flag_scores_from_different_scorers_and_minutes_from_different_devices():
    from sagan.study.compare import summarise
    from sagan.study.table import study_markdown

    spec = parse_spec({**SPEC, "budget": {"minutes": 5}})
    runs = [_run("sagan", 0, "a" * 64), _run("sagan", 1, "a" * 64), _run("other", 0, "a" * 64),
            _run("other", 1, "a" * 64)]
    runs[1]["segments"][0]["device"] = "NVIDIA H200"
    md = study_markdown({"spec": spec.to_dict(), "summary": summarise(spec, runs)})
    assert "different devices (NVIDIA H200, cpu)" in md and "different feature extractor" not in md
    runs[3]["segments"][0]["provenance"]["extractor_weights_sha256"] = "b" * 64
    md = study_markdown({"spec": spec.to_dict(), "summary": summarise(spec, runs)})
    assert "different feature extractor weights (sha256 aaaaaaaaaaaa, bbbbbbbbbbbb)" in md
