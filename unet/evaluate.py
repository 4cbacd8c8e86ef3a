"""Evaluate a model (.keras or .tflite) on a folder dataset: `python -m unet.evaluate MODEL --data DIR`.

Images are segmented at their original size through the shared runtime, exactly as a user
would run them, then scored against their masks. Prints a per-class table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet.atomic import atomic_write_text
from unet.cli import run_cli
from unet.metadata import ModelMetadata
from unet.metrics import confusion_matrix, scores_from_confusion
from unet.preprocess import Segmentation
from unet.runtime import Segmenter


def segment_all(
    segmenter: Segmenter, images: list[np.ndarray], tile: bool = False, progress: bool = False
) -> list[Segmentation]:
    """Segment every image; probabilities are dropped to keep memory small."""
    results = []
    for image in _progress(images, progress, f"segmenting ({segmenter.backend.name})"):
        segmentation = segmenter.segment(image, tile=tile).segmentation
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
        from unet.instance_metrics import dataset_instance_scores

        result["instance"] = dataset_instance_scores(
            instance_labels, [p.instance_labels for p in predictions]
        )
    return result


def compare_segmentations(
    metadata: ModelMetadata, reference: list[Segmentation], other: list[Segmentation]
) -> dict:
    """How far `other` agrees with `reference` (e.g. int8 with Keras float), image by image."""
    confusion = np.zeros((metadata.num_classes,) * 2, dtype=np.int64)
    for first, second in zip(reference, other, strict=True):
        confusion += confusion_matrix(first.class_mask, second.class_mask, metadata.num_classes)
    scores = scores_from_confusion(confusion)
    result = {"pixel_agreement": scores.pixel_accuracy, "mean_iou": scores.mean_iou}
    if metadata.mode == "instance":
        from unet.instance_metrics import dataset_instance_scores

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
    tile: bool = False,
    progress: bool = False,
) -> dict:
    """Scores of `segmenter` on images with class targets (and instance ids for instance models)."""
    predictions = segment_all(segmenter, images, tile, progress)
    result = score_segmentations(segmenter.metadata, predictions, targets, instance_labels)
    result["backend"] = segmenter.backend.name
    return result


def _progress(items: list, enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="image", file=sys.stderr)


def format_table(result: dict) -> str:
    lines = [f"{'class':<16}{'IoU':>8}{'Dice':>8}{'support':>12}"]
    for name, row in result["per_class"].items():
        lines.append(f"{name:<16}{row['iou']:>8.4f}{row['dice']:>8.4f}{row['support']:>12d}")
    lines.append(f"{'mean':<16}{result['mean_iou']:>8.4f}{result['mean_dice']:>8.4f}")
    lines.append(f"pixel accuracy {result['pixel_accuracy']:.4f}   "
                 f"foreground IoU {result['foreground_iou']:.4f}   images {result['images']}")
    if "instance" in result:
        instance = result["instance"]
        lines.append(
            f"instances: F1@0.5 {instance['f1@0.5']:.4f}  DSB score {instance['dsb_score']:.4f}  "
            f"PQ {instance['panoptic_quality']:.4f}  true {instance['true_count']}  "
            f"predicted {instance['predicted_count']}"
        )
    return "\n".join(lines)


@dataclass
class LabelledSet:
    """Raw images, their class targets and, for instance models, their instance ids."""

    images: list[np.ndarray]
    targets: list[np.ndarray]
    instance_labels: list[np.ndarray] | None


def labelled_folder(metadata: ModelMetadata, data: Path, stems: list[str] | None = None) -> LabelledSet:
    """A folder dataset as targets for this model (instance ids become 3-class targets)."""
    from unet.folder import load_folder

    instance_mode = metadata.mode == "instance"
    samples = load_folder(data, None if instance_mode else metadata.num_classes, stems)
    return _labelled(metadata, [s.image for s in samples], [s.labels for s in samples])


def recorded_split(metadata: ModelMetadata, split: str, limit: int | None = None) -> LabelledSet | None:
    """The train or validation split recorded in the metadata at training time, if reproducible.

    Synthetic data is regenerated from its recorded seed; folder data is read again from the
    recorded folder. Returns None when neither is available (e.g. a foreign model).
    """
    training = metadata.training
    stems = training.get(f"{split}_stems")
    if stems is None:
        return None
    stems = list(stems)[:limit] if limit else list(stems)
    if "synthetic" in training:
        from unet.synthetic import make_dataset

        spec = training["synthetic"]
        samples = make_dataset(
            spec["count"], seed=spec["seed"], size=tuple(spec["size"]), channels=spec["channels"],
            shapes=tuple(spec["shapes"]), dark_fraction=spec.get("dark_fraction", 0.2),
            touching=spec.get("touching", 0.5), radius=tuple(spec.get("radius", (0.06, 0.14))),
            objects=tuple(spec.get("objects", (3, 9))),
        )
        chosen = [samples[int(stem)] for stem in stems]
        labels = [s.instance_labels if metadata.mode == "instance" else s.class_mask for s in chosen]
        return _labelled(metadata, [s.image for s in chosen], labels)
    data = recorded_data_folder(training)
    if data is not None:
        return labelled_folder(metadata, data, stems)
    return None


def recorded_data_folder(training: dict) -> Path | None:
    """The training data folder: as recorded, or under ./data, or rebuilt from its recipe."""
    recorded = training.get("data")
    if not recorded:
        return None
    for candidate in (Path(recorded), Path("data") / Path(recorded).name):
        if candidate.is_dir():
            return candidate
    from unet.datasets import RECIPES, fetch

    recipe = training.get("dataset") or Path(recorded).name
    if recipe in RECIPES:
        return fetch(recipe, Path("data") / recipe)
    return None


def _labelled(metadata: ModelMetadata, images: list[np.ndarray], labels: list[np.ndarray]) -> LabelledSet:
    if metadata.mode == "instance":
        from unet.instances import instance_targets

        width = metadata.instance.boundary_width
        return LabelledSet(images, [instance_targets(label, width) for label in labels], labels)
    return LabelledSet(images, [label.astype(np.int64) for label in labels], None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help=".keras or .tflite file with its sidecar JSON")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with images/ and masks/ (default: the validation split "
                        "recorded at training)")
    parser.add_argument("--tile", action="store_true", help="sliding-window inference at full size")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: beside the model)")
    args = parser.parse_args(argv)
    segmenter = Segmenter.from_path(args.model, args.threads)
    if args.data is not None:
        labelled = labelled_folder(segmenter.metadata, args.data)
    else:
        labelled = recorded_split(segmenter.metadata, "validation")
        if labelled is None:
            raise ValueError(f"{args.model} records no reproducible validation split; give --data DIR")
    result = evaluate_samples(
        segmenter, labelled.images, labelled.targets, labelled.instance_labels, args.tile, progress=True
    )
    result["model"] = str(args.model)
    result["data"] = str(args.data) if args.data else "recorded validation split"
    print(format_table(result))
    out = args.out or args.model.with_name(args.model.name + ".evaluation.json")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
