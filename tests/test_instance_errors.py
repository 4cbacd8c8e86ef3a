"""The kinds of missed objects, on hand-drawn label maps."""

import numpy as np

from unet.runtime.instance_errors import ErrorCounts, dataset_error_counts, error_counts
from unet.runtime.instance_metrics import iou_matrix, overlap_counts


def labelled_pair() -> np.ndarray:
    """Two 6x6 labelled objects that share an edge, and a third apart."""
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8] = 1
    labels[2:8, 8:14] = 2
    labels[12:18, 12:18] = 3
    return labels


def test_a_perfect_answer_matches_everything_and_misses_nothing():
    labels = labelled_pair()
    assert error_counts(labels, labels) == ErrorCounts(labelled=3, matched=3, predicted=3)


def test_two_touching_objects_found_as_one_count_one_merge():
    labels = labelled_pair()
    predicted = labels.copy()
    predicted[predicted == 2] = 1
    counts = error_counts(labels, predicted)
    # The merged object still matches one of the two (IoU 0.5); the other is missed as merged.
    assert counts == ErrorCounts(labelled=3, matched=2, merged=1, predicted=2)
    assert counts.missed == 1


def test_an_object_cut_into_pieces_is_split():
    labels = labelled_pair()
    predicted = labels.copy()
    predicted[12:14, 12:18] = 4
    predicted[14:16, 12:18] = 5
    predicted[16:18, 12:18] = 6
    counts = error_counts(labels, predicted)
    assert (counts.matched, counts.split, counts.merged, counts.not_found) == (2, 1, 0, 0)


def test_an_object_mostly_left_out_is_not_found_and_a_false_object_lies_on_no_label():
    labels = labelled_pair()
    predicted = labels.copy()
    predicted[12:18, 12:18] = 0
    predicted[12:14, 12:14] = 3  # a corner: a quarter of the object
    predicted[0:2, 16:20] = 7  # on plain background
    counts = error_counts(labels, predicted)
    assert (counts.not_found, counts.on_no_label, counts.predicted) == (1, 1, 4)


def test_one_object_covering_most_of_a_label_at_low_iou_is_badly_shaped():
    labels = labelled_pair()
    predicted = labels.copy()
    predicted[10:20, 10:20] = 3  # covers all 36 labelled pixels, IoU 0.36
    counts = error_counts(labels, predicted)
    assert (counts.matched, counts.badly_shaped, counts.merged, counts.split) == (2, 1, 0, 0)


def test_counts_add_up_over_a_dataset_and_an_empty_image_counts_nothing():
    labels = labelled_pair()
    empty = np.zeros_like(labels)
    total = dataset_error_counts([labels, empty, labels], [labels, empty, empty])
    assert total == ErrorCounts(labelled=6, matched=3, not_found=3, predicted=3)
    assert total.to_dict()["not_found"] == 3


def test_overlap_counts_keep_the_background_in_row_and_column_zero_even_where_there_is_none():
    full = np.array([[1, 1], [2, 2]])
    predicted = np.array([[0, 5], [5, 5]])
    np.testing.assert_array_equal(overlap_counts(full, predicted), [[0, 0], [1, 1], [0, 2]])
    np.testing.assert_allclose(iou_matrix(full, predicted), [[1 / 4], [2 / 3]])
