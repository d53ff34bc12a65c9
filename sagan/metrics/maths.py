"""Metric maths on feature arrays: pure functions, no models, no files.

Where torch-fidelity has the formula we call it, so our numbers are its numbers:
- Frechet distance (Heusel et al. 2017, "GANs trained by a two time-scale update rule"),
- kernel distance, KID (Binkowski et al. 2018, "Demystifying MMD GANs"): unbiased MMD^2, cubic polynomial
  kernel, mean and std over random subsets,
- Inception Score (Salimans et al. 2016) and its analogue on any classifier's logits,
- precision and recall (Kynkaanniemi et al. 2019, "Improved precision and recall metric"), k = 3.
Density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative models"),
k = 5, are not in torch-fidelity and are written here after the authors' `prdc` package.

Features are (N, D) arrays or tensors; `real` always comes first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import calculate_precision_recall_part


def _tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().to(dtype)
    if x.dim() != 2:
        raise ValueError(f"expected (N, D) features, got shape {tuple(x.shape)}")
    return x


def feature_statistics(features: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features, in float64: what the Frechet distance needs."""
    feats = _tensor(features, torch.float64)
    if len(feats) < 2:
        raise ValueError("the Frechet distance needs at least 2 samples")
    return fid_features_to_statistics(feats)


def frechet_distance_from_stats(stats_a: dict[str, np.ndarray], stats_b: dict[str, np.ndarray]) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two {"mu", "sigma"} Gaussians."""
    a = {k: np.asarray(v, dtype=np.float64) for k, v in stats_a.items()}
    b = {k: np.asarray(v, dtype=np.float64) for k, v in stats_b.items()}
    return float(fid_statistics_to_metric(a, b, verbose=False)["frechet_inception_distance"])


def frechet_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID when they are Inception pool3)."""
    return frechet_distance_from_stats(feature_statistics(real), feature_statistics(fake))


def kernel_distance(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) over `subsets` random subsets of the unbiased MMD^2 with kernel (x.y / D + 1)^3 (KID)."""
    real, fake = _tensor(real), _tensor(fake)
    if subset_size < 2 or subset_size > min(len(real), len(fake)):
        raise ValueError(f"KID subset size {subset_size} must be in [2, {min(len(real), len(fake))}]")
    out = kid_features_to_metric(
        real, fake, kid_subsets=subsets, kid_subset_size=subset_size, rng_seed=seed, verbose=False
    )
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def classifier_score(logits: np.ndarray | torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """(mean, std) over `splits` chunks of exp(E[KL(p(y|x) || p(y))]): the Inception Score of any classifier.

    1 when every sample gets the same prediction; the number of classes when predictions are confident and
    spread evenly over the classes.
    """
    logits = _tensor(logits)
    if len(logits) < splits:
        raise ValueError(f"the classifier score needs at least {splits} samples for {splits} splits")
    out = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=seed)
    return out["inception_score_mean"], out["inception_score_std"]


def class_fractions(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """(K,) fraction of samples whose argmax prediction is each class (mode coverage at a glance)."""
    logits = _tensor(logits)
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1])
    return (counts.double() / max(len(logits), 1)).numpy()


def precision_recall(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    k: int = 3,
    batch_size: int = 2048,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """(precision, recall): the share of fake samples inside the real manifold, and of real inside the fake.

    Each manifold is the union of balls reaching every sample's k-th nearest neighbour in its own set.
    The pairwise distances are computed on `device`.
    """
    real, fake = _tensor(real).to(device), _tensor(fake).to(device)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set")
    # torch-fidelity's convention: features_1 is generated, features_2 is real.
    precision, recall = calculate_precision_recall_part(fake, real, neighborhood=k, batch_size=batch_size)
    return float(precision), float(recall)


def _kth_neighbour_distance(x: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """(N,) distance from each row of x to its k-th nearest other row."""
    return torch.cat([torch.cdist(b, x).kthvalue(k + 1, dim=1).values for b in x.split(batch_size)])


def density_coverage(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    k: int = 5,
    batch_size: int = 2048,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """(density, coverage) of Naeem et al. 2020.

    Density: how many real k-NN balls contain each fake sample, over k, averaged (about 1 when the two
    distributions match; can exceed 1). Coverage: the share of real balls that contain at least one fake sample.
    The pairwise distances are computed on `device`.
    """
    real, fake = _tensor(real).to(device), _tensor(fake).to(device)
    if len(real) <= k or len(fake) < 1:
        raise ValueError(f"density/coverage with k={k} needs more than {k} real samples")
    radii = _kth_neighbour_distance(real, k, batch_size)  # (N_real,)
    inside_count = torch.zeros(len(fake), dtype=torch.float64, device=real.device)
    covered = []
    for rows, r in zip(real.split(batch_size), radii.split(batch_size)):
        d = torch.cdist(rows, fake)  # (b, N_fake)
        inside = d < r[:, None]
        inside_count += inside.sum(0, dtype=torch.float64)
        covered.append(d.min(dim=1).values < r)
    density = inside_count.mean().item() / k
    coverage = torch.cat(covered).double().mean().item()
    return float(density), float(coverage)
