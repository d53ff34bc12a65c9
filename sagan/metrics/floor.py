"""The real-against-real floor: what a perfect generator would score, from the reference set alone.

The reference is split once, by a fixed permutation, into two halves; one half stands in for the generated
images and is scored against the other with the same metric functions and settings as `evaluate`. A
generator's score is read against this floor, not against zero: a perfect generator's FD is not 0 at a finite
sample size, nor its recall 1. The halves are half the reference's size each, so FD (biased upwards at small
sample sizes) is a slightly pessimistic floor for a score computed on the whole reference.
"""

from __future__ import annotations

import numpy as np
import torch

from sagan.metrics import maths

FLOOR_SEED = 0  # the split never changes with the evaluation's seed


def class_share_scores(shares: np.ndarray, real_shares: np.ndarray, suffix: str) -> dict[str, float]:
    """Total variation between class shares and the real ones, and the smallest ratio of a share to its real one."""
    present = real_shares > 0
    return {f"class_tv{suffix}": float(0.5 * np.abs(shares - real_shares).sum()),
            f"class_ratio{suffix}_min": float((shares[present] / real_shares[present]).min())}


def real_floor(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
               suffix: str, kid_subsets: int = 100, kid_subset_size: int = 1000, pr_k: int = 3,
               dc_k: int = 5) -> dict[str, float]:
    """Scores of one half of a reference set (features (N, D), logits (N, K), labels (N,)) against the other.

    Keys as `evaluate` names them for an extractor with this `suffix` (fd_classifier, kid_classifier, ...),
    plus the class-share scores of the second half's argmax against the whole set's label shares.
    """
    n = len(features) // 2
    perm = torch.randperm(len(features), generator=torch.Generator().manual_seed(FLOOR_SEED))
    a, b = perm[:n], perm[n:2 * n]
    real, fake = features[a], features[b]
    out = {f"fd{suffix}": maths.frechet_distance(real, fake)}
    size = min(kid_subset_size, n)
    out[f"kid{suffix}"], out[f"kid{suffix}_std"] = maths.kernel_distance(real, fake, kid_subsets, size, FLOOR_SEED)
    out[f"is{suffix}"], out[f"is{suffix}_std"] = maths.classifier_score(logits[b], min(10, n), FLOOR_SEED)
    out[f"precision{suffix}"], out[f"recall{suffix}"] = maths.precision_recall(real, fake, k=pr_k)
    out[f"density{suffix}"], out[f"coverage{suffix}"] = maths.density_coverage(real, fake, k=dc_k)
    real_shares = np.bincount(labels.numpy(), minlength=num_classes) / len(labels)
    out.update(class_share_scores(maths.class_fractions(logits[b]), real_shares, suffix))
    return {k: float(v) for k, v in out.items()}
