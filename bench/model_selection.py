"""Compare candidate nuclei models on data meant for choosing between them, never on held-out data.

    python -m bench.model_selection assets/nuclei/nuclei.int8.tflite runs/a/nuclei.int8.tflite ...

Rows: the BBBC007 images of each model's recorded validation split (a training source), and
the held-out simulator settings of `bench.generalisation` drawn on development seeds (12345+),
which neither training (2027) nor the generalisation table (9000+) uses, among them the
settings that stress the separation of touching nuclei; and the share of touching pairs each
model splits. cells3d, the one real held-out source, is left out on purpose: a model chosen
on it would no longer be judged on a source it never saw. Every candidate goes through
`SegmentOptions.default_for`, as the edge runner does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.generalisation import bbbc007_validation, simulated_settings, trained_simulations
from unet.cli import run_cli
from unet.data.nuclei_sim import NucleiSpec, make_nuclei_dataset
from unet.runtime.errors import UserError
from unet.runtime.instance_errors import MISSED_KINDS, ErrorCounts, dataset_error_counts
from unet.runtime.instance_metrics import dataset_instance_scores, dataset_touching_pairs_split
from unet.runtime.segmenter import Segmenter, SegmentOptions

DEVELOPMENT_SEED = 12_345
DEVELOPMENT_IMAGES = 6


def development_sets(
    images_per_setting: int = DEVELOPMENT_IMAGES, trained: Sequence[NucleiSpec] = ()
) -> dict[str, tuple[list, list]]:
    """(images, instance labels) per held-out simulator setting, on development seeds; the rows
    name the ranges of the simulated data in `trained` (default: every simulator recipe)."""
    sets = {}
    for name, spec in simulated_settings(DEVELOPMENT_SEED, images_per_setting, trained).items():
        samples = make_nuclei_dataset(spec)
        sets[f"simulated: {name}"] = ([s.image for s in samples], [s.instance_labels for s in samples])
    return sets


def bbbc007_validation_pairs(segmenter: Segmenter) -> tuple[list, list]:
    chosen = bbbc007_validation(segmenter.metadata)
    if chosen is None:
        raise UserError(f"{segmenter.backend.path} records no validation split to choose on; "
                        "train it with --data so that the split is recorded")
    return chosen.images, chosen.instance_labels


def segment_default(segmenter: Segmenter, images: list) -> list[np.ndarray]:
    """Instance labels of each image through the edge runner's default path."""
    options = SegmentOptions.default_for(segmenter.metadata).to_kwargs()
    return [segmenter.segment(image, **options).segmentation.instance_labels for image in images]


def f1_at_half(segmenter: Segmenter, images: list, labels: list) -> float:
    return float(dataset_instance_scores(labels, segment_default(segmenter, images))["f1@0.5"])


TOUCHING_ROW = "touching pairs split, all simulated rows"


def missed_row(kind: str) -> str:
    return f"nuclei missed as {kind.replace('_', ' ')}, share of all simulated nuclei"


def compare(models: list[Path], images_per_setting: int = DEVELOPMENT_IMAGES) -> dict[str, dict[str, float]]:
    """F1@0.5 per row and model, each model's mean over the rows, the share of touching pairs
    of nuclei it splits over all simulated rows, and the shares of those nuclei it misses by
    kind (unet.runtime.instance_errors). The rows name the ranges of the simulated
    data any candidate trained on."""
    segmenters = {str(model): Segmenter.from_path(model) for model in models}
    for name, segmenter in segmenters.items():
        if segmenter.metadata.mode != "instance":
            raise UserError(f"{name} is a {segmenter.metadata.mode} model; model selection scores "
                            "nuclei instances, so it needs an instance model")
    rows = {"BBBC007 validation images": {name: f1_at_half(s, *bbbc007_validation_pairs(s))
                                          for name, s in segmenters.items()}}
    split = {name: [0, 0] for name in segmenters}
    errors = {name: ErrorCounts() for name in segmenters}
    trained = list(dict.fromkeys(spec for segmenter in segmenters.values()
                                 for spec in trained_simulations(segmenter.metadata)))
    for row, (images, labels) in development_sets(images_per_setting, trained).items():
        rows[row] = {}
        for name, segmenter in segmenters.items():
            predicted = segment_default(segmenter, images)
            rows[row][name] = float(dataset_instance_scores(labels, predicted)["f1@0.5"])
            done, pairs = dataset_touching_pairs_split(labels, predicted)
            split[name] = [split[name][0] + done, split[name][1] + pairs]
            errors[name] = errors[name] + dataset_error_counts(labels, predicted)
    rows["mean"] = {name: float(np.mean([row[name] for row in rows.values()])) for name in segmenters}
    rows[TOUCHING_ROW] = {name: done / max(1, pairs) for name, (done, pairs) in split.items()}
    for kind in MISSED_KINDS:
        rows[missed_row(kind)] = {name: getattr(counts, kind) / max(1, counts.labelled)
                                  for name, counts in errors.items()}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_selection",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="candidate models (.tflite or .keras)")
    parser.add_argument("--images", type=int, default=DEVELOPMENT_IMAGES, help="images per simulator setting")
    args = parser.parse_args(argv)
    rows = compare(args.models, args.images)
    print("| row | " + " | ".join(map(str, args.models)) + " |")
    print("|---|" + "---:|" * len(args.models))
    for row, scores in rows.items():
        print(f"| {row} | " + " | ".join(f"{scores[str(m)]:.3f}" for m in args.models) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
