"""Which classes a conditional generator is asked for when it is scored, and whether it drew them.

Scoring a conditional model against a reference compares two distributions of images, so the generated classes
should come in the reference's proportions: balanced classes against an unbalanced set (the emoji set is 60%
People & Body) would move FD, precision/recall and the class shares by the sampling choice alone. When the
reference has labels for as many classes as the model, the generated labels follow the reference's label
shares exactly (sampling.labels_with_shares); otherwise they are balanced, as `sagan sample` draws them.
The model's classes and the reference's are matched by index: both come from the same sorted class names when
the run trained on that reference. Where the model records its class names, they must equal the reference's.
"""

from __future__ import annotations

import torch

from sagan.data.run import name_list
from sagan.sampling import labels_with_shares, sample_labels


def generated_labels(num_classes: int, num: int, seed: int, against: str | None, size: int, *,
                     split: str | None = None, root: str | None = None, labels: str | None = None,
                     label_column: str | None = None, allow_unlabelled: bool = False,
                     class_names: list[str] | None = None) -> tuple[torch.Tensor | None, str | None]:
    """The labels to generate `num` images of a model with `num_classes` classes, and how they were chosen.

    class_names: the model's class names in index order, where it recorded them; the reference's shares are then
    used only when its classes have the same names.
    """
    if not num_classes:
        return None, None
    counts, differ = None, ""
    if against is not None:
        from sagan.metrics.reference import load_reference

        ref = load_reference(against, size, split, root=root, labels=labels, label_column=label_column,
                             allow_unlabelled=allow_unlabelled)
        same = not class_names or list(ref.class_names) == list(class_names)
        if ref.labels is not None and len(ref.class_names) == num_classes and same:
            counts = torch.bincount(ref.labels.long(), minlength=num_classes)
        elif ref.labels is not None and not same:
            differ = " (the reference's classes are not the model's)"
    which = f"the {num_classes} classes ({name_list(class_names, 12)})" if class_names else \
        f"classes 0..{num_classes - 1}"
    if counts is None or bool((counts == counts[0]).all()):
        return sample_labels(num, num_classes), f"balanced: {which} in turn{differ}"
    return (labels_with_shares(num, counts, seed),
            f"the reference's label shares over {which} (exact counts, seeded order)")


def class_match(logits: torch.Tensor, wanted: torch.Tensor) -> float:
    """Share of generated images whose classifier argmax is the class they were generated for."""
    return float((logits.argmax(dim=1).cpu() == wanted.cpu()).float().mean())
