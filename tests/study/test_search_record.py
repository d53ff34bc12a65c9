"""A search's record in the repository: its draw, every rung's scores, the scorer and the final study's record, kept
where a fresh checkout finds them; a search killed mid-rung, its run folders lost, goes on in a new checkout to the
result of an uninterrupted one (same rungs, same promotions, same final scores, same trained weights)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from sagan.cli import main
from sagan.errors import ConfigError, SaganError
from sagan.study import search
from sagan.study.search_record import SearchRecord, merge_runs
from sagan.study.search_spec import parse_search_spec
from tests.study.conftest import Killed
from tests.study.test_search import GOOD, _with


def _entry(rung: int, sha: str | None = None, score: float = 1.0) -> dict:
    prov = {"extractor": "classifier", "extractor_weights": "unused", "extractor_weights_sha256": sha} if sha else {}
    return {"rung": rung, "steps": 2 * (rung + 1), "step": 2 * (rung + 1), "scores": {"fd_classifier": score},
            "provenance": prov, "score": score}


def test_the_record_is_not_identity_and_holds_one_draw(tmp_path):
    spec, configs = parse_search_spec({**GOOD, "record": "docs/studies/records/s"})
    assert spec.identity() == parse_search_spec(GOOD)[0].identity()
    assert spec.final_spec(configs[:1]).record == "docs/studies/records/s/final"
    with pytest.raises(ConfigError, match="record must be a folder"):
        parse_search_spec({**GOOD, "record": ["x"]})
    spec = parse_search_spec({**GOOD, "record": str(tmp_path / "rec")})[0]
    # the record's draw wins over a new one (a newer Optuna could draw others) ...
    mine = [{"id": "c00", "overrides": {"lr_d": 3.0e-4}}]
    SearchRecord(spec, tmp_path / "rec").keep_configs(mine)
    assert search.prepare_search_folder(spec, configs, tmp_path / "out", fresh=False) == mine
    assert json.loads((tmp_path / "out" / "configs.json").read_text())["configs"] == mine
    # ... and a search folder holding another draw than the record is refused, nothing lost
    (tmp_path / "out" / "configs.json").write_text(json.dumps({"configs": configs}))
    with pytest.raises(ConfigError, match="different configurations"):
        search.prepare_search_folder(spec, configs, tmp_path / "out", fresh=False)
    assert SearchRecord(spec, tmp_path / "rec").configs() == mine
    other = parse_search_spec({**_with(search={"eta": 2}), "record": str(tmp_path / "rec")})[0]
    with pytest.raises(ConfigError, match="another spec"):
        SearchRecord(other, tmp_path / "rec").prepare()


def test_merged_rungs_take_each_rung_once():
    local = {"id": "c00", "rungs": [_entry(0, score=1.0), _entry(1, score=2.0)]}
    kept = {"id": "c00", "rungs": [_entry(0, score=1.0)]}
    assert [e["rung"] for e in merge_runs(local, kept)["rungs"]] == [0, 1]
    assert merge_runs(None, kept) == kept and merge_runs(local, None) == local and merge_runs(None, None) is None


def test_the_record_keeps_one_scorer_and_hands_it_to_the_final_study(tmp_path):
    classified = {**GOOD["eval"], "features": "classifier", "metrics": ["fd"]}
    spec = parse_search_spec({**GOOD, "eval": classified, "search": {**GOOD["search"], "metric": "fd_classifier"},
                              "record": str(tmp_path / "rec")})[0]
    store = SearchRecord(spec, tmp_path / "rec")
    store.prepare()
    weights = tmp_path / "cache" / "classifier-abc.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    weights.with_suffix(".json").write_text("{}")
    sha = hashlib.sha256(b"weights").hexdigest()
    run = {"id": "c00", "rungs": [{**_entry(0, sha), "provenance": {"extractor": "classifier",
                                                                    "extractor_weights": str(weights),
                                                                    "extractor_weights_sha256": sha}}]}
    store.save_run(run)
    assert (tmp_path / "rec" / "scorer" / weights.name).read_bytes() == b"weights"
    assert store.run("c00") == run
    with pytest.raises(SaganError, match="not recorded"):
        store.save_run({"id": "c01", "rungs": [_entry(0, "0" * 64)]})
    assert store.run("c01") is None
    store.seed_final_scorer()
    assert (tmp_path / "rec" / "final" / "scorer" / weights.name).read_bytes() == b"weights"
    # a record whose rungs were scored by a classifier it does not keep takes no new rungs
    shutil.rmtree(tmp_path / "rec" / "scorer")
    with pytest.raises(ConfigError, match="does not keep"):
        SearchRecord(spec, tmp_path / "rec").prepare()


def _rungs(folder: Path) -> list:
    """Every rung's rows and promotions and the finalists (not the minutes, which are wall clock)."""
    study = json.loads((folder / "study.json").read_text())
    return [[{k: v for k, v in row.items() if k != "minutes"} for row in r["rows"]] + [r["promoted"]]
            for r in study["rungs"]] + [study["finalists"]]


def _final_scores(folder: Path) -> list:
    study = json.loads((folder / "final" / "study.json").read_text())
    return sorted((r["arm"], r["seed"], [(s["step"], s["scores"]) for s in r["segments"]]) for r in study["runs"])


@pytest.mark.slow
def test_a_search_killed_mid_rung_goes_on_in_a_fresh_checkout_from_its_record(finished, stand_in, monkeypatch,
                                                                              tmp_path):
    path, done = finished  # the same search, uninterrupted, without a record
    text = yaml.safe_dump({**yaml.safe_load(path.read_text()), "record": "rec"})
    real_train, calls = search._train, []

    def killed_in_rung_2(cfg):
        calls.append(cfg.max_steps)
        if cfg.max_steps == 4 and calls.count(4) == 2:  # rung 2: c02 done, c01 killed before it trains
            raise Killed
        real_train(cfg)

    first = tmp_path / "first"
    first.mkdir()
    (first / "s.yaml").write_text(text)
    monkeypatch.chdir(first)
    monkeypatch.setattr(search, "_train", killed_in_rung_2)
    with pytest.raises(Killed):
        main(["study", "s.yaml", "--out", "out"])
    kept = {p.stem: [e["rung"] for e in json.loads(p.read_text())["rungs"]]
            for p in (first / "rec" / "rungs").glob("*.json")}
    assert kept == {"c00": [0], "c01": [0], "c02": [0, 1], "c03": [0]}
    assert json.loads((first / "rec" / "configs.json").read_text()) == json.loads((done / "configs.json").read_text())

    # a fresh checkout: the spec and a copy of the record; no run folders
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "s.yaml").write_text(text)
    shutil.copytree(first / "rec", fresh / "rec")
    monkeypatch.chdir(fresh)
    monkeypatch.setattr(search, "_train", lambda cfg: (calls.append(cfg.max_steps), real_train(cfg)))
    calls.clear()
    assert main(["study", "s.yaml", "--out", "out"]) == 0
    assert calls == [4]  # only c01's rung 2, from its seed straight to 4 steps; nothing recorded runs again
    assert sorted(p.name for p in (fresh / "out" / "runs").iterdir()) == ["c01"]
    assert _rungs(fresh / "out") == _rungs(done)
    for cid in ("c00", "c01", "c02", "c03"):  # the same scores, and for c01 the same trained weights (g_sum)
        a = json.loads((fresh / "rec" / "rungs" / f"{cid}.json").read_text())
        b = json.loads((done / "runs" / cid / "search_run.json").read_text())
        assert [(e["step"], e["scores"]) for e in a["rungs"]] == [(e["step"], e["scores"]) for e in b["rungs"]]
    assert _final_scores(fresh / "out") == _final_scores(done)
    assert len(list((fresh / "rec" / "final" / "finished").glob("*/seed_*.json"))) == 6
    assert "Finalists: c01" in (fresh / "rec" / "study.md").read_text()

    # the tables alone, in yet another checkout: from the record, nothing trained
    again = tmp_path / "again"
    again.mkdir()
    (again / "s.yaml").write_text(text)
    shutil.copytree(fresh / "rec", again / "rec")
    monkeypatch.chdir(again)
    calls.clear()
    assert main(["study", "s.yaml", "--out", "out", "--tables-only"]) == 0
    assert calls == [] and _rungs(again / "out") == _rungs(done)
    assert _final_scores(again / "out") == _final_scores(done)
