"""Scoring segmentations: against labelled targets, and one backend against another.

Images are segmented at their original size through the shared runtime, exactly as a user
would run them. Scores accumulate over a whole set before ratios are taken.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np

from unet.runtime.metadata import ModelMetadata
from unet.runtime.metrics import confusion_matrix, scores_from_confusion
from unet.runtime.preprocess import Segmentation
from unet.runtime.segmenter import Segmenter, SegmentOptions


def segment_all(
    segmenter: Segmenter,
    images: list[np.ndarray],
    options: SegmentOptions = SegmentOptions(),  # noqa: B008  (frozen)
    progress: bool = False,
) -> list[Segmentation]:
    """Segment every image; probabilities are dropped to keep memory small."""
    results = []
    for image in with_progress(images, progress, f"segmenting ({segmenter.backend.name})"):
        segmentation = segmenter.segment(image, **options.to_kwargs()).segmentation
        segmentation.probabilities = np.empty((0,), dtype=np.float32)
        results.append(segmentation)
    return results


def score_segmentations(
    metadata: ModelMetadata,
    predictions: list[Segmentation],
    targets: list[np.ndarray],
    instance_labels: list[np.ndarray] | None = None,
) -> dict:
    """Per-class, mean and foreground scores against class targets; instance scores if given."""
    num_classes = metadata.num_classes
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    foreground_confusion = np.zeros((2, 2), dtype=np.int64)
    for prediction, target in zip(predictions, targets, strict=True):
        confusion += confusion_matrix(target, prediction.class_mask, num_classes)
        foreground_confusion += confusion_matrix(target > 0, prediction.class_mask > 0, 2)
    scores = scores_from_confusion(confusion)
    result = scores.to_dict(metadata.class_names)
    result["foreground_iou"] = scores_from_confusion(foreground_confusion).per_class_iou[1]
    result["images"] = len(predictions)
    if instance_labels is not None and metadata.mode == "instance":
        from unet.runtime.instance_metrics import dataset_instance_scores

        result["instance"] = dataset_instance_scores(
            instance_labels, [p.instance_labels for p in predictions]
        )
    return result


# A class holding less than this share of the reference pixels is too rare to gate on: one
# image's worth of disagreement on a near-empty class moves its IoU by tens of percent.
MIN_CLASS_SUPPORT = 0.01


def agreement(metadata: ModelMetadata, reference: list[Segmentation], other: list[Segmentation]) -> dict:
    """How far `other` agrees with `reference` (e.g. int8 with Keras float), over a set of images.

    pixel_agreement and mean_iou of the class masks; per-class IoU and support (reference
    pixels); supported_mean_iou over the classes with at least MIN_CLASS_SUPPORT of the
    reference pixels; for instance models, matched-instance F1 at IoU 0.5 and both counts.
    """
    confusion = np.zeros((metadata.num_classes,) * 2, dtype=np.int64)
    for first, second in zip(reference, other, strict=True):
        confusion += confusion_matrix(first.class_mask, second.class_mask, metadata.num_classes)
    scores = scores_from_confusion(confusion)
    total = max(1, sum(scores.support))
    supported = [iou for iou, support in zip(scores.per_class_iou, scores.support, strict=True)
                 if support / total >= MIN_CLASS_SUPPORT]
    result = {"pixel_agreement": scores.pixel_accuracy, "mean_iou": scores.mean_iou,
              "per_class_iou": scores.per_class_iou, "support": scores.support,
              "supported_mean_iou": float(np.mean(supported)) if supported else 1.0}
    if metadata.mode == "instance":
        from unet.runtime.instance_metrics import dataset_instance_scores

        matched = dataset_instance_scores(
            [r.instance_labels for r in reference], [o.instance_labels for o in other]
        )
        result["matched_instance_f1"] = matched["f1@0.5"]
        result["reference_count"] = matched["true_count"]
        result["count"] = matched["predicted_count"]
    return result


def evaluate_samples(
    segmenter: Segmenter,
    images: list[np.ndarray],
    targets: list[np.ndarray],
    instance_labels: list[np.ndarray] | None = None,
    options: SegmentOptions = SegmentOptions(),  # noqa: B008  (frozen)
    progress: bool = False,
) -> dict:
    """Scores of `segmenter` on images with class targets (and instance ids for instance models)."""
    predictions = segment_all(segmenter, images, options, progress)
    result = score_segmentations(segmenter.metadata, predictions, targets, instance_labels)
    result["backend"] = segmenter.backend.name
    return result


def with_progress(items: list, enabled: bool, description: str) -> Iterable:
    """`items`, with a tqdm progress bar on stderr when `enabled`."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="image", file=sys.stderr)


def format_scores(accuracy: dict) -> str:
    """One line of the headline scores of a `score_segmentations` result."""
    line = (f"mean IoU {accuracy['mean_iou']:.4f}, foreground IoU {accuracy['foreground_iou']:.4f}, "
            f"pixel accuracy {accuracy['pixel_accuracy']:.4f}")
    if "instance" in accuracy:
        line += "; " + format_instance_scores(accuracy["instance"])
    return line


def format_instance_scores(instance: dict) -> str:
    """F1@0.5, DSB score, PQ and counts of an instance score dictionary."""
    return (f"instance F1@0.5 {instance['f1@0.5']:.4f}, DSB score {instance['dsb_score']:.4f}, "
            f"PQ {instance['panoptic_quality']:.4f} ({instance['true_count']} true, "
            f"{instance['predicted_count']} predicted objects)")


def format_table(result: dict) -> str:
    """A per-class table of a `score_segmentations` result, then the headline scores."""
    lines = [f"{'class':<16}{'IoU':>8}{'Dice':>8}{'support':>12}"]
    for name, row in result["per_class"].items():
        lines.append(f"{name:<16}{row['iou']:>8.4f}{row['dice']:>8.4f}{row['support']:>12d}")
    lines.append(f"{'mean':<16}{result['mean_iou']:>8.4f}{result['mean_dice']:>8.4f}")
    lines.append(f"{format_scores(result)}; images {result['images']}")
    return "\n".join(lines)
