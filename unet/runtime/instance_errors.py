"""Why labelled objects are missed: each one that no predicted object matches at IoU 0.5 is
merged with a neighbour, split, badly shaped or not found.

F1 says how many objects a model misses; these counts say which failure to work on. For each
labelled object left unmatched by the one-to-one matching of `instance_metrics`:
- not found: predicted objects cover less than half of it;
- split: they do, but no single one covers half of it;
- merged: the predicted object covering most of it also covers at least half of another
  labelled object;
- badly shaped: otherwise (one predicted object covers most of it, but at IoU < 0.5).
Predicted objects that lie at least 90% outside every label count as objects on no label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from unet.runtime.instance_metrics import overlap_counts

MATCH_IOU = 0.5
# A predicted object with less than this share of its pixels on labels lies on no label.
ON_LABEL_SHARE = 0.1
MISSED_KINDS = ("merged", "split", "badly_shaped", "not_found")


@dataclass(frozen=True)
class ErrorCounts:
    """Labelled objects matched and missed (by kind), and predicted objects on no label."""

    labelled: int = 0
    matched: int = 0
    merged: int = 0
    split: int = 0
    badly_shaped: int = 0
    not_found: int = 0
    predicted: int = 0
    on_no_label: int = 0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        pairs = zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)
        return ErrorCounts(*(a + b for a, b in pairs))

    @property
    def missed(self) -> int:
        return self.labelled - self.matched

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def error_counts(true_labels: np.ndarray, predicted_labels: np.ndarray) -> ErrorCounts:
    """The matches and the kinds of misses of one image (see the module's docstring)."""
    overlap = overlap_counts(true_labels, predicted_labels).astype(np.float64)
    true_area = overlap.sum(axis=1)[1:]
    predicted_area = overlap.sum(axis=0)[1:]
    objects = overlap[1:, 1:]
    iou = objects / np.maximum(true_area[:, None] + predicted_area[None, :] - objects, 1)
    matched = np.zeros(len(true_area), bool)
    if iou.size:
        rows, columns = linear_sum_assignment(iou, maximize=True)
        matched[rows[iou[rows, columns] >= MATCH_IOU]] = True
    share_of_true = objects / np.maximum(true_area[:, None], 1)
    holds_half = share_of_true >= 0.5
    kinds = dict.fromkeys(MISSED_KINDS, 0)
    for index in np.flatnonzero(~matched):
        shares = share_of_true[index]
        if shares.sum() < 0.5:
            kinds["not_found"] += 1
        elif shares.max() < 0.5:
            kinds["split"] += 1
        elif holds_half[:, int(np.argmax(shares))].sum() > 1:
            kinds["merged"] += 1
        else:
            kinds["badly_shaped"] += 1
    on_labels = objects.sum(axis=0)
    on_no_label = int(np.sum(on_labels < ON_LABEL_SHARE * predicted_area))
    return ErrorCounts(len(true_area), int(matched.sum()), **kinds, predicted=len(predicted_area),
                       on_no_label=on_no_label)


def dataset_error_counts(
    true_labels: Sequence[np.ndarray], predicted_labels: Sequence[np.ndarray]
) -> ErrorCounts:
    """`error_counts` summed over a dataset's images."""
    total = ErrorCounts()
    for true, predicted in zip(true_labels, predicted_labels, strict=True):
        total = total + error_counts(true, predicted)
    return total
