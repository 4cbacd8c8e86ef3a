"""Evaluate a model (.keras or .tflite) on a folder dataset: `python -m unet.evaluate MODEL --data DIR`.

Images are segmented at their original size through the shared runtime, exactly as a user
would run them, then scored against their masks. Prints a per-class table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from unet.atomic import atomic_write_text
from unet.cli import run_cli
from unet.metrics import confusion_matrix, scores_from_confusion
from unet.runtime import Segmenter


def evaluate_samples(
    segmenter: Segmenter,
    images: list[np.ndarray],
    targets: list[np.ndarray],
    instance_labels: list[np.ndarray] | None = None,
    tile: bool = False,
    progress: bool = False,
) -> dict:
    """Scores of `segmenter` on images with class targets (and instance ids for instance models)."""
    metadata = segmenter.metadata
    num_classes = metadata.num_classes
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    foreground_confusion = np.zeros((2, 2), dtype=np.int64)
    predicted_instances, true_instances = [], []
    for index, (image, target) in enumerate(_progress(list(zip(images, targets, strict=True)), progress)):
        segmentation = segmenter.segment(image, tile=tile).segmentation
        confusion += confusion_matrix(target, segmentation.class_mask, num_classes)
        foreground_confusion += confusion_matrix(target > 0, segmentation.class_mask > 0, 2)
        if instance_labels is not None and segmentation.instance_labels is not None:
            predicted_instances.append(segmentation.instance_labels)
            true_instances.append(instance_labels[index])
    scores = scores_from_confusion(confusion)
    result = scores.to_dict(metadata.class_names)
    result["foreground_iou"] = scores_from_confusion(foreground_confusion).per_class_iou[1]
    result["images"] = len(images)
    result["backend"] = segmenter.backend.name
    if predicted_instances:
        from unet.instance_metrics import dataset_instance_scores

        result["instance"] = dataset_instance_scores(true_instances, predicted_instances)
    return result


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="evaluating", unit="image", file=sys.stderr)


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


def load_evaluation_set(
    segmenter: Segmenter, data: Path, split: str
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]:
    """Images, class targets and (instance models) instance ids from a folder dataset."""
    from unet.folder import load_folder

    metadata = segmenter.metadata
    stems = None
    if split == "validation":
        stems = metadata.training.get("validation_stems")
        recorded = metadata.training.get("data")
        if stems is None or recorded is None or Path(recorded).resolve() != data.resolve():
            stems = None
    instance_mode = metadata.mode == "instance"
    samples = load_folder(data, None if instance_mode else metadata.num_classes, stems)
    images = [s.image for s in samples]
    if instance_mode:
        from unet.instances import instance_targets

        labels = [s.labels for s in samples]
        width = metadata.instance.boundary_width
        return images, [instance_targets(label, width) for label in labels], labels
    return images, [s.labels for s in samples], None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help=".keras or .tflite file with its sidecar JSON")
    parser.add_argument("--data", type=Path, required=True, help="folder with images/ and masks/")
    parser.add_argument("--split", choices=("validation", "all"), default="validation",
                        help="validation: the split recorded at training, if --data is that folder")
    parser.add_argument("--tile", action="store_true", help="sliding-window inference at full size")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: beside the model)")
    args = parser.parse_args(argv)
    segmenter = Segmenter.from_path(args.model, args.threads)
    images, targets, instances = load_evaluation_set(segmenter, args.data, args.split)
    result = evaluate_samples(segmenter, images, targets, instances, args.tile, progress=True)
    result["model"] = str(args.model)
    result["data"] = str(args.data)
    print(format_table(result))
    out = args.out or args.model.with_name(args.model.name + ".evaluation.json")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
