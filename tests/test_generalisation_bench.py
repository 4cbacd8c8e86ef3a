"""The generalisation bench's check of label completeness, on hand-drawn label maps."""

import numpy as np

from bench.generalisation import off_label_share


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
