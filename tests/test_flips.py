"""Test-time flips (unet.runtime.flips) and their path through the segmenter and command lines."""

import numpy as np
import pytest

from tests.test_scale import ThresholdBackend, command_line_options, discs, instance_metadata
from unet.runtime.flips import FLIP_AXES, flip_averaged
from unet.runtime.segmenter import Segmenter


def running_sum_along_width(tensor: np.ndarray) -> np.ndarray:
    """A stand-in model that sees each row from its left end only."""
    return np.cumsum(tensor, axis=2, dtype=np.float32)


def running_sum_from_top_left(tensor: np.ndarray) -> np.ndarray:
    """A stand-in model that sees the image from its top-left corner only."""
    return np.cumsum(running_sum_along_width(tensor), axis=1)


def test_flip_average_of_a_one_sided_model_by_hand():
    # [1, 2, 3]: running sum [1, 3, 6]; mirrored [3, 2, 1] -> [3, 5, 6] -> flipped back [6, 5, 3].
    # The height flip of a one-row image changes nothing: two of each, mean [3.5, 4, 4.5].
    tensor = np.array([1, 2, 3], np.float32).reshape(1, 1, 3, 1)
    np.testing.assert_allclose(flip_averaged(running_sum_along_width, tensor).ravel(), [3.5, 4.0, 4.5])


@pytest.mark.parametrize("axes", [axes for axes in FLIP_AXES if axes])
def test_flip_averaged_output_follows_a_mirrored_input(axes):
    tensor = np.random.default_rng(3).random((1, 5, 7, 2), dtype=np.float32)
    model = running_sum_from_top_left
    mirrored_first = flip_averaged(model, np.flip(tensor, axes))
    mirrored_after = np.flip(flip_averaged(model, tensor), axes)
    np.testing.assert_allclose(mirrored_first, mirrored_after, rtol=1e-5)
    assert not np.allclose(model(np.flip(tensor, axes)), np.flip(model(tensor), axes))


def test_a_model_that_sees_every_pixel_alone_is_unchanged():
    tensor = np.random.default_rng(4).random((1, 6, 6, 1), dtype=np.float32)
    squared = flip_averaged(np.square, tensor)
    np.testing.assert_allclose(squared, np.square(tensor), rtol=1e-6)
    assert squared.dtype == np.float32


def test_segmenter_makes_four_model_calls_a_window_with_flips():
    backend = ThresholdBackend()
    segmenter = Segmenter(backend, instance_metadata(object_diameter=20.0, min_size=4))
    image = discs(128, radius=20, count=2)
    backend.shapes.clear()
    plain = segmenter.segment(image, object_diameter=40.0)
    assert len(backend.shapes) == 1
    backend.shapes.clear()
    flipped = segmenter.segment(image, object_diameter=40.0, flips=True)
    assert backend.shapes == [(1, 64, 64, 1)] * 4
    # Symmetric discs: the mirrored views agree, so the segmentation does not change.
    np.testing.assert_array_equal(flipped.segmentation.instance_labels, plain.segmentation.instance_labels)


def test_flips_are_an_option_of_every_segment_command_and_keep_the_default_scale():
    assert not command_line_options().flips
    default_with_flips = command_line_options("--flips")
    assert default_with_flips.flips and default_with_flips.auto_scale and default_with_flips.tile
    assert command_line_options("--resize", "--flips").flips
