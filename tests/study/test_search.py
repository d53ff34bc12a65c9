"""Search in `sagan study`: successive halving over a grid or a sampled space of train-config keys.

The end-to-end tests train real tiny runs (sagan_32 at widths 8, a few steps) and rank them by a deterministic
stand-in for the evaluation: a Frechet-distance-like score computed from the run's lr_d and step (so which
configuration wins each rung is known in advance) plus a fingerprint of the trained G_ema weights (so a resumed
run that trained differently would show). Bad specs are one line, exit 2, before anything is written.
"""

from pathlib import Path

import pytest
import torch
import yaml

from sagan.checkpoint import latest_checkpoint
from sagan.cli import main
from sagan.errors import ConfigError, SaganError
from sagan.study import search
from sagan.study.rungs import promote, rank, rung_budgets, rung_sizes
from sagan.study.search_spec import is_search_spec, load_search_spec, parse_search_spec
from tests.study.conftest import Killed, tiny_search_spec

ROOT = Path(__file__).resolve().parents[2]


# ---- the bookkeeping ---------------------------------------------------------------------------------------


def test_rung_sizes_and_budgets_follow_eta():
    assert rung_sizes(9, 3) == [9, 3, 1] and rung_sizes(8, 2) == [8, 4, 2, 1] and rung_sizes(10, 3) == [10, 3, 1]
    assert rung_sizes(1, 3) == [1] and rung_sizes(27, 3, rungs=2) == [27, 9]
    assert rung_budgets(200, 3, 3) == [200, 600, 1800]


def test_promotion_keeps_the_best_and_never_a_failed_run():
    scores = {"c00": 0.5, "c01": 0.2, "c02": None, "c03": 0.2, "c04": float("nan"), "c05": 0.9}
    assert rank(scores, maximize=False)[:4] == ["c01", "c03", "c00", "c05"]  # a tie keeps the id order
    assert promote(scores, 2, maximize=False) == ["c01", "c03"]
    assert promote(scores, 2, maximize=True) == ["c05", "c00"]
    assert promote(scores, 10, maximize=False) == ["c01", "c03", "c00", "c05"]  # failed runs stop
    assert promote({"c00": None}, 1, maximize=False) == []


# ---- specs ---------------------------------------------------------------------------------------------------

GOOD = {
    "name": "s", "base": {"data": "fashion-mnist", "model": "sagan_32_cpu"}, "seeds": [1, 2, 3],
    "eval": {"metrics": ["fd", "pr"], "num": 100},
    "search": {"space": {"lr_d": {"log_uniform": [1.0e-4, 1.0e-3]}, "model_args.g_ch": {"choice": [16, 32]},
                         "n_dis": {"int": [1, 3]}, "model_args.g_attention": {"choice": [[16], []]}},
               "samples": 9, "metric": "fd_fmnist", "first_steps": 100, "eta": 3},
}


def _with(search=None, **changes):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in {**changes, **({"search": {**spec["search"], **search}} if search else {})}.items():
        spec[key] = value
    for key in [k for k, v in spec.get("search", {}).items() if v is None]:
        spec["search"].pop(key)
    return spec


def test_a_good_space_draws_the_same_distinct_configurations_every_time():
    spec, configs = parse_search_spec(GOOD)
    again = parse_search_spec(GOOD)[1]
    assert configs == again and len(configs) == 9 and [c["id"] for c in configs][:2] == ["c00", "c01"]
    assert len({yaml.safe_dump(c["overrides"]) for c in configs}) == 9
    for c in configs:
        o = c["overrides"]
        assert 1e-4 <= o["lr_d"] <= 1e-3 and o["model_args.g_ch"] in (16, 32) and o["n_dis"] in (1, 2, 3)
        assert o["model_args.g_attention"] in ([16], [])
    assert spec.sizes == [9, 3, 1] and spec.budgets == [100, 300, 900] and spec.finalists == 1
    assert parse_search_spec(_with(search={"sampler_seed": 1}))[1] != configs
    # the final seeds may grow without making it another search
    assert parse_search_spec(_with(seeds=[1, 2, 3, 4]))[0].identity() == spec.identity()
    final = spec.final_spec(configs[:1])
    assert [a.name for a in final.arms] == ["base", "c00"] and final.budget == {"steps": 900}
    cfg = final.train_config(final.arm("c00"), 1, "x")
    assert cfg.model_args["g_ch"] == configs[0]["overrides"]["model_args.g_ch"] and cfg.lr_d == configs[0]["overrides"][
        "lr_d"]


def test_a_grid_runs_every_combination_and_a_recipe_file_can_be_the_base():
    spec, configs = parse_search_spec(_with(base="configs/emoji64.yaml", search={
        "space": None, "samples": None, "grid": {"batch_size": [16, 32], "augment": ["", "translation"]},
        "metric": "fd", "eta": 2}))
    assert [c["overrides"] for c in configs] == [{"batch_size": 16, "augment": ""},
                                                 {"batch_size": 16, "augment": "translation"},
                                                 {"batch_size": 32, "augment": ""},
                                                 {"batch_size": 32, "augment": "translation"}]
    assert spec.sizes == [4, 2, 1] and spec.base["model"] == "sagan_64"
    assert "max_minutes" not in spec.base  # the recipe's run keys are the search's to set


def test_keys_that_only_work_together_are_drawn_together():
    spec, configs = parse_search_spec(_with(search={"space": {
        "lr_d": {"log_uniform": [1.0e-4, 1.0e-3]},
        "recon": {"together": [{}, {"recon_weight": 1.0, "model_args.d_recon": 8}]}}, "samples": 6}))
    pairs = {tuple(sorted(set(c["overrides"]) - {"lr_d"})) for c in configs}
    assert pairs == {(), ("model_args.d_recon", "recon_weight")}  # both keys or neither, and both drawn
    assert all(c["overrides"].get("recon_weight") in (None, 1.0) for c in configs)
    assert spec.final_spec(configs).arm(configs[0]["id"])  # every configuration built its model (parse checks)


@pytest.mark.parametrize("changes, message", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"search": {"pruner": "asha"}}, "unknown key 'pruner' in search"),
    ({"search": {"space": {"lr_dd": {"uniform": [0.1, 0.2]}}}}, r"unknown config key 'lr_dd'.*did you mean: lr_d"),
    ({"search": {"space": {}}}, "search space is empty"),
    ({"search": {"space": None, "samples": None, "grid": {}}}, "search grid is empty"),
    ({"search": {"space": None, "samples": None, "grid": {"lr_d": []}}}, "grid 'lr_d' needs a non-empty list"),
    ({"search": {"grid": {"lr_d": [1e-4]}}}, "exactly one of space"),
    ({"search": {"space": {"lr_d": {"choice": []}}}}, "choice needs a non-empty list"),
    ({"search": {"space": {"lr_d": {"log_uniform": [0, 1e-3]}}}}, "positive low bound"),
    ({"search": {"space": {"lr_d": {"uniform": [1e-3, 1e-4]}}}}, "low < high"),
    ({"search": {"space": {"n_dis": {"int": [1.5, 3]}}}}, "integer bounds"),
    ({"search": {"space": {"lr_d": {"normal": [0, 1]}}}}, "unknown range 'normal'"),
    ({"search": {"space": {"seed": {"int": [0, 9]}}}}, "which the search sets"),
    ({"search": {"space": {"lr_d": {"choice": [-1.0, 1e-4]}}, "samples": 2}}, "lr_d must be positive"),
    ({"search": {"space": {"model_args.g_chh": {"choice": [8, 16]}}, "samples": 2}}, "g_chh"),
    ({"search": {"space": {"n_dis": {"choice": [1, 2]}}, "samples": 3}}, "fewer than 3 distinct"),
    ({"search": {"space": {"recon": {"together": [{}]}}, "samples": 1}}, "at least 2 mappings"),
    ({"search": {"space": {"recon": {"together": [{}, 3]}}, "samples": 2}}, "at least 2 mappings"),
    ({"search": {"space": {"recon": {"together": [{}, {"recon_weigth": 1.0}]}}, "samples": 2}},
     "unknown config key 'recon_weigth'"),
    ({"search": {"space": {"lr_d": {"choice": [1e-4, 2e-4]}, "pair": {"together": [{}, {"lr_d": 3e-4}]}},
                 "samples": 2}}, "'pair' sets 'lr_d', which 'lr_d' varies too"),
    ({"search": {"space": {"recon_weight": {"choice": [0.0, 1.0]}}, "samples": 2}}, "needs a discriminator with a"),
    ({"search": {"samples": 0}}, "samples must be a positive integer"),
    ({"search": {"eta": 1}}, "eta must be an integer >= 2"),
    ({"search": {"first_steps": 0}}, "first_steps must be a positive integer"),
    ({"search": {"first_steps": None}}, "first_steps must be a positive integer"),
    ({"search": {"metric": "fdd"}}, "search metric must be a score"),
    ({"search": {"metric": "recall"}, "eval": {"metrics": ["fd"]}}, "add 'pr' to eval metrics"),
    ({"search": {"direction": "up"}}, "minimize or maximize"),
    ({"search": {"rungs": 4}}, "rungs must be an integer from 1 to 3"),
    ({"search": {"finalists": 2}}, "finalists must be an integer from 1 to 1"),
    ({"seeds": [1, 2]}, "at least 3 distinct"),
    ({"seeds": [0, 1, 2]}, "include the screening seed 0"),
    ({"base": {"data": "fashion-mnist", "max_steps": 5}}, "base sets 'max_steps'"),
    ({"base": {"model": "sagan_33"}}, "unknown model 'sagan_33'"),
    ({"eval": {"metrics": ["fd", "pr"], "num": 3}}, "eval num"),
])
def test_bad_specs_name_the_problem(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_search_spec(_with(**changes))


def test_a_bad_spec_is_one_line_exit_2_and_loses_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "runs" / "c00").mkdir(parents=True)
    (out / "runs" / "c00" / "search_run.json").write_text("{}")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(search={"eta": 1})))
    assert is_search_spec(path)
    assert main(["study", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "eta must be an integer >= 2" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["runs", "runs/c00",
                                                                             "runs/c00/search_run.json"]
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert main(["study", str(good), "--out", str(out), "--parallel", "0"]) == 2
    assert "--parallel must be >= 1, got 0" in capsys.readouterr().err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["runs", "runs/c00",
                                                                             "runs/c00/search_run.json"]
    assert main(["study", str(good), "--out", str(out), "--only", "c00"]) == 2
    assert "a search has no arms" in capsys.readouterr().err
    assert main(["study", str(good), "--out", str(tmp_path / "none"), "--tables-only"]) == 2
    assert "holds no search yet" in capsys.readouterr().err


def test_a_folder_of_another_spec_is_refused_and_kept(tmp_path):
    spec, configs = parse_search_spec(GOOD)
    search.prepare_search_folder(spec, configs, tmp_path, fresh=False)
    (tmp_path / "runs" / "c00").mkdir()
    other, other_configs = parse_search_spec(_with(search={"eta": 2}))
    with pytest.raises(ConfigError, match="another spec.*--fresh"):
        search.prepare_search_folder(other, other_configs, tmp_path, fresh=False)
    assert (tmp_path / "runs" / "c00").is_dir()
    assert search.prepare_search_folder(other, other_configs, tmp_path, fresh=True) == other_configs
    assert not (tmp_path / "runs" / "c00").exists()


def test_a_folder_that_is_not_a_search_is_refused_and_kept_with_or_without_fresh(tmp_path, capsys, monkeypatch):
    """--out . in a checkout with the quick start's runs/: --fresh once deleted ./runs; now nothing is touched."""
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    work = tmp_path / "work"
    (work / "runs" / "fmnist" / "checkpoints").mkdir(parents=True)
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    for fresh in ([], ["--fresh"]):
        assert main(["study", str(good), "--out", ".", *fresh]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "not a study folder" in err, err
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "runs"]
    assert (work / "runs" / "fmnist" / "checkpoints").is_dir() and (work / "notes.txt").read_text() == "keep me"
    run = work / "runs" / "fmnist"  # a training run's folder is named as such
    with pytest.raises(ConfigError, match="training run's folder"):
        search.prepare_search_folder(*parse_search_spec(GOOD), run, fresh=False)
    assert [p.name for p in run.iterdir()] == ["checkpoints"]


@pytest.mark.parametrize("path", sorted((ROOT / "studies" / "search").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_search_spec_is_valid(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the specs name their data and recipe files from the repository root
    spec, configs = load_search_spec(path)
    assert len(configs) == spec.samples and len(spec.seeds) >= 3 and spec.seed not in spec.seeds


def test_a_run_whose_loss_became_nan_is_recorded_failed_and_never_promoted(tmp_path, monkeypatch):
    spec, configs = parse_search_spec(_with(search={"samples": 3}))
    search.prepare_search_folder(spec, configs, tmp_path, fresh=False)
    calls = []

    def diverges(cfg):
        calls.append(cfg.lr_d)
        raise SaganError("the D loss became NaN or infinite at step 3, so the run stopped without saving that step")

    monkeypatch.setattr(search, "_train", diverges)
    record = search.run_rung(spec, configs[0], 0, tmp_path)
    assert record["rungs"] == [{"rung": 0, "steps": 100, "failed": record["rungs"][0]["failed"], "score": None}]
    assert "NaN" in record["rungs"][0]["failed"]
    assert search.run_rung(spec, configs[0], 0, tmp_path) == record and len(calls) == 1  # not tried again
    with pytest.raises(SaganError, match="every run of rung 1 failed"):
        search.run_search(spec, configs, tmp_path, say=lambda msg: None)
    views, finalists = search.rung_views(spec, configs, tmp_path)
    assert finalists is None and views[0]["promoted"] == []
    assert views[0]["rows"][0]["fate"] == "rank 1 of 3: no score (the run failed); not promoted"
    search.write_search_outputs(spec, configs, tmp_path, html=False)
    assert "Every run of this rung failed: the search stopped here." in (tmp_path / "study.md").read_text()

    def no_space(cfg):
        raise SaganError("cannot write the run folder x: No space left on device; choose another --out")

    monkeypatch.setattr(search, "_train", no_space)  # not the configuration's fault: stops the search, unrecorded
    with pytest.raises(SaganError, match="No space"):
        search.run_rung(spec, configs[1], 0, tmp_path / "other")
    assert not (tmp_path / "other" / "runs" / configs[1]["id"] / "search_run.json").exists()


# ---- a real tiny search with a stand-in score ------------------------------------------------------------------


def _steps(run: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.pt"))


@pytest.mark.slow
def test_the_best_of_each_rung_are_promoted_and_continue_their_runs(finished):
    _, out = finished
    import json

    study = json.loads((out / "study.json").read_text())
    r1, r2 = study["rungs"]
    assert [row["id"] for row in r1["rows"]] == ["c02", "c01", "c00", "c03"]  # best first at 2 steps
    assert r1["promoted"] == ["c02", "c01"] and r1["steps"] == 2
    assert [row["id"] for row in r2["rows"]] == ["c01", "c02"] and r2["steps"] == 4  # rescored at 4 steps
    assert study["finalists"] == r2["promoted"] == ["c01"]
    assert r1["rows"][2]["fate"] == "rank 3 of 4: outside the best 2; stops here"
    assert r2["rows"][0]["fate"] == "rank 1 of 2: in the best 1; a finalist"
    # every run is an ordinary run folder; the promoted ones continued from their rung-1 checkpoint
    assert _steps(out / "runs" / "c00") == [1, 2] and _steps(out / "runs" / "c01") == [1, 2, 3, 4]
    assert (out / "runs" / "c01" / "config.yaml").exists()
    assert main(["sample", str(out / "runs" / "c00"), "--num", "4", "--out", str(out.parent / "c00.npz")]) == 0
    # ... and are the runs that 4 steps at once would have trained (resume is bitwise exact)
    from sagan.study.search_spec import parse_search_spec as parse

    spec, configs = parse(yaml.safe_load(finished[0].read_text()))
    final = spec.final_spec(configs[1:2])
    from sagan.config import apply_overrides
    from sagan.train import train

    train(apply_overrides(final.train_config(final.arm("c01"), 0, out.parent / "straight"), {"max_steps": 4}))
    straight = latest_checkpoint(out.parent / "straight")[1]
    promoted = latest_checkpoint(out / "runs" / "c01")[1]
    assert straight["step"] == promoted["step"] == 4
    assert all(torch.equal(straight["generator_ema"][k], promoted["generator_ema"][k])
               for k in straight["generator_ema"])
    # the finalist and the base over the fresh seeds, compared by the study's intervals
    arms = study["final"]["summary"]["arms"]
    assert set(arms) == {"base", "c01"} and arms["c01"]["seeds_done"] == [1, 2, 3]
    assert arms["c01"]["versus_baseline"]["fd_fake"]["verdict"] == "better than the baseline"
    assert (out / "final" / "runs" / "base" / "seed_3" / "config.yaml").exists()
    md = (out / "study.md").read_text()
    assert "## Rung 1: 4 configuration(s) at 2 steps" in md and "Promoted: c02, c01 (the best 2 of 4)." in md
    assert "Finalists: c01 (the best 1 of 2)." in md and "| c01 |" in md and "better than the baseline" in md
    assert "Finalists (best first): c01: lr_d 0.0002;" in md
    page = (out / "study.html").read_text()
    assert "Rung 2: 2 configuration(s) at 4 steps" in page and 'href="final/study.html"' in page
    assert (out / "final" / "study.html").exists()
    # the finalist as a recipe file: the base with its settings, no run keys, and `sagan train --config` takes it
    recipe = yaml.safe_load((out / "recipes" / "c01.yaml").read_text())
    assert recipe["lr_d"] == 2.0e-4 and recipe["model_args"] == {"g_ch": 8, "d_ch": 8} and "max_steps" not in recipe
    assert "recipes/c01.yaml" in md
    assert main(["train", "--config", str(out / "recipes" / "c01.yaml"), "--dry-run", "--out",
                 str(out.parent / "dry")]) == 0


@pytest.mark.slow
def test_plan_of_a_search_plans_its_final_and_trains_nothing(finished, monkeypatch, tmp_path, capsys):
    path, out = finished

    def no_training(cfg):
        raise AssertionError("--plan trained a run")

    monkeypatch.setattr(search, "_train", no_training)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["study", str(path), "--out", str(out), "--plan", "--difference", "fd_fake=0.05"]) == 0
    said = capsys.readouterr().out
    assert "Plan for study tiny-search-final: 3 seeds" in said and "Holm over" in said
    assert "fd_fake" in said and " c01 " in said and "(for 0.05)" in said and "base " not in said
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing written
    # before the rungs have chosen finalists there is nothing to plan: one line, exit 2, no folder made
    assert main(["study", str(path), "--out", str(tmp_path / "new"), "--plan"]) == 2
    err = capsys.readouterr().err.strip()
    assert "have not chosen its finalists yet" in err and "\n" not in err and not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_search_killed_mid_rung_resumes_to_the_same_result(finished, stand_in, monkeypatch, tmp_path, capsys):
    path, done = finished
    out = tmp_path / "killed"
    real_train = search._train
    calls = []

    def killed_in_rung_2(cfg):
        calls.append(cfg.max_steps)
        if cfg.max_steps == 4 and calls.count(4) == 2:  # the second promoted run (c01), 3 of its 4 steps trained
            from sagan.config import apply_overrides

            real_train(apply_overrides(cfg, {"max_steps": 3}))
            raise Killed

    monkeypatch.setattr(search, "_train", lambda cfg: (killed_in_rung_2(cfg), real_train(cfg)))
    with pytest.raises(Killed):
        main(["study", str(path), "--out", str(out)])
    assert calls == [2, 2, 2, 2, 4, 4] and _steps(out / "runs" / "c01") == [1, 2, 3]
    assert not (out / "study.json").exists()
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("c0[0-3]/**/*") if p.is_file()
              and "c01" not in p.parts}

    monkeypatch.setattr(search, "_train", lambda cfg: (calls.append(cfg.max_steps), real_train(cfg)))
    calls.clear()
    capsys.readouterr()
    assert main(["study", str(path), "--out", str(out)]) == 0
    assert calls == [4]  # only the killed run trains again, from its step-3 checkpoint
    said = capsys.readouterr().err  # counted with the rung's runs scored before the kill
    assert "rung 2/2 (4 steps) [1/2] c02" in said and "rung 2/2 (4 steps) [2/2] c01" in said
    assert {p: p.stat().st_mtime_ns for p in before} == before
    import json

    def rungs(folder: Path) -> list:  # everything but the minutes, which are wall clock
        study = json.loads((folder / "study.json").read_text())
        return [[{k: v for k, v in row.items() if k != "minutes"} for row in r["rows"]] + [r["promoted"]]
                for r in study["rungs"]] + [study["finalists"]]

    assert rungs(out) == rungs(done)
    for run in ("c00", "c01", "c02", "c03"):
        a = json.loads((out / "runs" / run / "search_run.json").read_text())
        b = json.loads((done / "runs" / run / "search_run.json").read_text())
        assert [(e["step"], e["scores"]) for e in a["rungs"]] == [(e["step"], e["scores"]) for e in b["rungs"]]


def test_the_configuration_table_shows_a_written_value_exactly_and_a_sampled_one_to_three_digits():
    from sagan.study.search_page import config_rows

    study = {"configs": [{"id": "c00", "overrides": {"ema_decay": 0.9999, "lr_d": 0.000519123456, "augment": ""}},
                         {"id": "c01", "overrides": {"ema_decay": 0.99, "lr_d": 1e-4, "augment": "translation"}}]}
    header, rows = config_rows(study)
    assert header == ["config", "ema_decay", "lr_d", "augment"]
    assert rows == [["c00", "0.9999", "0.000519", '""'], ["c01", "0.99", "0.0001", "translation"]]


def test_a_rung_table_shows_the_other_scores_beside_the_ranking_one():
    from sagan.study.search_page import rung_rows

    study = {"spec": {"search": {"metric": "fd_fmnist"}}}
    rung = {"rows": [{"id": "c04", "step": 348, "minutes": 1.91, "score": 3.926, "failed": None,
                      "others": {"precision_fmnist": 0.563, "recall_fmnist": 0.0873}, "fate": "rank 1 of 2"},
                     {"id": "c24", "step": None, "minutes": None, "score": None, "failed": None, "others": {},
                      "fate": "not run yet"}]}
    header, rows = rung_rows(study, rung)
    assert header == ["config", "step", "minutes", "fd_fmnist", "precision_fmnist (not ranked)",
                      "recall_fmnist (not ranked)", "outcome"]
    assert rows == [["c04", "348", "1.91", "3.926", "0.563", "0.0873", "rank 1 of 2"],
                    ["c24", "-", "-", "-", "-", "-", "not run yet"]]


@pytest.mark.slow
def test_the_page_renders(finished, tmp_path):
    from tests.browser import find_chromium, render

    if find_chromium() is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    _, out = finished
    result = render(out / "study.html", screenshot=tmp_path / "page.png")
    assert result["errors"] == [] and result["requests"] == [] and result["title"] == "sagan search: tiny-search"
    assert (tmp_path / "page.png").stat().st_size > 0


@pytest.mark.slow
def test_a_parallel_search_trains_two_runs_at_once_to_the_same_result(tiny_folder, tmp_path):
    """--parallel 2 runs each rung's configurations (and the final runs) two at a time, one thread each; the
    rungs, promotions and final scores are those of the serial search. Scored for real (the shipped Fashion-MNIST
    classifier's features): a stand-in patched into this process would not reach the worker processes."""
    import json
    import os
    import subprocess
    import sys

    spec = tiny_search_spec(tiny_folder)
    spec["eval"] = {"metrics": ["fd"], "num": 32, "features": "fmnist", "against": "fashion-mnist",
                    "fractions": [1.0]}
    spec["search"]["metric"] = "fd_fmnist"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["study", str(path), "--out", str(tmp_path / "serial")]) == 0
    # two one-thread workers whatever this machine's core count (the serial runs have the spec's one thread)
    code = ("import os, sys; os.cpu_count = lambda: 2; from sagan.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", code, "study", str(path), "--out", str(tmp_path / "parallel"), "--parallel", "2"]
    result = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    def outcome(folder: Path) -> list:  # everything but the wall clock
        study = json.loads((folder / "study.json").read_text())
        rungs = [[{k: v for k, v in row.items() if k not in ("minutes", "images_per_sec")} for row in r["rows"]]
                 + [r["promoted"]] for r in study["rungs"]]
        final = {arm: e["seeds_done"] for arm, e in study["final"]["summary"]["arms"].items()}
        runs = sorted((r["arm"], r["seed"], r["segments"][-1]["scores"]) for r in study["final"]["runs"])
        return [rungs, study["finalists"], final, runs]

    assert outcome(tmp_path / "parallel") == outcome(tmp_path / "serial")

    # each training writes a TensorBoard file named with its process id: the 4 rung-1 runs were trained by two
    # worker processes, not by the search's own process
    # (each rung has its own pool; a promoted run's later files are the next rung's)
    def first_trainer(run: Path) -> int:
        files = sorted((run / "tensorboard").glob("events.out.tfevents.*"), key=lambda p: int(p.name.split(".")[3]))
        return int(files[0].name.split(".")[-2])

    assert len({first_trainer(tmp_path / "parallel" / "runs" / f"c0{i}") for i in range(4)}) == 2
    assert {first_trainer(tmp_path / "serial" / "runs" / f"c0{i}") for i in range(4)} == {os.getpid()}
