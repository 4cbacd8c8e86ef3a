"""Tune instance post-processing on the training split (never the validation split).

Every (marker_min_distance, interior_threshold, keep_unseeded) combination is scored on the
training images; the one with the best F1@0.5 (ties: the DSB score) is written into the model's
metadata, so every backend, the edge runner and the app use it. With several training
folders, F1 is averaged over the folders, so 400 simulated images with 100 nuclei each do not
outvote 11 real ones. The model runs once per image; only the post-processing is repeated.
"""

from __future__ import annotations

import dataclasses
from itertools import product
from pathlib import Path

from unet.data.splits import recorded_split, split_folder_stem
from unet.runtime.errors import UserError
from unet.runtime.evaluation import format_instance_scores, score_segmentations
from unet.runtime.metadata import InstanceParams, load_metadata, metadata_path_for, save_metadata
from unet.runtime.preprocess import postprocess, preprocess
from unet.runtime.segmenter import Segmenter


def tune_instance_params(
    model: Path, distances: list[int], interior_thresholds: list[float], limit: int | None = None
) -> tuple[InstanceParams, list]:
    """The best post-processing parameters on the training split, and every candidate's scores."""
    segmenter = Segmenter.from_path(model)
    metadata = segmenter.metadata
    if metadata.mode != "instance":
        raise UserError(f"{model} is a {metadata.mode} model; only instance models are tuned")
    training = recorded_split(metadata, "train", limit)
    if training is None:
        raise UserError(f"{model} records no reproducible training split to tune on")
    stems = list(metadata.training["train_stems"])[: len(training.images)]
    folder_of = [split_folder_stem(stem)[0] for stem in stems]
    groups = {folder: [i for i, own in enumerate(folder_of) if own == folder]
              for folder in sorted(set(folder_of))}
    outputs = []
    for image in training.images:
        tensor, info = preprocess(image, metadata)
        outputs.append((segmenter.run_tensor(tensor), info))
    original = metadata.instance
    results = []
    for distance, threshold, keep_unseeded in product(distances, interior_thresholds, (True, False)):
        metadata.instance = dataclasses.replace(original, marker_min_distance=distance,
                                                interior_threshold=threshold, keep_unseeded=keep_unseeded)
        predictions = [postprocess(output, info, metadata) for output, info in outputs]
        per_folder = {}
        for folder, indices in groups.items():
            subset = training.subset(indices)
            scores = score_segmentations(metadata, [predictions[i] for i in indices], subset.targets,
                                         subset.instance_labels)
            per_folder[folder] = scores["instance"]
        f1 = sum(s["f1@0.5"] for s in per_folder.values()) / len(per_folder)
        dsb = sum(s["dsb_score"] for s in per_folder.values()) / len(per_folder)
        results.append((metadata.instance, f1, dsb))
        print(f"marker_min_distance {distance:>3}, interior_threshold {threshold:.2f}, "
              f"keep_unseeded {keep_unseeded!s:>5}: "
              f"mean F1@0.5 {f1:.4f}; " + "; ".join(f"{folder or 'all'}: {format_instance_scores(s)}"
                                                     for folder, s in per_folder.items()))
    best = max(results, key=lambda row: (round(row[1], 4), row[2]))[0]
    return best, results


def at_grid_edge(best: InstanceParams, distances: list[int], interior_thresholds: list[float]) -> list[str]:
    """Warnings for each chosen value that is the largest or smallest its grid tried: the best
    value may lie beyond it. A marker distance of 0 is a mode (one seed per seed region), not
    an edge."""
    warnings = []
    nonzero_distances = [d for d in distances if d > 0]
    for name, chosen, grid in (("marker_min_distance", best.marker_min_distance, nonzero_distances),
                               ("interior_threshold", best.interior_threshold, interior_thresholds)):
        if len(set(grid)) < 2 or chosen not in grid or min(grid) < chosen < max(grid):
            continue
        side, beyond = ("largest", "larger") if chosen == max(grid) else ("smallest", "smaller")
        warnings.append(f"the chosen {name} {chosen:g} is the {side} value tried; "
                        f"{beyond} values may score better")
    return warnings


def save_instance_params(model: Path, params: InstanceParams, command: str | None = None) -> Path:
    """Write the chosen parameters, and the command that chose them, into the model's metadata;
    returns the metadata path."""
    metadata = load_metadata(model)
    metadata.instance = params
    metadata.training["tuned_on"] = "train split: marker_min_distance, interior_threshold, keep_unseeded"
    if command is not None:
        metadata.training["tune_command"] = command
    return save_metadata(metadata, metadata_path_for(model))
