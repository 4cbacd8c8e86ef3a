"""Instance metrics: one-to-one matching by IoU (Hungarian, scipy), F1, DSB2018 score, PQ.

Counts accumulate over a dataset before ratios are taken. When there is nothing to find and
nothing is found (TP + FP + FN == 0) every ratio is 1.0: a perfect answer, not NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

F1_THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
DSB_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def overlap_counts(true_labels: np.ndarray, predicted_labels: np.ndarray) -> np.ndarray:
    """(n_true + 1, n_predicted + 1) pixels shared by each true id and each predicted id, row and
    column 0 the background (zero where there is none), then the objects in increasing id order."""
    if true_labels.shape != predicted_labels.shape:
        raise ValueError(f"label shapes differ: {true_labels.shape} vs {predicted_labels.shape}")
    true_ids, true_index = _ids_and_index(true_labels)
    predicted_ids, predicted_index = _ids_and_index(predicted_labels)
    true_index = true_index.ravel() + int(true_ids.size == 0 or true_ids[0] != 0)
    predicted_index = predicted_index.ravel() + int(predicted_ids.size == 0 or predicted_ids[0] != 0)
    rows = int(np.count_nonzero(true_ids)) + 1
    columns = int(np.count_nonzero(predicted_ids)) + 1
    counts = np.bincount(true_index * columns + predicted_index, minlength=rows * columns)
    return counts.reshape(rows, columns)


def iou_matrix(true_labels: np.ndarray, predicted_labels: np.ndarray) -> np.ndarray:
    """(n_true, n_predicted) IoU of every true instance with every predicted one."""
    overlap = overlap_counts(true_labels, predicted_labels)
    true_area = overlap.sum(axis=1, keepdims=True)
    predicted_area = overlap.sum(axis=0, keepdims=True)
    union = true_area + predicted_area - overlap
    iou = overlap / np.maximum(union, 1)
    return iou[1:, 1:]


def _ids_and_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids present in `labels` and each pixel's position among them (np.unique's inverse).

    Label images hold small non-negative ids, so counting beats np.unique's sort by far.
    """
    labels = labels.ravel()
    if labels.size and labels.min() >= 0 and labels.max() < 4 * labels.size + 1024:
        present = np.bincount(labels.astype(np.int64)) > 0
        position = np.cumsum(present) - 1
        return np.flatnonzero(present), position[labels]
    return np.unique(labels, return_inverse=True)


@dataclass
class MatchCounts:
    """Counts at each IoU threshold, and the IoUs of matched pairs."""

    true_positive: dict[float, int]
    false_positive: dict[float, int]
    false_negative: dict[float, int]
    matched_ious: dict[float, list[float]]
    true_count: int
    predicted_count: int

    def __add__(self, other: MatchCounts) -> MatchCounts:
        return MatchCounts(
            {t: self.true_positive[t] + other.true_positive[t] for t in self.true_positive},
            {t: self.false_positive[t] + other.false_positive[t] for t in self.false_positive},
            {t: self.false_negative[t] + other.false_negative[t] for t in self.false_negative},
            {t: self.matched_ious[t] + other.matched_ious[t] for t in self.matched_ious},
            self.true_count + other.true_count,
            self.predicted_count + other.predicted_count,
        )


def match_instances(
    true_labels: np.ndarray, predicted_labels: np.ndarray, thresholds: tuple[float, ...] = DSB_THRESHOLDS
) -> MatchCounts:
    """Optimal one-to-one assignment maximising total IoU; a pair counts at t if IoU >= t."""
    iou = iou_matrix(true_labels, predicted_labels)
    n_true, n_predicted = iou.shape
    if n_true and n_predicted:
        rows, columns = linear_sum_assignment(iou, maximize=True)
        pair_ious = iou[rows, columns]
    else:
        pair_ious = np.zeros(0)
    true_positive, false_positive, false_negative, matched = {}, {}, {}, {}
    for threshold in thresholds:
        kept = pair_ious[pair_ious >= threshold]
        true_positive[threshold] = int(kept.size)
        false_positive[threshold] = n_predicted - int(kept.size)
        false_negative[threshold] = n_true - int(kept.size)
        matched[threshold] = [float(v) for v in kept]
    return MatchCounts(true_positive, false_positive, false_negative, matched, n_true, n_predicted)


def touching_pairs(instance_labels: np.ndarray) -> np.ndarray:
    """(P, 2) the id pairs (smaller first) of objects that share an edge (4-connectivity)."""
    first = np.concatenate([instance_labels[:, :-1].ravel(), instance_labels[:-1, :].ravel()])
    second = np.concatenate([instance_labels[:, 1:].ravel(), instance_labels[1:, :].ravel()])
    meeting = (first > 0) & (second > 0) & (first != second)
    pairs = np.sort(np.stack([first[meeting], second[meeting]], axis=1), axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def touching_pairs_split(
    true_labels: np.ndarray, predicted_labels: np.ndarray, threshold: float = 0.5
) -> tuple[int, int]:
    """(pairs split, touching pairs): a pair of touching true objects is split when each of the
    two is matched, one to one, by a predicted object at IoU >= `threshold` (so by two)."""
    pairs = touching_pairs(true_labels)
    if not len(pairs):
        return 0, 0
    iou = iou_matrix(true_labels, predicted_labels)
    true_ids = np.unique(true_labels[true_labels > 0])
    matched = np.zeros(int(true_ids.max()) + 1, bool)
    if iou.shape[1]:
        rows, columns = linear_sum_assignment(iou, maximize=True)
        matched[true_ids[rows[iou[rows, columns] >= threshold]]] = True
    return int((matched[pairs[:, 0]] & matched[pairs[:, 1]]).sum()), len(pairs)


def dataset_touching_pairs_split(
    true_labels: list[np.ndarray], predicted_labels: list[np.ndarray], threshold: float = 0.5
) -> tuple[int, int]:
    """(pairs split, touching pairs) summed over a dataset's images (`touching_pairs_split`)."""
    counts = [touching_pairs_split(true, predicted, threshold)
              for true, predicted in zip(true_labels, predicted_labels, strict=True)]
    return sum(split for split, _ in counts), sum(pairs for _, pairs in counts)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 1.0


def scores_from_counts(counts: MatchCounts) -> dict:
    """Precision, recall, F1 per threshold; DSB score; panoptic quality and mean IoU at 0.5."""
    result: dict = {"true_count": counts.true_count, "predicted_count": counts.predicted_count}
    for threshold in F1_THRESHOLDS:
        if threshold not in counts.true_positive:
            continue
        tp, fp, fn = (counts.true_positive[threshold], counts.false_positive[threshold],
                      counts.false_negative[threshold])
        result[f"precision@{threshold}"] = _ratio(tp, tp + fp)
        result[f"recall@{threshold}"] = _ratio(tp, tp + fn)
        result[f"f1@{threshold}"] = _ratio(2 * tp, 2 * tp + fp + fn)
        result[f"tp@{threshold}"], result[f"fp@{threshold}"], result[f"fn@{threshold}"] = tp, fp, fn
    result["dsb_score"] = float(np.mean([
        _ratio(counts.true_positive[t], counts.true_positive[t] + counts.false_positive[t]
               + counts.false_negative[t])
        for t in DSB_THRESHOLDS if t in counts.true_positive
    ]))
    matched = counts.matched_ious[0.5]
    tp, fp, fn = counts.true_positive[0.5], counts.false_positive[0.5], counts.false_negative[0.5]
    result["panoptic_quality"] = _ratio(sum(matched), tp + 0.5 * fp + 0.5 * fn)
    result["mean_matched_iou"] = float(np.mean(matched)) if matched else (1.0 if tp + fp + fn == 0 else 0.0)
    return result


def instance_scores(true_labels: np.ndarray, predicted_labels: np.ndarray) -> dict:
    """Instance scores for one image."""
    return scores_from_counts(match_instances(true_labels, predicted_labels))


def dataset_instance_scores(true_labels: list[np.ndarray], predicted_labels: list[np.ndarray]) -> dict:
    """Instance scores with counts summed over all images."""
    total = None
    for true, predicted in zip(true_labels, predicted_labels, strict=True):
        counts = match_instances(true, predicted)
        total = counts if total is None else total + counts
    if total is None:
        raise ValueError("no images to score")
    return scores_from_counts(total)
