"""The generalisation bench's check of label completeness, on hand-drawn label maps, and the
model-selection bench's development data."""

import numpy as np
import pytest

from bench.generalisation import off_label_share
from unet.data.nuclei_sim import NucleiSpec, make_nuclei_dataset


def test_objects_lying_outside_every_label_are_counted_as_a_share_of_all_found():
    labels = np.zeros((10, 10), np.int32)
    labels[0:4, 0:4] = 1
    found = np.zeros((10, 10), np.int32)
    found[0:4, 0:4] = 1  # on the label
    found[6:9, 6:9] = 2  # on no label
    found[0:4, 4:8] = 3  # beside the label, none of its pixels on it
    found[4, 0:4] = 4    # next to the label, not on it
    assert off_label_share([labels], [found]) == 3 / 4


def test_an_object_with_a_tenth_of_its_pixels_on_a_label_counts_as_on_it():
    labels = np.zeros((10, 10), np.int32)
    labels[0, 0] = 1
    found = np.zeros((10, 10), np.int32)
    found[0, 0:10] = 1  # 1 of 10 pixels on the label: exactly the 10% that keeps it on
    assert off_label_share([labels], [found]) == 0.0
    assert off_label_share([labels], [np.zeros_like(found)]) == 0.0


def test_model_selection_draws_its_simulated_rows_on_seeds_neither_training_nor_the_table_uses():
    from bench.generalisation import HELD_OUT_SEED, simulated_settings
    from bench.model_selection import DEVELOPMENT_SEED, development_sets
    from unet.data.recipes import simulated_nuclei_specs

    held_out = {spec.seed for spec in simulated_settings().values()}
    development = {DEVELOPMENT_SEED + index for index in range(len(held_out))}
    assert not development & (held_out | {spec.seed for spec in simulated_nuclei_specs().values()})
    assert min(held_out) == HELD_OUT_SEED
    sets = development_sets(images_per_setting=1)
    assert list(sets) == [f"simulated: {name}" for name in simulated_settings()]
    images, labels = sets["simulated: training settings"]
    held_out_image = make_nuclei_dataset(simulated_settings()["training settings"])[0].image
    assert len(images) == len(labels) == 1 and not np.array_equal(images[0], held_out_image)


def test_model_selection_scores_a_candidate_through_the_edge_runners_default_path():
    from pathlib import Path

    from bench.model_selection import f1_at_half
    from unet.runtime.segmenter import Segmenter

    nuclei = Path(__file__).resolve().parents[1] / "assets" / "nuclei" / "nuclei.int8.tflite"
    segmenter = Segmenter.from_path(nuclei)
    sample = make_nuclei_dataset(NucleiSpec(count=1, seed=424_242, diameter=(14.0, 14.0)))[0]
    assert f1_at_half(segmenter, [sample.image], [sample.instance_labels]) >= 0.8
    assert f1_at_half(segmenter, [sample.image], [np.zeros_like(sample.instance_labels)]) == 0.0


def test_model_selection_bootstraps_a_candidates_difference_over_the_same_images():
    from bench.model_selection import f1_from_counts, paired_bootstrap

    # true positives, false positives, false negatives of each image
    reference = np.array([[8, 2, 2], [5, 0, 5], [9, 1, 0], [4, 4, 4], [7, 1, 2], [6, 3, 1]])
    assert f1_from_counts(reference[:1]) == pytest.approx(0.8)
    assert f1_from_counts(np.zeros((1, 3))) == 1.0  # nothing labelled, nothing found
    assert paired_bootstrap([(reference, reference)]) == (0.0, 0.0, 0.0)
    better = reference + np.array([[1, -1, -1]] * 6)  # one more nucleus found on every image
    difference, low, high = paired_bootstrap([(reference, better)])
    assert difference == pytest.approx(float(f1_from_counts(better) - f1_from_counts(reference)))
    assert 0 < low <= difference <= high
    # Mixed news (better on one image, worse on another) straddles zero.
    mixed = reference + np.array([[2, -2, -2], [-2, 2, 2], [0, 0, 0], [0, 0, 0], [1, -1, -1], [-1, 1, 1]])
    _, low, high = paired_bootstrap([(reference, mixed)])
    assert low < 0 < high
    # Two rows: the mean of their differences, each row resampled within itself.
    difference, low, high = paired_bootstrap([(reference, better), (reference, reference)])
    assert difference == pytest.approx(float(f1_from_counts(better) - f1_from_counts(reference)) / 2)
    assert 0 < low <= high


def test_model_selection_refuses_a_semantic_model_in_one_line():
    import subprocess
    import sys
    from pathlib import Path

    shapes = Path(__file__).resolve().parents[1] / "assets" / "shapes" / "shapes.int8.tflite"
    completed = subprocess.run([sys.executable, "-m", "bench.model_selection", str(shapes)],
                               capture_output=True, text=True)
    assert completed.returncode != 0
    assert "is a semantic model" in completed.stderr and "Traceback" not in completed.stderr


def test_held_out_rows_name_the_ranges_of_the_simulated_data_the_model_trained_on():
    from types import SimpleNamespace

    from bench.generalisation import simulated_settings, trained_simulations
    from unet.data.recipes import NUCLEI_SIM, NUCLEI_SIM_CROWDED

    only_first = SimpleNamespace(training={"dataset": ["bbbc007", "nuclei-sim"]})
    both = SimpleNamespace(training={"dataset": ["bbbc007", "nuclei-sim", "nuclei-sim-crowded"]})
    assert trained_simulations(only_first) == [NUCLEI_SIM]
    assert trained_simulations(both) == [NUCLEI_SIM, NUCLEI_SIM_CROWDED]
    names = list(simulated_settings(trained=trained_simulations(only_first)))
    assert "crowded, coverage 0.55-0.7, clustering 0.8 (trained 0.1-0.45, 0.5)" in names
    names = list(simulated_settings(trained=trained_simulations(both)))
    assert "crowded, coverage 0.55-0.7, clustering 0.8 (trained 0.1-0.55, 0.5-0.7)" in names
    assert "mixed sizes, jitter 0.5 (trained 0.2-0.35)" in names
    # Every held-out setting still lies beyond what the crowded recipe trains on.
    assert NUCLEI_SIM_CROWDED.coverage[1] <= 0.55 and NUCLEI_SIM_CROWDED.cluster < 0.8
    assert NUCLEI_SIM_CROWDED.size_jitter < 0.5 and NUCLEI_SIM_CROWDED.aspect[1] < 2.5


def _core_model(object_diameter: float, min_size: int = 4):
    from unet.runtime.metadata import InstanceParams, ModelMetadata

    return ModelMetadata(input_size=(64, 64), channels=1, mode="instance",
                         class_names=["background", "interior", "boundary", "core"],
                         instance=InstanceParams(min_size=min_size, core_fraction=0.35),
                         object_diameter=object_diameter)


@pytest.mark.parametrize("side", [12, 40])
def test_the_ceiling_separates_two_touching_squares_at_the_scale_the_auto_scale_picks(side):
    from bench.ceiling import ideal_instances
    from unet.runtime.instance_metrics import match_instances

    labels = np.zeros((2 * side + 8, 2 * side + 8), np.int32)
    labels[4:4 + side, 4:4 + side] = 1
    labels[4:4 + side, 4 + side:4 + 2 * side] = 2  # touching the first along a whole side
    found = ideal_instances(labels, _core_model(object_diameter=12.0))
    assert found.max() == 2
    assert match_instances(labels, found, thresholds=(0.9,)).true_positive[0.9] == 2


def test_the_ceiling_keeps_the_post_processing_limits_objects_under_the_minimum_size_are_lost():
    from bench.ceiling import ideal_instances

    labels = np.zeros((20, 20), np.int32)
    labels[4:7, 4:7] = 1  # 9 pixels, under min_size 12
    labels[10:16, 10:16] = 2
    found = ideal_instances(labels, _core_model(object_diameter=5.0, min_size=12))
    assert found.max() == 1
    assert np.bincount(labels[found == 1]).argmax() == 2


def test_the_ceiling_refuses_a_semantic_model():
    from bench.ceiling import ideal_instances
    from unet.runtime.errors import UserError
    from unet.runtime.metadata import ModelMetadata

    with pytest.raises(UserError, match="semantic model"):
        ideal_instances(np.ones((8, 8), np.int32), ModelMetadata(input_size=(8, 8), channels=1,
                                                                 class_names=["background", "object"]))


def test_held_out_change_pairs_both_models_on_the_same_images_of_each_row():
    from pathlib import Path
    from types import SimpleNamespace

    from bench.generalisation import Source
    from bench.heldout_change import markdown, row_changes
    from unet.runtime.metadata import load_metadata

    labels = [np.zeros((8, 8), np.int32), np.zeros((8, 8), np.int32)]
    labels[0][1:4, 1:4] = 1
    labels[1][1:4, 1:4], labels[1][5:7, 5:7] = 1, 2
    images = [np.full((8, 8), 10 * i, np.uint8) for i in range(2)]
    source = Source("two images", "hand-drawn", "held-out", images, labels)
    nuclei = load_metadata(Path(__file__).resolve().parents[1] / "assets" / "nuclei" / "nuclei.json")

    def model(answer):
        def segment(image, **options):
            assert options["auto_scale"]  # the default path
            return SimpleNamespace(segmentation=SimpleNamespace(instance_labels=answer(image)))
        return SimpleNamespace(metadata=nuclei, segment=segment)

    perfect = model(lambda image: labels[int(image[0, 0]) // 10])
    blind = model(lambda image: np.zeros_like(labels[0]))
    [row] = row_changes([source], perfect, blind)
    assert (row["before"], row["after"], row["change"], row["interval"]) == (1.0, 0.0, -1.0, (-1.0, -1.0))
    assert (row["images_better"], row["images_worse"], row["images"]) == (0, 2, 2)
    [same] = row_changes([source], perfect, perfect)
    assert (same["change"], same["interval"], same["images_worse"]) == (0.0, (0.0, 0.0), 0)
    assert "| two images | 2 | 1.000 | 0.000 | -1.000 (-1.000 to -1.000) | 0 / 2 |" in markdown([row])
