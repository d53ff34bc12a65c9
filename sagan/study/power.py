"""The power arithmetic of a study's own test, used by the plan (sagan.study.plan) and by the tables'
detectable differences (sagan.study.compare): a two-sided t test of the difference of means over seeds, paired by
seed, or of two groups (as statsmodels' `TTestPower` and `TTestIndPower` define them). The power is integrated here
rather than taken from statsmodels, whose noncentral t gives NaN at 3 seeds and a Holm-sized alpha, the very studies
this plans.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

POWER = 0.8  # the power at which the smallest detectable difference is stated
MOST_SEEDS = 10_000  # beyond this a plan says "more than"


def t_test_power(noncentrality: float, df: float, alpha: float) -> float:
    """The power of a two-sided t test: P(|T| > t_crit) for T noncentral t with `df` degrees of freedom.

    Integrated over the chi-square of the spread (T = (Z + nc) / sqrt(V / df)), which stays finite where scipy's
    noncentral t (and so statsmodels' TTestPower) returns NaN: large effects at 2-3 seeds and small alphas."""
    from scipy import integrate
    from scipy import stats as sps

    crit = float(sps.t.ppf(1 - alpha / 2, df))

    def given_spread(v: float) -> float:
        scale = crit * math.sqrt(v / df)
        return (sps.norm.sf(scale - noncentrality) + sps.norm.cdf(-scale - noncentrality)) * sps.chi2.pdf(v, df)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quad's accuracy notes; the integrand is smooth and bounded
        value = integrate.quad(given_spread, 0, np.inf, limit=200)[0]
    return min(1.0, max(0.0, value))


def _power(effect: float, n: float, alpha: float, paired: bool, ratio: float = 1.0) -> float:
    """Power of the paired test over n seeds (effect in units of the differences' sd), or of two groups of n and
    ratio*n runs (effect in units of the pooled sd), as statsmodels' TTestPower and TTestIndPower define them."""
    if paired:
        return t_test_power(effect * math.sqrt(n), n - 1, alpha)
    n2 = ratio * n
    return t_test_power(effect * math.sqrt(n * n2 / (n + n2)), n + n2 - 2, alpha)


def _root(f, low: float, high: float, most: float) -> float | None:
    """The x in [low, most] where the increasing f crosses 0 (the bracket grows by doubling); None beyond `most`.
    Bracketing here, rather than statsmodels' solve_power, because that one gives up at 3 seeds and small alphas."""
    from scipy.optimize import brentq

    while f(high) < 0:
        if high >= most:
            return None
        low, high = high, min(high * 2, most)
    return float(brentq(f, low, high, xtol=1e-10)) if f(low) < 0 else low


def detectable_difference(sd: float | None, n: int, alpha: float, paired: bool = True, n_other: int | None = None,
                          power: float = POWER) -> float | None:
    """The smallest |difference of means| that a two-sided t test at `alpha` finds with probability `power`:
    paired over n seeds when `sd` is the spread of the per-seed differences, else two groups of n and `n_other`
    runs with `sd` their pooled spread. None with fewer than 2 seeds or no spread."""
    if sd is None or n < 2 or (not paired and (n_other or n) < 2):
        return None
    if sd == 0:
        return 0.0
    effect = _detectable_effect(n, alpha, power, paired, (n_other or n) / n)
    return None if effect is None else effect * sd


@functools.lru_cache(maxsize=256)
def _detectable_effect(n: int, alpha: float, power: float, paired: bool, ratio: float) -> float | None:
    """The detectable effect in units of the spread: the same for every score and arm of a study."""
    return _root(lambda e: _power(e, n, alpha, paired, ratio) - power, 1e-9, 1.0, 1e6)


def seeds_needed(difference: float, sd: float | None, alpha: float, power: float = POWER) -> int | None:
    """How many seeds a paired study needs to find `difference` with probability `power` (at least 2); None
    without a spread, MOST_SEEDS + 1 for more than MOST_SEEDS."""
    if sd is None:
        return None
    if sd == 0:
        return 2
    if difference == 0:
        return MOST_SEEDS + 1
    effect = abs(difference) / sd
    enough = functools.lru_cache(None)(lambda k: _power(effect, k, alpha, True) >= power - 1e-6)
    low, high = 1, 2  # the power grows with the seeds: double, then halve the gap (not enough at low, enough at high)
    while not enough(high):
        if high > MOST_SEEDS:
            return MOST_SEEDS + 1
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high
