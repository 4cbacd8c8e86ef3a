"""The U-Net paper's border weight map, on hand-drawn label maps."""

import math

import numpy as np
import pytest

from unet.data.border_weights import border_weight_map, class_balance, two_nearest_object_distances
from unet.runtime.errors import UserError
from unet.runtime.instances import BOUNDARY, INTERIOR, instance_targets


def touching_squares(gap: int) -> np.ndarray:
    """Two 10x10 squares side by side, `gap` background columns between them, in a 30x40 map."""
    labels = np.zeros((30, 40), np.uint16)
    labels[10:20, 5:15] = 1
    labels[10:20, 15 + gap:25 + gap] = 2
    return labels


def test_the_highest_weight_lies_in_the_gap_between_two_squares_with_the_papers_value():
    labels = touching_squares(gap=2)
    classes = (labels > 0).astype(np.uint8)
    weights = border_weight_map(labels, classes, border_weight=10.0, border_sigma=5.0)
    row, col = np.unravel_index(np.argmax(weights), weights.shape)
    assert 10 <= row < 20 and col in (15, 16)
    # Both gap pixels lie 1 px from one square and 2 px from the other: d1 + d2 = 3.
    background_balance = labels.size / (2 * (labels == 0).sum())
    expected = background_balance + 10.0 * math.exp(-(3**2) / (2 * 5.0**2))
    assert weights[row, col] == pytest.approx(expected, rel=1e-6)
    # Inside the squares only the class balance counts; far background gets almost nothing more.
    assert weights[15, 10] == pytest.approx(labels.size / (2 * (labels > 0).sum()))
    assert weights[0, 0] - background_balance < 0.01


def test_a_one_pixel_gap_weighs_w0_times_exp_of_minus_two_over_sigma_squared():
    labels = touching_squares(gap=1)
    weights = border_weight_map(labels, (labels > 0).astype(np.uint8), border_weight=10.0, border_sigma=5.0)
    border_term = weights[15, 15] - class_balance((labels > 0).astype(np.uint8))[15, 15]
    assert border_term == pytest.approx(10.0 * math.exp(-4 / 50), rel=1e-6)


def test_d1_and_d2_are_the_distances_to_the_nearest_and_second_nearest_object():
    labels = np.zeros((9, 20), np.uint16)
    labels[4, 2] = 1
    labels[4, 10] = 2
    labels[4, 17] = 3
    nearest, second = two_nearest_object_distances(labels, reach=100)
    assert (nearest[4, 6], second[4, 6]) == (4.0, 4.0)
    assert (nearest[4, 13], second[4, 13]) == (3.0, 4.0)
    assert (nearest[4, 10], second[4, 10]) == (0.0, 7.0)
    near_only, second_near_only = two_nearest_object_distances(labels, reach=2)
    assert near_only[4, 6] == np.inf and second_near_only[4, 11] == np.inf and near_only[4, 11] == 1.0


def test_touching_nuclei_weigh_most_on_the_boundary_ring_where_they_meet():
    labels = np.zeros((32, 48), np.uint16)
    labels[8:24, 6:22] = 1
    labels[8:24, 22:38] = 2  # touching, no background between them
    targets = instance_targets(labels, boundary_width=2)
    weights = border_weight_map(labels, targets, separating_classes=(0, BOUNDARY))
    meeting = weights[16, 20:24]
    outer_edge = weights[16, 6:8]
    assert (targets[16, 20:24] == BOUNDARY).all()
    assert meeting.min() > outer_edge.max() + 5
    assert np.ptp(weights[targets == INTERIOR]) == 0


def test_without_the_border_term_only_the_class_balance_remains_and_it_averages_one():
    labels = touching_squares(gap=2)
    classes = (labels > 0).astype(np.uint8)
    weights = border_weight_map(labels, classes, border_weight=0.0)
    assert weights.mean() == pytest.approx(1.0)
    assert np.array_equal(weights, class_balance(classes))


def test_bad_settings_and_shapes_are_refused_by_name():
    labels = touching_squares(gap=2)
    with pytest.raises(UserError, match="sigma"):
        border_weight_map(labels, labels.astype(np.uint8), border_sigma=0)
    with pytest.raises(UserError, match="differ in shape"):
        border_weight_map(labels, labels[:, :-1].astype(np.uint8))
