"""The radial probe's own measures and its split of objects by polygons (bench/radial_probe.py),
on hand-drawn labels."""

import numpy as np
import pytest

from bench.radial_probe import Setting, found_shapes, parse_settings, split_by_polygons


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


def test_settings_are_probability_and_overlap_with_an_optional_mode():
    settings = parse_settings("0.5:0.2,0.6:0.1:split,0.5:0.2:split@0.7")
    assert settings == [Setting(0.5, 0.2), Setting(0.6, 0.1, "split"), Setting(0.5, 0.2, "split", 0.7)]
    assert [str(setting) for setting in settings] == ["0.5:0.2", "0.6:0.1:split", "0.5:0.2:split@0.7"]


def test_a_dip_ratio_belongs_to_the_split_mode_only():
    with pytest.raises(ValueError, match="0.5:0.2:seeded@0.7"):
        parse_settings("0.5:0.2:seeded@0.7")


def test_a_setting_with_an_unknown_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="0.5:0.2:grown"):
        parse_settings("0.5:0.2:grown")


def test_an_object_holding_two_polygon_centres_is_split_and_the_others_are_kept():
    objects = np.zeros((12, 30), np.int32)
    objects[2:10, 1:17] = 1  # two touching squares the class head merged
    objects[2:10, 20:28] = 2  # a nucleus with one short polygon
    polygons = np.zeros_like(objects)
    polygons[4:8, 3:7] = 1
    polygons[4:8, 11:15] = 2
    polygons[5:7, 23:25] = 3
    centres = np.array([[5, 5], [5, 13], [5, 24]])
    # Brightest at the squares' centres, lowest at their shared edge (x = 8).
    probability = np.tile(1.0 - np.abs((np.arange(30) % 8) - 4.5) / 5, (12, 1))
    result = split_by_polygons(objects, polygons, centres, probability)
    assert len(np.unique(result[objects == 1])) == 2
    np.testing.assert_array_equal(np.unique(result[2:10, 1:9]), [result[5, 5]])
    np.testing.assert_array_equal(np.unique(result[2:10, 9:17]), [result[5, 13]])
    # The one-polygon object keeps the class head's whole outline, not the polygon's.
    np.testing.assert_array_equal(result[objects == 2], 2)
    np.testing.assert_array_equal(result[objects == 0], 0)


def two_squares_with_a_polygon_each() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    objects = np.zeros((10, 18), np.int32)
    objects[1:9, 1:17] = 1
    polygons = np.zeros_like(objects)
    polygons[3:7, 3:7] = 1
    polygons[3:7, 11:15] = 2
    return objects, polygons, np.array([[5, 5], [5, 13]])


def test_a_cut_along_a_dip_in_probability_stays():
    objects, polygons, centres = two_squares_with_a_polygon_each()
    # Peak 0.9 at each square's centre, 0.1 and 0.3 on either side of the cut (x = 8 | 9).
    probability = np.tile(1.0 - np.abs((np.arange(18) % 8) - 4.5) / 5, (10, 1))
    result = split_by_polygons(objects, polygons, centres, probability, dip_ratio=0.7)
    assert result[5, 5] != result[5, 13]
    np.testing.assert_array_equal(np.unique(result[1:9, 1:9]), [result[5, 5]])


def test_a_cut_where_the_probability_stays_high_is_joined_again():
    objects, polygons, centres = two_squares_with_a_polygon_each()
    # One long nucleus: flat probability, two polygons that each cover half of it.
    probability = np.full(objects.shape, 0.8)
    assert len(np.unique(split_by_polygons(objects, polygons, centres, probability)[objects > 0])) == 2
    result = split_by_polygons(objects, polygons, centres, probability, dip_ratio=0.7)
    assert len(np.unique(result[objects > 0])) == 1
    np.testing.assert_array_equal(result[objects == 0], 0)


def test_objects_without_polygons_are_kept_whole():
    objects = np.zeros((6, 6), np.int32)
    objects[1:5, 1:5] = 1
    result = split_by_polygons(objects, np.zeros_like(objects), np.zeros((0, 2), int), np.ones((6, 6)))
    np.testing.assert_array_equal(result, objects)
