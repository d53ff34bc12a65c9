"""The statistics behind the study tables: Welch intervals and the words they earn."""

import numpy as np
import pytest
from scipy import stats

from sagan.study.compare import higher_is_better, main_metrics, mean_std, verdict, welch_interval


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
