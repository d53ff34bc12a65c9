"""The real-against-real floor: what a perfect generator would score, from the reference set alone.

A perfect generator's images are new draws from the reference's distribution: images the feature network never
saw, scored against a reference it was trained on. So the held-out images of a trained extractor (never used in
its training) stand in for the generated images, and are scored against as many of the images it was trained
on (a fixed draw), with the same metric functions and settings as `evaluate`. Scoring one half of the training
images against the other would flatter the floor: the network knows those images, and its features (and its
argmax, for the class shares) are sharper on them than on anything new. A generator's score is read against
this floor, not against zero: a perfect generator's FD is not 0 at a finite sample size, nor its recall 1. Both
sides are the held-out set's size (a tenth of the reference by default), so FD (biased upwards at small sample
sizes) is a pessimistic floor for a score computed on thousands of images.
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
               suffix: str, held_out: torch.Tensor, kid_subsets: int = 100, kid_subset_size: int = 1000,
               pr_k: int = 3, dc_k: int = 5) -> dict[str, float]:
    """Scores of a reference set's held-out images against as many of its others (features (N, D), logits
    (N, K), labels (N,); `held_out`: the indices the extractor never trained on).

    Keys as `evaluate` names them for an extractor with this `suffix` (fd_classifier, kid_classifier, ...),
    plus the class-share scores of the held-out images' argmax against the whole set's label shares.
    """
    held_out = torch.as_tensor(held_out, dtype=torch.long)
    seen = torch.ones(len(features), dtype=torch.bool)
    seen[held_out] = False
    seen = seen.nonzero().squeeze(1)
    n = min(len(held_out), len(seen))
    a = seen[torch.randperm(len(seen), generator=torch.Generator().manual_seed(FLOOR_SEED))[:n]]
    b = held_out[:n]
    real, fake = features[a], features[b]
    out = {f"fd{suffix}": maths.frechet_distance(real, fake)}
    size = min(kid_subset_size, n)
    out[f"kid{suffix}"], out[f"kid{suffix}_std"] = maths.kernel_distance(real, fake, kid_subsets, size, FLOOR_SEED)
    out[f"is{suffix}"], out[f"is{suffix}_std"] = maths.classifier_score(logits[b], min(10, n), FLOOR_SEED)
    # the k-nearest-neighbour scores need more than k images a side: a small reference's floor goes without them
    if n > pr_k:
        out[f"precision{suffix}"], out[f"recall{suffix}"] = maths.precision_recall(real, fake, k=pr_k)
    if n > dc_k:
        out[f"density{suffix}"], out[f"coverage{suffix}"] = maths.density_coverage(real, fake, k=dc_k)
    real_shares = np.bincount(labels.numpy(), minlength=num_classes) / len(labels)
    out.update(class_share_scores(maths.class_fractions(logits[b]), real_shares, suffix))
    return {k: float(v) for k, v in out.items()}
