"""Metrics: `evaluate()` and the pieces it is made of.

- `evaluate(fake_uint8, against, metrics, features)`: flat scores + provenance (sagan.metrics.evaluation);
  `evaluate_generator(G, against, num, seed)` samples a generator first: what the trainer calls
- feature extractors: Inception-v3 (torch-fidelity, TF-FID protocol) and the shipped Fashion-MNIST classifier
- metric maths on feature arrays: Frechet distance, KID, classifier/Inception score, precision/recall,
  density/coverage (sagan.metrics.maths)
- the on-disk reference statistics cache (sagan.metrics.cache)
- references and their geometry (sagan.metrics.reference); evaluation targets as images, `load_samples`
  (sagan.metrics.targets)
"""

from sagan.metrics.evaluation import (
    METRICS,
    evaluate,
    evaluate_generator,
    parse_metrics,
    scores_only,
    to_records,
)
from sagan.metrics.extractors import EXTRACTORS, create_extractor, resolve_inception_weights
from sagan.metrics.maths import (
    class_fractions,
    classifier_score,
    density_coverage,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    precision_recall,
)
from sagan.metrics.targets import load_samples

__all__ = [
    "EXTRACTORS", "METRICS", "class_fractions", "classifier_score", "create_extractor", "density_coverage",
    "evaluate", "evaluate_generator", "feature_statistics", "frechet_distance", "frechet_distance_from_stats",
    "kernel_distance",
    "load_samples", "parse_metrics", "precision_recall", "resolve_inception_weights", "scores_only", "to_records",
]  # fmt: skip
