"""Semantic segmentation scores from a confusion matrix (numpy; no TensorFlow).

Scores accumulate over a whole dataset: sum the confusion matrices, then score once, so a
large image weighs by its pixels and a class missing from one image does not skew the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion_matrix(target: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; rows are target classes, columns predicted classes."""
    if target.shape != predicted.shape:
        raise ValueError(f"target shape {target.shape} != predicted shape {predicted.shape}")
    target = target.reshape(-1).astype(np.int64)
    predicted = predicted.reshape(-1).astype(np.int64)
    for name, labels in (("target", target), ("predicted", predicted)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels span {labels.min()}..{labels.max()}, outside 0..{num_classes - 1}"
            )
    counts = np.bincount(target * num_classes + predicted, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


@dataclass
class SegmentationScores:
    """Per-class and summary scores.

    A class with no pixels in target or prediction has IoU and Dice 1.0 (nothing to get
    wrong) and is left out of mean_iou and mean_dice; `support` tells which classes those are.
    """

    per_class_iou: list[float]
    per_class_dice: list[float]
    support: list[int]
    mean_iou: float
    mean_dice: float
    pixel_accuracy: float

    def to_dict(self, class_names: list[str] | None = None) -> dict:
        names = class_names or [str(i) for i in range(len(self.support))]
        return {
            "mean_iou": self.mean_iou,
            "mean_dice": self.mean_dice,
            "pixel_accuracy": self.pixel_accuracy,
            "per_class": {
                name: {"iou": iou, "dice": dice, "support": support}
                for name, iou, dice, support in zip(
                    names, self.per_class_iou, self.per_class_dice, self.support, strict=True
                )
            },
        }


def scores_from_confusion(confusion: np.ndarray) -> SegmentationScores:
    confusion = confusion.astype(np.float64)
    true_positive = np.diag(confusion)
    target_count = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    union = target_count + predicted_count - true_positive
    present = union > 0
    iou = np.divide(true_positive, union, out=np.ones_like(union), where=present)
    dice_denominator = target_count + predicted_count
    dice = np.divide(
        2 * true_positive, dice_denominator, out=np.ones_like(union), where=present
    )
    total = confusion.sum()
    return SegmentationScores(
        per_class_iou=[float(v) for v in iou],
        per_class_dice=[float(v) for v in dice],
        support=[int(v) for v in target_count],
        mean_iou=float(iou[present].mean()) if present.any() else 1.0,
        mean_dice=float(dice[present].mean()) if present.any() else 1.0,
        pixel_accuracy=float(true_positive.sum() / total) if total else 1.0,
    )


def segmentation_scores(
    target: np.ndarray, predicted: np.ndarray, num_classes: int
) -> SegmentationScores:
    """Scores for one pair of class masks (any equal shapes)."""
    return scores_from_confusion(confusion_matrix(target, predicted, num_classes))
