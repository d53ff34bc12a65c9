"""The metric maths against closed forms and synthetic distributions."""

import numpy as np
import pytest
import scipy.linalg
import torch

from sagan.metrics import maths


def _closed_form_fd(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _random_cov(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_of_gaussian_statistics_matches_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    got = maths.frechet_distance_from_stats({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2})
    assert got == pytest.approx(_closed_form_fd(mu1, s1, mu2, s2), rel=1e-6)
    # Diagonal covariances: sum (mu1 - mu2)^2 + sum (sqrt(v1) - sqrt(v2))^2
    v1, v2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    diag = maths.frechet_distance_from_stats({"mu": mu1, "sigma": np.diag(v1)}, {"mu": mu2, "sigma": np.diag(v2)})
    assert diag == pytest.approx(((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum(), rel=1e-6)


def test_frechet_distance_of_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(1)
    d, n = 4, 200_000
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    x = rng.multivariate_normal(mu1, s1, n).astype(np.float32)
    y = rng.multivariate_normal(mu2, s2, n).astype(np.float32)
    expected = _closed_form_fd(mu1, s1, mu2, s2)
    assert maths.frechet_distance(x, y) == pytest.approx(expected, rel=0.02)


def test_frechet_distance_is_zero_on_itself_and_grows_with_noise():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    assert abs(maths.frechet_distance(x, x)) < 1e-6
    fds = [maths.frechet_distance(x, x + s * rng.standard_normal(x.shape).astype(np.float32))
           for s in (0.1, 0.3, 1.0)]
    assert fds[0] < fds[1] < fds[2]
    assert fds[0] > 1e-4


def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1500, 32, generator=g), torch.randn(1500, 32, generator=g)
    mean, std = maths.kernel_distance(a, b, subsets=20, subset_size=500)
    assert abs(mean) < 3 * std + 1e-3
    assert std > 0
    shifted, _ = maths.kernel_distance(a, b + 1.0, subsets=20, subset_size=500)
    assert shifted > 10 * max(abs(mean), std)
    with pytest.raises(ValueError):
        maths.kernel_distance(a[:10], b, subset_size=500)


def test_classifier_score_bounds():
    n, c = 1000, 10
    constant = torch.zeros(n, c)
    constant[:, 3] = 20.0
    assert maths.classifier_score(constant)[0] == pytest.approx(1.0, abs=1e-6)
    uniform_confident = torch.full((n, c), -30.0)
    uniform_confident[torch.arange(n), torch.arange(n) % c] = 30.0
    assert maths.classifier_score(uniform_confident, splits=1)[0] == pytest.approx(c, rel=1e-6)
    mean10, std10 = maths.classifier_score(uniform_confident, splits=10)  # chunks of 100 are nearly even
    assert c * 0.9 < mean10 <= c + 1e-9 and std10 < 0.5


def test_class_fractions_is_the_argmax_histogram():
    logits = torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 3, 0], [0, 0, 1]])
    np.testing.assert_allclose(maths.class_fractions(logits), [0.25, 0.5, 0.25])


def _manifold(n, seed, shift=0.0):
    """Points on a noisy circle in 2-D, embedded in 8-D by a fixed rotation."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    pts = np.stack([np.cos(t), np.sin(t)], 1) + 0.05 * rng.standard_normal((n, 2)) + shift
    q, _ = np.linalg.qr(np.random.default_rng(123).standard_normal((8, 8)))
    return (np.concatenate([pts, np.zeros((n, 6))], 1) @ q.T).astype(np.float32)


def test_precision_recall_on_synthetic_manifolds():
    real, same = _manifold(1000, 0), _manifold(1000, 1)
    p, r = maths.precision_recall(real, same, k=3)
    assert p > 0.9 and r > 0.9
    p, r = maths.precision_recall(real, _manifold(1000, 2, shift=5.0), k=3)
    assert p < 0.05 and r < 0.05
    # A fake set on half the circle: still precise, but recalls only about half the real manifold.
    half = _manifold(4000, 3)
    half = half[(half @ np.linalg.qr(np.random.default_rng(123).standard_normal((8, 8)))[0])[:, 1] > 0][:1000]
    p, r = maths.precision_recall(real, half, k=3)
    assert p > 0.9 and 0.3 < r < 0.7


def test_density_coverage_sanity():
    real, same = _manifold(1000, 0), _manifold(1000, 1)
    d, c = maths.density_coverage(real, same, k=5)
    assert 0.8 < d < 1.2 and c > 0.9
    d, c = maths.density_coverage(real, _manifold(1000, 2, shift=5.0), k=5)
    assert d < 0.01 and c < 0.01
    # Mode collapse: every fake sample sits on one real point: inside the real manifold (density > 0, at least
    # its own ball of k) but covering almost none of it.
    collapsed = np.repeat(real[:1], 1000, axis=0)
    d, c = maths.density_coverage(real, collapsed, k=5)
    assert c < 0.02 and d >= 1 / 5
