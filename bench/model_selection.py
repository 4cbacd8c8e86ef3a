"""Compare candidate nuclei models on data meant for choosing between them, never on held-out data.

    python -m bench.model_selection assets/nuclei/nuclei.int8.tflite runs/a/nuclei.int8.tflite ...

Rows: the BBBC007 images of each model's recorded validation split (a training source); the
time points of a scratch assay (`python -m unet.datasets fetch scratch-assay-nuclei`), a real
source no model trains on, with another lab's stain, magnification and texture, which the
simulated rows do not show; and the held-out simulator settings of `bench.generalisation`
drawn on development seeds (12345+), which neither training (2027) nor the generalisation
table (9000+) uses, among them the settings that stress the separation of touching nuclei;
and the share of touching pairs each model splits; then each candidate's difference from the
first, with a paired bootstrap interval over the images. Twenty images a setting: with six,
the crowded row read 0.883 for the shipped model, and 0.772 with twenty
(bench/results/merges.md).
cells3d, the one real held-out source, is left out on purpose: a model chosen
on it would no longer be judged on a source it never saw. Every candidate goes through
`SegmentOptions.default_for`, as the edge runner does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.generalisation import (
    BBBC007_ROW,
    REPO,
    bbbc007_validation,
    simulated_settings,
    trained_simulations,
)
from unet.cli import run_cli
from unet.data.folder import load_folder
from unet.data.nuclei_sim import NucleiSpec, make_nuclei_dataset
from unet.data.recipes import fetch
from unet.runtime.errors import UserError
from unet.runtime.instance_errors import MISSED_KINDS, ErrorCounts, dataset_error_counts
from unet.runtime.instance_metrics import (
    dataset_touching_pairs_split,
    match_instances,
)
from unet.runtime.segmenter import Segmenter, SegmentOptions

DEVELOPMENT_SEED = 12_345
DEVELOPMENT_IMAGES = 20
BOOTSTRAP_RESAMPLES = 2000


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


def scratch_assay_pairs() -> tuple[list, list]:
    """(images, instance labels) of the scratch assay's time points, fetched on first use."""
    samples = load_folder(fetch("scratch-assay-nuclei", REPO / "data" / "scratch-assay-nuclei"))
    return [s.image for s in samples], [s.labels for s in samples]


def segment_default(segmenter: Segmenter, images: list) -> list[np.ndarray]:
    """Instance labels of each image through the edge runner's default path."""
    options = SegmentOptions.default_for(segmenter.metadata).to_kwargs()
    return [segmenter.segment(image, **options).segmentation.instance_labels for image in images]


def f1_at_half(segmenter: Segmenter, images: list, labels: list) -> float:
    return float(f1_from_counts(counts_at_half(labels, segment_default(segmenter, images))))


def counts_at_half(labels: list, predicted: list) -> np.ndarray:
    """(N, 3) each image's true positives, false positives and false negatives at IoU 0.5."""
    counts = [match_instances(t, p, thresholds=(0.5,)) for t, p in zip(labels, predicted, strict=True)]
    return np.array([[c.true_positive[0.5], c.false_positive[0.5], c.false_negative[0.5]] for c in counts])


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """F1 of counts summed over the second-to-last axis: (..., N, 3) -> (...); the F1 of
    `unet.runtime.instance_metrics.scores_from_counts` (1 where nothing was labelled or found),
    vectorised for resampling."""
    tp, fp, fn = np.moveaxis(counts.sum(axis=-2), -1, 0)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.ones(denominator.shape), where=denominator > 0)


def paired_bootstrap(rows: list[tuple[np.ndarray, np.ndarray]], confidence: float = 0.95,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """The mean over rows of a candidate's F1@0.5 minus a reference's, and its percentile interval.

    rows: per row, (reference, candidate) counts from `counts_at_half` on the same images. Each
    resample draws every row's images with replacement, the same draw for both models. Rows
    are strata, which scipy.stats.bootstrap does not offer.
    """
    rng = np.random.default_rng(seed)
    observed, resampled = [], []
    for reference, candidate in rows:
        observed.append(f1_from_counts(candidate) - f1_from_counts(reference))
        draws = rng.integers(0, len(reference), size=(resamples, len(reference)))
        resampled.append(f1_from_counts(candidate[draws]) - f1_from_counts(reference[draws]))
    low, high = np.quantile(np.mean(resampled, axis=0), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(np.mean(observed)), float(low), float(high)


SCRATCH_ASSAY_ROW = "scratch assay time points (real, never trained on)"
TOUCHING_ROW = "touching pairs split, all simulated rows"
DIFFERENCE_MEAN_ROW = "mean of the rows above"


def missed_row(kind: str) -> str:
    return f"nuclei missed as {kind.replace('_', ' ')}, share of all simulated nuclei"


@dataclass(frozen=True)
class Comparison:
    """scores: row -> model -> value; differences: row -> candidate -> (F1@0.5 minus the first
    model's, low, high), over the rows whose images every model saw."""

    scores: dict[str, dict[str, float]]
    differences: dict[str, dict[str, tuple[float, float, float]]]


def compare(models: list[Path], images_per_setting: int = DEVELOPMENT_IMAGES) -> Comparison:
    """F1@0.5 per row and model, each model's mean over the rows, the share of touching pairs
    of nuclei it splits over all simulated rows, and the shares of those nuclei it misses by
    kind (unet.runtime.instance_errors). The rows name the ranges of the simulated
    data any candidate trained on."""
    segmenters = {str(model): Segmenter.from_path(model) for model in models}
    for name, segmenter in segmenters.items():
        if segmenter.metadata.mode != "instance":
            raise UserError(f"{name} is a {segmenter.metadata.mode} model; model selection scores "
                            "nuclei instances, so it needs an instance model")
    counts: dict[str, dict[str, np.ndarray]] = {BBBC007_ROW: {}}
    for name, segmenter in segmenters.items():
        images, labels = bbbc007_validation_pairs(segmenter)
        counts[BBBC007_ROW][name] = counts_at_half(labels, segment_default(segmenter, images))
    images, labels = scratch_assay_pairs()
    counts[SCRATCH_ASSAY_ROW] = {name: counts_at_half(labels, segment_default(segmenter, images))
                                 for name, segmenter in segmenters.items()}
    split = {name: [0, 0] for name in segmenters}
    errors = {name: ErrorCounts() for name in segmenters}
    trained = list(dict.fromkeys(spec for segmenter in segmenters.values()
                                 for spec in trained_simulations(segmenter.metadata)))
    for row, (images, labels) in development_sets(images_per_setting, trained).items():
        counts[row] = {}
        for name, segmenter in segmenters.items():
            predicted = segment_default(segmenter, images)
            counts[row][name] = counts_at_half(labels, predicted)
            done, pairs = dataset_touching_pairs_split(labels, predicted)
            split[name] = [split[name][0] + done, split[name][1] + pairs]
            errors[name] = errors[name] + dataset_error_counts(labels, predicted)
    rows = {row: {name: float(f1_from_counts(model_counts)) for name, model_counts in by_model.items()}
            for row, by_model in counts.items()}
    rows["mean"] = {name: float(np.mean([row[name] for row in rows.values()])) for name in segmenters}
    rows[TOUCHING_ROW] = {name: done / max(1, pairs) for name, (done, pairs) in split.items()}
    for kind in MISSED_KINDS:
        rows[missed_row(kind)] = {name: getattr(missed, kind) / max(1, missed.labelled)
                                  for name, missed in errors.items()}
    if len({tuple(s.metadata.training.get("validation_stems", ())) for s in segmenters.values()}) > 1:
        del counts[BBBC007_ROW]  # other images for each model: nothing to pair
    return Comparison(rows, differences(counts, list(segmenters)))


def differences(counts: dict[str, dict[str, np.ndarray]], names: list[str]) -> dict[str, dict[str, tuple]]:
    """Per row of `counts`, and their mean: each candidate's F1@0.5 minus the first one's, with
    its paired bootstrap 95% interval."""
    reference, candidates = names[0], names[1:]
    table = {row: {name: paired_bootstrap([(by_model[reference], by_model[name])]) for name in candidates}
             for row, by_model in counts.items()}
    table[DIFFERENCE_MEAN_ROW] = {name: paired_bootstrap([(m[reference], m[name]) for m in counts.values()])
                                  for name in candidates}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_selection",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="candidate models (.tflite or .keras)")
    parser.add_argument("--images", type=int, default=DEVELOPMENT_IMAGES, help="images per simulator setting")
    args = parser.parse_args(argv)
    comparison = compare(args.models, args.images)
    print("| row | " + " | ".join(map(str, args.models)) + " |")
    print("|---|" + "---:|" * len(args.models))
    for row, scores in comparison.scores.items():
        print(f"| {row} | " + " | ".join(f"{scores[str(m)]:.3f}" for m in args.models) + " |")
    candidates = args.models[1:]
    if candidates:
        print(f"\nF1@0.5 minus {args.models[0]}'s, with a paired bootstrap 95% interval over each row's "
              f"images ({BOOTSTRAP_RESAMPLES} resamples):\n")
        print("| row | " + " | ".join(map(str, candidates)) + " |")
        print("|---|" + "---:|" * len(candidates))
        for row, by_model in comparison.differences.items():
            print(f"| {row} | " + " | ".join(
                "{:+.3f} ({:+.3f} to {:+.3f})".format(*by_model[str(m)]) for m in candidates) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
