"""Planning a study by its power: the smallest difference it detects at its seeds, the seeds a difference needs,
and the detectable difference beside each verdict of the tables."""

import json

import numpy as np
import pytest
import yaml
from scipy import stats

from sagan.cli import main
from sagan.errors import ConfigError
from sagan.study.compare import summarise
from sagan.study.plan import difference_spread, parse_differences, plan
from sagan.study.power import detectable_difference, seeds_needed
from sagan.study.spec import parse_spec
from sagan.study.table import study_markdown

SPEC = {
    "name": "p", "base": {"data": "fashion-mnist", "model": "sagan_32_cpu"}, "budget": {"steps": 10},
    "seeds": [0, 1, 2], "eval": {"metrics": ["fd", "pr"], "num": 100}, "baseline": "sagan",
    "arms": [{"name": "sagan"}, {"name": "no-attention", "overrides": {"model_args": {"g_attention": [],
                                                                                        "d_attention": []}}}],
}


def _record(arm: str, seed: int, fd: float, recall: float) -> dict:
    segment = {"fraction": 1.0, "step": 10, "minutes": 0.1, "images_per_sec": 5.0, "cpu": "cpu A",
               "scores": {"fd_fmnist": fd, "recall_fmnist": recall},
               "provenance": {"extractor_weights_sha256": "f" * 64}}
    return {"arm": arm, "seed": seed, "segments": [segment], "done": True}


RECORDS = [_record("sagan", 0, 10.0, 0.5), _record("no-attention", 0, 11.0, 0.52),
           _record("sagan", 1, 12.0, 0.45), _record("no-attention", 1, 13.5, 0.46),
           _record("sagan", 2, 11.0, 0.55), _record("no-attention", 2, 11.7, 0.50)]


@pytest.mark.parametrize("n", [3, 6])
def test_a_paired_difference_of_the_detectable_size_is_found_80_percent_of_the_time(n):
    """Simulated studies: a true difference equal to the detectable one, tested as the study tests (scipy's
    paired t test at the same alpha), is found in about 80% of them."""
    alpha, sd = 0.05 / 4, 2.0
    delta = detectable_difference(sd, n, alpha)
    rng = np.random.default_rng(0)
    diffs = rng.normal(delta, sd, size=(20000, n))
    p = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue
    assert np.mean(p < alpha) == pytest.approx(0.8, abs=0.015)
    # and with more seeds a smaller difference is detectable
    assert detectable_difference(sd, n + 3, alpha) < delta


def test_seeds_needed_is_the_inverse_of_the_detectable_difference():
    alpha, sd = 0.05 / 6, 1.5
    for n in (3, 5, 12):
        assert seeds_needed(detectable_difference(sd, n, alpha), sd, alpha) == n
    assert seeds_needed(10.0, sd, alpha) < seeds_needed(1.0, sd, alpha)
    assert seeds_needed(1.0, None, alpha) is None and seeds_needed(1.0, 0.0, alpha) == 2
    assert detectable_difference(sd, 1, alpha) is None  # one seed: no test


def test_welch_detectable_difference_for_arms_with_different_seeds():
    """Two groups: simulated Welch tests of the detectable difference find it about 80% of the time."""
    alpha, sd, n = 0.05, 1.0, 8
    delta = detectable_difference(sd, n, alpha, paired=False, n_other=n)
    rng = np.random.default_rng(1)
    a, b = rng.normal(delta, sd, (20000, n)), rng.normal(0, sd, (20000, n))
    p = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    assert np.mean(p < alpha) == pytest.approx(0.8, abs=0.02)


def test_the_spread_of_a_difference_is_measured_on_shared_seeds_else_assumed():
    arm, base = {0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.5, 1: 1.0, 2: 3.0}
    sd, how = difference_spread(arm, base)
    assert sd == pytest.approx(np.std([0.5, 1.0, 1.0], ddof=1)) and "3 paired seeds" in how
    sd, how = difference_spread({7: 1.0}, base)
    assert sd == pytest.approx(np.hypot(np.std([0.5, 1, 3], ddof=1), np.std([0.5, 1, 3], ddof=1)))
    assert "baseline" in how
    assert difference_spread(arm, {0: 1.0})[0] is None


def test_plan_rows_per_arm_and_score_with_the_holm_alpha():
    spec = parse_spec(SPEC)
    result = plan(spec, RECORDS, seeds=5, differences={"fd_fmnist": 2.0})
    assert result["tests"] == 2 and result["alpha_per_test"] == pytest.approx(0.025)
    rows = {r["metric"]: r for r in result["rows"]}
    assert set(rows) == {"fd_fmnist", "recall_fmnist"} and {r["arm"] for r in result["rows"]} == {"no-attention"}
    d = [1.0, 1.5, 0.7]
    assert rows["fd_fmnist"]["sd"] == pytest.approx(np.std(d, ddof=1))
    assert rows["fd_fmnist"]["detectable"] == pytest.approx(detectable_difference(np.std(d, ddof=1), 5, 0.025))
    assert rows["fd_fmnist"]["seeds_needed"] == seeds_needed(2.0, np.std(d, ddof=1), 0.025)
    assert rows["recall_fmnist"]["seeds_needed"] is None  # no difference asked for this score


def test_parse_differences():
    assert parse_differences("0.5") == 0.5
    assert parse_differences("fd_fmnist=2, kid_fmnist=0.01") == {"fd_fmnist": 2.0, "kid_fmnist": 0.01}
    with pytest.raises(ConfigError, match="--difference"):
        parse_differences("fd=big")


def test_the_table_states_the_detectable_difference_beside_each_verdict():
    spec = parse_spec(SPEC)
    summary = summarise(spec, RECORDS)
    cmp = summary["arms"]["no-attention"]["versus_baseline"]["fd_fmnist"]
    expected = detectable_difference(np.std([1.0, 1.5, 0.7], ddof=1), 3, 0.05 / 2)
    assert cmp["detectable"] == pytest.approx(expected)
    assert "_values" not in cmp
    md = study_markdown({"spec": spec.to_dict(), "summary": summary})
    assert f"(detectable ±{expected:.3g})" in md and "80% power" in md
    json.dumps(summary)  # study.json stays JSON


def test_plan_command_reads_a_pilot_and_refuses_a_stray_difference(tmp_path, capsys):
    spec_file = tmp_path / "p.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    pilot = tmp_path / "pilot.json"
    pilot.write_text(json.dumps({"runs": RECORDS}))
    assert main(["study", str(spec_file), "--out", str(tmp_path / "out"), "--plan", "--pilot", str(pilot),
                 "--seeds", "8", "--difference", "2"]) == 0
    out = capsys.readouterr().out
    assert "8 seeds" in out and "6 finished run(s)" in out and "fd_fmnist" in out and "(for 2)" in out
    assert not (tmp_path / "out").exists()  # planning trains and writes nothing
    assert main(["study", str(spec_file), "--difference", "2"]) == 2
    assert "--plan" in capsys.readouterr().err
    assert main(["study", str(spec_file), "--plan", "--pilot", str(tmp_path / "nothing")]) == 2


def test_the_power_agrees_with_statsmodels_where_statsmodels_has_an_answer():
    from statsmodels.stats.power import TTestIndPower, TTestPower

    from sagan.study.power import _power

    assert _power(1.3, 6, 0.01, True) == pytest.approx(TTestPower().power(1.3, 6, 0.01), abs=1e-6)
    assert _power(1.3, 6, 0.01, False, 1.5) == pytest.approx(TTestIndPower().power(1.3, 6, 0.01, ratio=1.5), abs=1e-6)


def test_a_pilot_whose_baseline_has_another_name_stands_in_for_this_studys_baseline(tmp_path, capsys):
    spec_file = tmp_path / "p.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    pilot = tmp_path / "record"
    for r in RECORDS:  # the pilot calls its baseline "ttur" and has no "no-attention" arm of its own
        arm = "ttur" if r["arm"] == "sagan" else "other"
        (pilot / "finished" / arm).mkdir(parents=True, exist_ok=True)
        (pilot / "finished" / arm / f"seed_{r['seed']}.json").write_text(json.dumps({**r, "arm": arm}))
    (pilot / "spec.json").write_text(json.dumps({"spec": {"baseline": "ttur"}}))
    assert main(["study", str(spec_file), "--out", str(tmp_path / "out"), "--plan", "--pilot", str(pilot)]) == 0
    out = capsys.readouterr().out
    assert "its baseline 'ttur' stands in for 'sagan'" in out
    # no-attention is planned from the baseline's own spread: sd of the difference sqrt(2) x the baseline's sd
    sd = np.std([10.0, 12.0, 11.0], ddof=1) * np.sqrt(2)
    assert f"{sd:.3g} (baseline sd for both, uncorrelated)" in out
    (pilot / "spec.json").unlink()  # without the pilot's spec, nothing stands in and nothing is planned
    assert main(["study", str(spec_file), "--out", str(tmp_path / "out"), "--plan", "--pilot", str(pilot)]) == 0
    assert "no finished baseline run" in capsys.readouterr().out
