"""Instance targets, watershed separation and instance metrics on hand-built label images."""

import numpy as np
import pytest

from unet.runtime.instance_metrics import dataset_instance_scores, instance_scores, iou_matrix
from unet.runtime.instances import (
    BACKGROUND,
    BOUNDARY,
    CORE,
    INTERIOR,
    connected_component_instances,
    instance_targets,
    instances_from_probabilities,
)
from unet.runtime.metadata import InstanceParams


def two_touching_squares() -> np.ndarray:
    labels = np.zeros((8, 12), dtype=np.int32)
    labels[1:7, 1:6] = 1
    labels[1:7, 6:11] = 2
    return labels


def test_instance_targets_mark_outer_ring_and_shared_border_as_boundary():
    targets = instance_targets(two_touching_squares(), boundary_width=1)
    assert targets[0].tolist() == [BACKGROUND] * 12
    # Row 3 crosses both squares: edge pixels and the two touching columns are boundary.
    assert targets[3].tolist() == [0, 2, 1, 1, 1, 2, 2, 1, 1, 1, 2, 0]
    assert (targets[2:6, 2:5] == INTERIOR).all()


def test_wider_boundary_stays_inside_objects():
    labels = two_touching_squares()
    targets = instance_targets(labels, boundary_width=2)
    assert not ((targets == BOUNDARY) & (labels == 0)).any()
    assert targets[3].tolist() == [0, 2, 2, 1, 2, 2, 2, 2, 1, 2, 2, 0]


def probabilities_from_targets(targets: np.ndarray) -> np.ndarray:
    return np.eye(3, dtype=np.float32)[targets]


def test_watershed_separates_touching_objects_that_components_merge():
    labels = two_touching_squares()
    probabilities = probabilities_from_targets(instance_targets(labels, 1))
    separated = instances_from_probabilities(probabilities, InstanceParams(min_size=1))
    assert separated.max() == 2
    assert instance_scores(labels, separated)["f1@0.9"] == 1.0
    merged = connected_component_instances(labels > 0)
    assert merged.max() == 1
    assert instance_scores(labels, merged)["f1@0.5"] == pytest.approx(2 / 3)  # IoU exactly 0.5 counts


def test_small_objects_are_removed_and_holes_filled():
    probabilities = np.zeros((20, 20, 3), dtype=np.float32)
    probabilities[..., BACKGROUND] = 1
    probabilities[2:12, 2:12] = [0, 1, 0]
    probabilities[6, 6] = [1, 0, 0]  # a one-pixel hole
    probabilities[16:18, 16:18] = [0, 1, 0]  # a 4-pixel speck
    instance_labels = instances_from_probabilities(probabilities, InstanceParams(min_size=10))
    assert instance_labels.max() == 1
    assert instance_labels[6, 6] == 1
    assert instance_labels[16:18, 16:18].max() == 0


def unseeded_strip_probabilities() -> np.ndarray:
    """An object with a confident interior, and a 4 px wide strip the model calls boundary only."""
    probabilities = np.zeros((12, 20, 3), dtype=np.float32)
    probabilities[..., BACKGROUND] = 1
    probabilities[2:10, 2:10] = [0, 1, 0]
    probabilities[2:10, 13:17] = [0, 0, 1]
    return probabilities


def test_a_foreground_region_no_seed_reaches_is_an_object_or_background_as_the_params_say():
    probabilities = unseeded_strip_probabilities()
    kept = instances_from_probabilities(probabilities, InstanceParams(min_size=4))
    dropped = instances_from_probabilities(probabilities, InstanceParams(min_size=4, keep_unseeded=False))
    assert kept.max() == 2
    assert (kept[2:10, 13:17] == 2).all()
    assert dropped.max() == 1
    assert (dropped[2:10, 2:10] == 1).all()
    assert (dropped[2:10, 13:17] == 0).all()


def test_instance_post_processing_refuses_the_wrong_channel_count():
    with pytest.raises(ValueError, match=r"needs \(H, W, 3\) or \(H, W, 4\) probabilities, got \(4, 4, 2\)"):
        instances_from_probabilities(np.zeros((4, 4, 2), np.float32))


def test_iou_matrix_known_values():
    true = np.array([[1, 1, 0, 2]])
    predicted = np.array([[1, 0, 0, 2]])
    np.testing.assert_allclose(iou_matrix(true, predicted), [[0.5, 0.0], [0.0, 1.0]])


def test_identical_labels_score_one_everywhere():
    labels = two_touching_squares()
    scores = instance_scores(labels, labels)
    assert scores["f1@0.5"] == scores["f1@0.9"] == scores["dsb_score"] == 1.0
    assert scores["panoptic_quality"] == 1.0 and scores["mean_matched_iou"] == 1.0


def test_shifted_object_matches_at_low_but_not_high_threshold():
    true = np.zeros((10, 10), dtype=int)
    true[2:8, 2:6] = 1  # 24 px
    predicted = np.zeros_like(true)
    predicted[2:8, 3:7] = 1  # shifted one column: overlap 18, union 30 -> IoU 0.6
    scores = instance_scores(true, predicted)
    assert scores["f1@0.5"] == 1.0 and scores["f1@0.6"] == 1.0 and scores["f1@0.7"] == 0.0
    # DSB: matched at 0.5, 0.55, 0.6 -> 3 of 10 thresholds
    assert scores["dsb_score"] == pytest.approx(0.3)
    assert scores["panoptic_quality"] == pytest.approx(0.6)


def test_split_object_gives_one_match_and_one_false_positive():
    true = np.zeros((4, 8), dtype=int)
    true[:, :] = 1
    predicted = np.zeros_like(true)
    predicted[:, :5] = 1  # IoU 20/32 = 0.625
    predicted[:, 5:] = 2
    scores = instance_scores(true, predicted)
    assert (scores["tp@0.5"], scores["fp@0.5"], scores["fn@0.5"]) == (1, 1, 0)
    assert scores["f1@0.5"] == pytest.approx(2 / 3)


def test_merged_objects_give_one_match_and_one_miss():
    true = two_touching_squares()
    predicted = (true > 0).astype(int)  # IoU with each square 30/60 = 0.5
    scores = instance_scores(true, predicted)
    assert (scores["tp@0.5"], scores["fp@0.5"], scores["fn@0.5"]) == (1, 0, 1)
    assert scores["recall@0.5"] == 0.5


def test_missing_objects_and_empty_images():
    true = two_touching_squares()
    empty = np.zeros_like(true)
    assert instance_scores(true, empty)["f1@0.5"] == 0.0
    assert instance_scores(empty, true)["precision@0.5"] == 0.0
    both_empty = instance_scores(empty, empty)
    assert both_empty["f1@0.5"] == 1.0 and both_empty["dsb_score"] == 1.0
    assert not np.isnan(both_empty["panoptic_quality"])


def test_dataset_scores_sum_counts_before_ratios():
    true = two_touching_squares()
    scores = dataset_instance_scores([true, np.zeros_like(true)], [true, true])
    assert (scores["tp@0.5"], scores["fp@0.5"], scores["fn@0.5"]) == (2, 2, 0)
    assert scores["true_count"] == 2 and scores["predicted_count"] == 4


def test_foreground_without_a_confident_interior_is_still_an_object():
    probabilities = np.zeros((12, 12, 3), dtype=np.float32)
    probabilities[..., BACKGROUND] = 1
    probabilities[2:8, 2:8] = [0.1, 0.3, 0.6]  # foreground, but boundary wins everywhere
    instance_labels = instances_from_probabilities(probabilities, InstanceParams(min_size=4))
    assert instance_labels.max() == 1 and (instance_labels[2:8, 2:8] == 1).all()


def test_distance_markers_split_touching_interiors_that_component_markers_merge():
    yy, xx = np.mgrid[0:20, 0:36]
    two_discs = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 64) | ((yy - 10) ** 2 + (xx - 25) ** 2 <= 64)
    probabilities = np.zeros((20, 36, 3), dtype=np.float32)
    probabilities[..., BACKGROUND] = ~two_discs
    probabilities[..., INTERIOR] = two_discs  # no boundary predicted where they touch
    merged = instances_from_probabilities(probabilities, InstanceParams(min_size=4))
    split = instances_from_probabilities(probabilities, InstanceParams(min_size=4, marker_min_distance=4))
    assert merged.max() == 1 and split.max() == 2
    assert split[10, 10] != split[10, 25]


def two_touching_discs() -> np.ndarray:
    yy, xx = np.mgrid[0:24, 0:40]
    labels = np.zeros((24, 40), dtype=np.int32)
    labels[(yy - 12) ** 2 + (xx - 11) ** 2 <= 81] = 1
    labels[((yy - 12) ** 2 + (xx - 28) ** 2 <= 81) & (labels == 0)] = 2
    return labels


def test_each_object_has_a_core_at_its_centre_and_touching_cores_lie_apart():
    labels = two_touching_discs()
    labels[1:3, 1:3] = 3  # a 2x2 object: all edge, its whole self is its core
    targets = instance_targets(labels, boundary_width=2, core_fraction=0.5)
    assert targets[12, 11] == targets[12, 28] == CORE
    assert (targets[1:3, 1:3] == CORE).all()
    cores = targets == CORE
    assert set(np.unique(labels[cores])) == {1, 2, 3}
    # Radius 9 (disc 2 loses a column to disc 1): each core reaches about 4 px from its centre,
    # so through the centres the cores leave 9 px between them where the discs meet (20 | 21).
    assert np.flatnonzero(cores[12]).tolist() == list(range(7, 16)) + list(range(25, 33))
    assert instance_targets(labels, 2)[cores].tolist().count(CORE) == 0  # 3 classes without a fraction


def test_core_fraction_outside_zero_to_one_is_refused():
    with pytest.raises(Exception, match=r"core_fraction must be in \[0, 1\), got 1.0"):
        instance_targets(two_touching_discs(), core_fraction=1.0)


def bridged_core_probabilities() -> np.ndarray:
    """4-class probabilities of two touching discs where the model sees no boundary between them."""
    labels = two_touching_discs()
    targets = instance_targets(labels, boundary_width=2, core_fraction=0.5)
    probabilities = np.eye(4, dtype=np.float32)[targets]
    bridge = (labels > 0) & (targets == BOUNDARY) & (np.abs(np.mgrid[0:24, 0:40][1] - 19.5) < 3)
    probabilities[bridge] = [0, 1, 0, 0]
    return probabilities


def test_cores_seed_the_watershed_and_split_objects_whose_interiors_touch():
    labels = two_touching_discs()
    probabilities = bridged_core_probabilities()
    three_class = probabilities[..., :3] + np.eye(3, dtype=np.float32)[INTERIOR] * probabilities[..., 3:]
    merged = instances_from_probabilities(three_class, InstanceParams(min_size=4))
    split = instances_from_probabilities(probabilities, InstanceParams(min_size=4, core_fraction=0.5))
    assert merged.max() == 1
    assert split.max() == 2
    assert instance_scores(labels, split)["f1@0.9"] == 1.0
