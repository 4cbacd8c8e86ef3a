"""The radial probe's own measure of what it found (bench/radial_probe.py), on hand-drawn labels."""

import numpy as np
import pytest

from bench.radial_probe import Setting, found_shapes, parse_settings


def test_found_shapes_gives_each_nucleus_its_best_objects_area_and_its_pieces():
    true = np.zeros((10, 20), np.int32)
    true[:, :10] = 1  # 100 px
    true[:, 10:] = 2  # 100 px
    predicted = np.zeros_like(true)
    predicted[:5, :10] = 1  # the upper half of nucleus 1
    predicted[5:, :10] = 2  # its lower half: nucleus 1 in two pieces
    predicted[:, 8:20] = 3  # nucleus 2 and a sliver of nucleus 1, 120 px
    ratios, pieces = found_shapes(true, predicted)
    # Nucleus 1: pieces 1 and 2 keep 40 px each after object 3 takes two columns.
    np.testing.assert_allclose(ratios, [40 / 100, 120 / 100])
    np.testing.assert_array_equal(pieces, [2, 1])


def test_found_shapes_marks_a_nucleus_nothing_overlaps():
    true = np.zeros((8, 8), np.int32)
    true[1:4, 1:4] = 1
    ratios, pieces = found_shapes(true, np.zeros_like(true))
    np.testing.assert_array_equal(ratios, [0.0])
    np.testing.assert_array_equal(pieces, [0])


def test_settings_are_probability_and_overlap_pairs_optionally_seeded():
    settings = parse_settings("0.5:0.2,0.6:0.1:seeded")
    assert settings == [Setting(0.5, 0.2, seeded=False), Setting(0.6, 0.1, seeded=True)]
    assert [str(setting) for setting in settings] == ["0.5:0.2", "0.6:0.1:seeded"]


def test_a_setting_with_an_unknown_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="0.5:0.2:grown"):
        parse_settings("0.5:0.2:grown")
