"""What an instance model's post-processing makes of a perfect model: the ceiling of each row.

    python -m bench.ceiling [--model assets/nuclei/nuclei.json] [--images 20]

Each development row of `bench.model_selection` (simulated settings on development seeds) is
scored with the model replaced by the truth: the true instance labels, brought to the scale
the auto-scale would pick had its first pass found them, become the model's own training
targets (`instance_targets` with the metadata's boundary width and core fraction), one-hot, and
go through the runtime's post-processing at that scale (`segment_probabilities`, as every
backend's output does), labels resized back. F1@0.5 far below
1 in a row says the classes and their post-processing cannot separate its nuclei, whatever
the model; near 1, the gap to a model's score is the model's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.generalisation import trained_simulations
from bench.model_selection import DEVELOPMENT_IMAGES, counts_at_half, development_sets, f1_from_counts
from unet.cli import run_cli
from unet.runtime.errors import UserError
from unet.runtime.imageio import resize_nearest
from unet.runtime.instances import instance_targets
from unet.runtime.metadata import ModelMetadata, load_metadata
from unet.runtime.preprocess import segment_probabilities
from unet.runtime.scale import median_diameter, needs_second_pass, scale_for_measured_diameter


def ideal_instances(instance_labels: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """True instance ids (H, W) -> the ids (H, W) the runtime returns from a perfect model."""
    if metadata.mode != "instance" or metadata.instance is None:
        raise UserError(f"model {metadata.name!r} is a {metadata.mode} model; "
                        "its ceiling needs an instance model")
    params = metadata.instance
    measured = median_diameter(instance_labels)
    factor = 1.0
    if measured is not None and needs_second_pass(metadata, measured):
        factor = scale_for_measured_diameter(metadata, measured)
    height, width = instance_labels.shape
    scaled_size = (max(1, round(height * factor)), max(1, round(width * factor)))
    at_scale = resize_nearest(instance_labels, scaled_size)
    targets = instance_targets(at_scale, params.boundary_width, params.core_fraction)
    probabilities = np.eye(len(metadata.class_names), dtype=np.float32)[targets]
    return segment_probabilities(probabilities, metadata, size=(height, width)).instance_labels


def ceilings(metadata: ModelMetadata, images_per_setting: int = DEVELOPMENT_IMAGES) -> dict[str, float]:
    """Development row -> F1@0.5 of `ideal_instances` against the truth."""
    rows = development_sets(images_per_setting, trained_simulations(metadata))
    return {row: float(f1_from_counts(counts_at_half(labels, [ideal_instances(t, metadata) for t in labels])))
            for row, (_, labels) in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("assets/nuclei/nuclei.json"),
                        help="an instance model or its metadata JSON")
    parser.add_argument("--images", type=int, default=DEVELOPMENT_IMAGES, help="images per simulator setting")
    args = parser.parse_args(argv)
    print(f"| row | ceiling F1@0.5 of {args.model} |\n|---|---:|")
    for row, f1 in ceilings(load_metadata(args.model), args.images).items():
        print(f"| {row} | {f1:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
