"""Tune instance post-processing on the training split (never the validation split).

Each `marker_min_distance` candidate is scored on the training images; the one with the best
F1@0.5 (ties: the DSB score) is written into the model's metadata, so every backend, the
edge runner and the app use it.
"""

from __future__ import annotations

from pathlib import Path

from unet.data.splits import recorded_split
from unet.runtime.errors import UserError
from unet.runtime.evaluation import format_instance_scores, score_segmentations
from unet.runtime.metadata import load_metadata, metadata_path_for, save_metadata
from unet.runtime.preprocess import preprocess, segment_probabilities
from unet.runtime.segmenter import Segmenter


def tune_marker_distance(model: Path, candidates: list[int], limit: int | None = None) -> tuple[int, list]:
    """The best marker_min_distance on the training split, and every candidate's scores."""
    segmenter = Segmenter.from_path(model)
    metadata = segmenter.metadata
    if metadata.mode != "instance":
        raise UserError(f"{model} is a {metadata.mode} model; only instance models are tuned")
    training = recorded_split(metadata, "train", limit)
    if training is None:
        raise UserError(f"{model} records no reproducible training split to tune on")
    outputs = []
    for image in training.images:
        tensor, info = preprocess(image, metadata)
        outputs.append((segmenter.run_tensor(tensor)[0], info.original_size))
    results = []
    for candidate in candidates:
        metadata.instance.marker_min_distance = candidate
        predictions = [segment_probabilities(output, metadata, size=size) for output, size in outputs]
        scores = score_segmentations(metadata, predictions, training.targets, training.instance_labels)
        instance = scores["instance"]
        results.append((candidate, instance["f1@0.5"], instance["dsb_score"]))
        print(f"marker_min_distance {candidate:>3}: {format_instance_scores(instance)}")
    best = max(results, key=lambda row: (round(row[1], 4), row[2]))[0]
    return best, results


def save_marker_distance(model: Path, distance: int) -> Path:
    """Write the chosen distance into the model's metadata; returns the metadata path."""
    metadata = load_metadata(model)
    metadata.instance.marker_min_distance = distance
    metadata.training["tuned_on"] = "train split: marker_min_distance"
    return save_metadata(metadata, metadata_path_for(model))
