"""The statistics behind the study tables: paired or Welch intervals, Holm-corrected words."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from sagan.errors import ConfigError
from sagan.study.compare import (
    compare_by_seed,
    higher_is_better,
    main_metrics,
    mean_std,
    summarise,
    verdict,
    welch_interval,
)
from sagan.study.spec import parse_spec
from sagan.study.table import study_markdown


def test_welch_interval_matches_scipys_test():
    a, b = [1.0, 1.2, 0.9, 1.1], [1.5, 1.7, 1.6]
    iv = welch_interval(a, b)
    t = stats.ttest_ind(a, b, equal_var=False)
    ci = t.confidence_interval(0.95)
    assert iv["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (iv["low"], iv["high"]) == pytest.approx((ci.low, ci.high))
    assert iv["df"] == pytest.approx(t.df)


def test_words_follow_the_interval():
    overlapping = welch_interval([1.0, 1.4, 0.8], [1.1, 1.3, 0.9])
    assert verdict("fd_fmnist", overlapping) == "no difference measured"
    lower = welch_interval([1.0, 1.01, 0.99], [2.0, 2.02, 1.98])
    assert verdict("fd_fmnist", lower) == "better than the baseline"  # lower FD is better
    assert verdict("recall_fmnist", lower) == "worse than the baseline"
    assert verdict("fd", welch_interval([1.0], [2.0, 2.1])) == "too few runs to compare"


def test_metric_names():
    assert main_metrics(["fd_fmnist", "kid_fmnist", "kid_fmnist_std", "share_class_3", "recall"]) == [
        "fd_fmnist", "kid_fmnist", "recall"]
    assert higher_is_better("precision_classifier") and not higher_is_better("kid")
    assert mean_std([1.0]) == {"mean": 1.0, "std": None, "n": 1}
    assert mean_std([1.0, 3.0])["std"] == pytest.approx(2 ** 0.5)


def test_spreads_get_no_verdict():
    """Inception scores have no suffix: their spreads (kid_std, is_std) are not headline scores either."""
    keys = ["fid", "kid", "kid_std", "is", "is_std", "fd_fmnist", "is_fmnist_std", "density", "coverage_fmnist"]
    assert main_metrics(keys) == ["fid", "kid", "is", "fd_fmnist", "density", "coverage_fmnist"]


def test_density_has_no_better_side():
    higher = welch_interval([1.3, 1.31, 1.29], [1.0, 1.01, 0.99])
    assert higher_is_better("density_fmnist") is None and higher_is_better("density") is None
    assert verdict("density_fmnist", higher) == "higher than the baseline"
    assert verdict("density", welch_interval([0.7, 0.71, 0.69], [1.0, 1.01, 0.99])) == "lower than the baseline"
    assert verdict("coverage_fmnist", higher) == "better than the baseline"


def test_arms_with_the_same_seeds_are_paired_by_seed():
    # each seed shifts both arms alike: paired, the arm is clearly lower; unpaired, the seed spread hides it
    base = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}
    arm = {0: 0.9, 1: 1.91, 2: 2.89, 3: 3.9}
    paired = compare_by_seed(arm, base)
    t = stats.ttest_rel([arm[s] for s in range(4)], [base[s] for s in range(4)])
    assert paired["test"] == "paired" and paired["p"] == pytest.approx(t.pvalue)
    assert (paired["low"], paired["high"]) == pytest.approx(tuple(t.confidence_interval(0.95)))
    assert paired["high"] < 0
    unpaired = compare_by_seed({**arm, 4: 5.0}, base)  # another set of seeds: Welch
    assert unpaired["test"] == "welch" and unpaired["low"] < 0 < unpaired["high"]


def _study(arms: dict[str, dict[int, float]]):
    """A spec-like object and run records whose only score at the full budget is fd_x."""
    spec = SimpleNamespace(arms=[SimpleNamespace(name=n) for n in arms], baseline=next(iter(arms)), fractions=[1.0])
    records = [{"arm": name, "seed": seed, "done": True,
                "segments": [{"fraction": 1.0, "step": 10, "minutes": 1.0, "images_per_sec": 5.0, "cpu": "x",
                              "scores": {"fd_x": value}}]}
               for name, values in arms.items() for seed, value in values.items()]
    return spec, records


def test_verdicts_are_holm_corrected_over_the_studys_comparisons():
    base = {0: 10.0, 1: 10.4, 2: 9.6}
    slightly = {0: 10.5, 1: 11.05, 2: 9.95}  # raw p about 0.03: alone it would be called worse
    clearly = {0: 20.0, 1: 20.4, 2: 19.7}
    alone = summarise(*_study({"base": base, "a": slightly}))["arms"]["a"]["versus_baseline"]["fd_x"]
    assert alone["interval"]["p"] < 0.05 and alone["verdict"] == "worse than the baseline"
    many = {"base": base, "a": slightly, "b": dict(slightly), "c": {0: 9.9, 1: 10.5, 2: 9.6}, "d": clearly}
    summary = summarise(*_study(many))
    cmp = summary["arms"]["a"]["versus_baseline"]["fd_x"]
    assert cmp["interval"]["test"] == "paired" and cmp["interval"]["p"] == alone["interval"]["p"]
    p = [summary["arms"][n]["versus_baseline"]["fd_x"]["interval"]["p"] for n in "abcd"]
    assert [summary["arms"][n]["versus_baseline"]["fd_x"]["p_holm"] for n in "abcd"] == pytest.approx(
        list(multipletests(p, method="holm")[1]))
    assert cmp["p_holm"] > 0.05 and cmp["verdict"] == "no difference measured"
    assert summary["arms"]["d"]["versus_baseline"]["fd_x"]["verdict"] == "worse than the baseline"
    assert summary["tests"] == 4 and "Holm" in summary["test"] and "paired" in summary["test"]


def test_primary_scores_alone_are_tested_and_the_others_are_shown_without_a_verdict():
    base = {0: 10.0, 1: 10.4, 2: 9.6}
    worse = {0: 10.5, 1: 11.05, 2: 9.95}  # raw p about 0.03 on each score
    spec, records = _study({"base": base, "a": worse})
    for r in records:  # a second score with the same differences
        r["segments"][0]["scores"]["kid_x"] = r["segments"][0]["scores"]["fd_x"]
    both = summarise(spec, records)
    assert both["tests"] == 2 and both["arms"]["a"]["versus_baseline"]["fd_x"]["verdict"] == "no difference measured"
    spec.eval = {"primary": ["fd"]}
    one = summarise(spec, records)
    fd, kid = (one["arms"]["a"]["versus_baseline"][k] for k in ("fd_x", "kid_x"))
    assert one["tests"] == 1 and fd["verdict"] == "worse than the baseline" and fd["p_holm"] < 0.05
    assert kid["secondary"] and kid["verdict"] == "secondary score: not tested" and "p_holm" not in kid
    assert kid["interval"] == fd["interval"] and "primary scores (fd" in one["test"]


def test_primary_must_name_scores_the_study_computes():
    spec = {"name": "s", "base": {"data": "fashion-mnist"}, "budget": {"steps": 2}, "seeds": [0],
            "baseline": "a", "arms": [{"name": "a"}], "eval": {"metrics": ["fd", "pr"], "primary": ["recall"]}}
    assert parse_spec(spec).eval["primary"] == ["recall"]
    for bad in (["kid"], [], "fd", [3]):
        spec["eval"]["primary"] = bad
        with pytest.raises(ConfigError, match="eval primary"):
            parse_spec(spec)


def test_naming_primary_scores_keeps_the_studys_identity():
    spec = {"name": "s", "base": {"data": "fashion-mnist"}, "budget": {"steps": 2}, "seeds": [0],
            "baseline": "a", "arms": [{"name": "a"}], "eval": {"metrics": ["fd"]}}
    before = parse_spec(spec).identity()
    spec["eval"]["primary"] = ["fd"]
    assert parse_spec(spec).identity() == before


def test_a_failed_run_is_counted_and_kept_out_of_the_scores():
    spec, records = _study({"base": {0: 1.0, 1: 1.1}, "a": {0: 2.0, 1: 2.1}})
    records.append({"arm": "a", "seed": 2, "done": True, "failed": "diverged at step 7",
                    "segments": [{"fraction": 1.0, "step": 10, "minutes": 1.0, "images_per_sec": 5.0, "cpu": "x",
                                  "scores": {"fd_x": 99.0}}]})
    arm = summarise(spec, records)["arms"]["a"]
    assert arm["runs"] == 3 and arm["runs_done"] == 2 and arm["seeds_done"] == [0, 1]
    assert arm["failed"] == [{"seed": 2, "reason": "diverged at step 7"}]
    assert arm["scores"]["fd_x"]["values"] == [2.0, 2.1]
    assert arm["curve"]["1.0"]["scores"]["fd_x"] == pytest.approx(2.05)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "docs" / "studies").glob("*.json")),
                         ids=lambda p: p.name)
def test_committed_study_results_still_render(path):
    """A committed study.json renders as it is stored, and its runs summarise anew with the current statistics."""
    study = json.loads(path.read_text())
    old = study_markdown(study)
    assert f"# Study {study['spec']['name']}" in old
    spec = parse_spec(study["spec"])
    study["summary"] = summarise(spec, study["runs"])
    new = study_markdown(study)
    assert "Holm" in new and "p " in new
    for arm in spec.arms:
        assert f"| {arm.name}" in new
