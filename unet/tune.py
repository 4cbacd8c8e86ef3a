"""Tune instance post-processing on the training split: `python -m unet.tune MODEL.keras`.

Tries each `--marker-min-distance` candidate on the training images (never the validation
split), keeps the one with the best F1@0.5 (ties: the DSB score), and writes it into the
model's metadata, so every backend, the edge runner and the app use it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet.cli import run_cli
from unet.evaluate import recorded_split, score_segmentations
from unet.metadata import metadata_path_for, save_metadata
from unet.runtime import Segmenter


def tune_marker_distance(model: Path, candidates: list[int], limit: int | None = None) -> tuple[int, list]:
    """The best marker_min_distance on the training split, and every candidate's scores."""
    segmenter = Segmenter.from_path(model)
    metadata = segmenter.metadata
    if metadata.mode != "instance":
        raise ValueError(f"{model} is a {metadata.mode} model; only instance models are tuned")
    training = recorded_split(metadata, "train", limit)
    if training is None:
        raise ValueError(f"{model} records no reproducible training split to tune on")
    probabilities = [segmenter.segment(image).segmentation.probabilities for image in training.images]
    from unet.preprocess import segment_probabilities

    results = []
    for candidate in candidates:
        metadata.instance.marker_min_distance = candidate
        predictions = [segment_probabilities(p, metadata) for p in probabilities]
        scores = score_segmentations(metadata, predictions, training.targets, training.instance_labels)
        instance = scores["instance"]
        results.append((candidate, instance["f1@0.5"], instance["dsb_score"]))
        print(f"marker_min_distance {candidate:>3}: F1@0.5 {instance['f1@0.5']:.4f}  "
              f"DSB {instance['dsb_score']:.4f}  ({instance['predicted_count']} of {instance['true_count']})")
    best = max(results, key=lambda row: (round(row[1], 4), row[2]))[0]
    return best, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.tune", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--candidates", default="0,4,6,8,10", help="comma-separated distances in pixels")
    parser.add_argument("--limit", type=int, default=None, help="at most this many training images")
    args = parser.parse_args(argv)
    candidates = [int(v) for v in args.candidates.split(",")]
    best, _ = tune_marker_distance(args.model, candidates, args.limit)
    from unet.metadata import load_metadata

    metadata = load_metadata(args.model)
    metadata.instance.marker_min_distance = best
    metadata.training["tuned_on"] = "train split: marker_min_distance"
    path = save_metadata(metadata, metadata_path_for(args.model))
    print(f"chose marker_min_distance {best}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
