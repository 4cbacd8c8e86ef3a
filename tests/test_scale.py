"""Instances at model resolution, and segmenting at the scale where objects have the trained diameter."""

import numpy as np
import pytest
from scipy import ndimage

from unet.runtime.backends import Backend
from unet.runtime.errors import UserError
from unet.runtime.metadata import InstanceParams, ModelMetadata
from unet.runtime.scale import (
    MAX_SPREAD_MAGNIFICATION,
    median_diameter,
    needs_second_pass,
    scale_for_diameter,
    spread_magnification,
)
from unet.runtime.segmenter import Segmenter


class ThresholdBackend(Backend):
    """A stand-in instance model: bright pixels are objects, their outer pixel ring is boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        self.shapes.append(tensor.shape)
        objects = tensor[0, ..., 0] > 0.5
        interior = ndimage.binary_erosion(objects)
        probabilities = np.zeros((*objects.shape, 3), np.float32)
        probabilities[..., 0] = ~objects
        probabilities[..., 1] = interior
        probabilities[..., 2] = objects & ~interior
        return probabilities[None]


def instance_metadata(object_diameter: float | None = 20.0, min_size: int = 16,
                      keep_unseeded: bool = True) -> ModelMetadata:
    return ModelMetadata(input_size=(64, 64), channels=1, class_names=["background", "interior", "boundary"],
                         mode="instance", instance=InstanceParams(min_size=min_size, keep_unseeded=keep_unseeded),
                         object_diameter=object_diameter)


def discs(size: int, radius: float, count: int = 4) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size), np.uint8)
    step = size / count
    for row in range(count):
        for col in range(count):
            cy, cx = (row + 0.5) * step, (col + 0.5) * step
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 200
    return image


def test_median_diameter_of_known_discs():
    labels = np.zeros((64, 64), np.int32)
    yy, xx = np.mgrid[:64, :64]
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    labels[(yy - 45) ** 2 + (xx - 45) ** 2 <= 100] = 2
    assert median_diameter(labels) == pytest.approx(20.0, abs=0.5)
    assert median_diameter(np.zeros((4, 4), np.int32)) is None


def test_scale_factor_brings_objects_to_the_trained_diameter():
    metadata = instance_metadata(object_diameter=20.0)
    assert scale_for_diameter(metadata, 40.0) == pytest.approx(0.5)
    assert scale_for_diameter(metadata, 10.0) == pytest.approx(2.0)
    assert not needs_second_pass(metadata, 24.0) and needs_second_pass(metadata, 26.0)
    with pytest.raises(UserError, match="positive"):
        scale_for_diameter(metadata, 0)
    with pytest.raises(UserError, match="records no object_diameter"):
        scale_for_diameter(instance_metadata(object_diameter=None), 10.0)


def test_instances_are_separated_at_model_resolution_and_returned_at_image_size():
    # 256 px image -> 64 px model input: a 6 px disc (28 px^2) is under 2 px^2 at the model's
    # resolution, where min_size (16 model pixels) is defined, so it is dropped.
    image = discs(256, radius=12, count=4)
    image[2:8, 2:8] = 200
    segmenter = Segmenter(ThresholdBackend(), instance_metadata(min_size=4))
    result = segmenter.segment(image)
    labels = result.segmentation.instance_labels
    assert labels.shape == (256, 256) and result.segmentation.class_mask.shape == (256, 256)
    assert result.segmentation.instance_count == 16
    assert result.scale.method == "resize" and result.scale.factor == pytest.approx(0.25)


def test_given_diameter_rescales_then_tiles_and_maps_back():
    image = discs(128, radius=20, count=2)  # 40 px objects; trained for 20
    backend = ThresholdBackend()
    segmenter = Segmenter(backend, instance_metadata(object_diameter=20.0))
    backend.shapes.clear()
    result = segmenter.segment(image, object_diameter=40.0)
    assert result.scale.method == "given" and result.scale.factor == pytest.approx(0.5)
    assert backend.shapes == [(1, 64, 64, 1)]  # 128 px * 0.5 = one 64 px window
    assert result.segmentation.instance_labels.shape == (128, 128)
    assert result.segmentation.instance_count == 4
    assert median_diameter(result.segmentation.instance_labels) == pytest.approx(40, abs=3)


def test_auto_scale_runs_a_second_pass_only_when_the_first_is_off_scale():
    metadata = instance_metadata(object_diameter=20.0, min_size=4)
    segmenter = Segmenter(ThresholdBackend(), metadata)
    # 256 px image with 80 px discs -> 20 px at the 64 px input: already at scale.
    at_scale = segmenter.segment(discs(256, radius=40, count=2), auto_scale=True)
    assert at_scale.scale.passes == 1
    # 256 px image with 16 px discs -> 4 px at the input: rescaled x1.25 and tiled.
    small = segmenter.segment(discs(256, radius=8, count=4), auto_scale=True)
    assert small.scale.passes == 2
    assert small.scale.object_diameter_px == pytest.approx(16, abs=3)
    # The measured factor, rounded to an eighth of an octave (at most 4.4% off).
    assert small.scale.factor == pytest.approx(20 / small.scale.object_diameter_px, rel=0.045)
    assert np.log2(small.scale.factor) * 8 == pytest.approx(round(np.log2(small.scale.factor) * 8))
    assert small.segmentation.instance_count == 16


def squares(sides: list[int]) -> np.ndarray:
    """Instance ids: one square of each side, in a row, 2 px apart."""
    labels = np.zeros((max(sides) + 4, sum(sides) + 2 * len(sides) + 2), np.int32)
    left = 2
    for index, side in enumerate(sides, start=1):
        labels[2:2 + side, left:left + side] = index
        left += side + 2
    return labels


def test_spread_magnification_from_the_area_weighted_median_and_lower_quartile():
    assert spread_magnification(squares([10] * 8)) == 1.0
    # Areas 8 x 64, 4 x 144, 2 x 256 px: the lower quartile of the area is an 8 px square's,
    # the median a 12 px square's; spread 1.5, 1.30 over the allowed 1.15: three eighths of an octave.
    assert spread_magnification(squares([8] * 8 + [12] * 4 + [16] * 2)) == pytest.approx(2 ** (3 / 8))
    assert spread_magnification(squares([5] * 64 + [40] * 2)) == MAX_SPREAD_MAGNIFICATION
    assert spread_magnification(squares([5, 40])) == 1.0  # two objects tell no spread


def test_auto_scale_magnifies_an_image_whose_objects_spread_widely_in_size():
    metadata = instance_metadata(object_diameter=20.0, min_size=4)
    image = np.zeros((128, 128), np.uint8)
    yy, xx = np.mgrid[:128, :128]
    # Four 22 px discs (the area-weighted median: at the trained scale) and eight 11 px ones.
    centres = [(20, 20, 11), (20, 64, 11), (64, 20, 11), (64, 64, 11)]
    centres += [(106, 12 + 15 * k, 5.5) for k in range(8)]
    for cy, cx, radius in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 200
    result = Segmenter(ThresholdBackend(), metadata).segment(image, tile=True, auto_scale=True)
    assert result.scale.passes == 2
    assert result.scale.spread_magnification == result.scale.factor == MAX_SPREAD_MAGNIFICATION
    assert result.segmentation.instance_count == 12


def test_auto_scale_measures_small_objects_that_get_no_seed_at_the_wrong_scale():
    # 3x3 px squares: their eroded interior (1 px) is under the smallest seed (min_size // 4 = 2),
    # so at full resolution they are boundary only and, with keep_unseeded off, no instance.
    metadata = instance_metadata(object_diameter=20.0, min_size=8, keep_unseeded=False)
    image = discs(64, radius=1.5, count=8)
    segmenter = Segmenter(ThresholdBackend(), metadata)
    assert segmenter.segment(image, tile=True).segmentation.instance_count == 0
    result = segmenter.segment(image, auto_scale=True)
    assert result.scale.passes == 2
    assert result.scale.object_diameter_px == pytest.approx(3.4, abs=0.2)
    assert result.segmentation.instance_count == 64


def test_scale_options_are_refused_where_they_cannot_work(binary_metadata):
    segmenter = Segmenter(ThresholdBackend(), instance_metadata())
    with pytest.raises(UserError, match="not both"):
        segmenter.segment(discs(64, 5), object_diameter=10.0, auto_scale=True)

    class Binary(Backend):
        def _run(self, tensor):
            return np.zeros((*tensor.shape[:3], 1), np.float32)

    with pytest.raises(UserError, match="needs an instance model"):
        Segmenter(Binary(), ModelMetadata(**{**binary_metadata.to_dict(), "object_diameter": 10.0,
                                             "normalisation": binary_metadata.normalisation})
                  ).segment(np.zeros((32, 32), np.uint8), auto_scale=True)


def command_line_options(*argv: str, mode: str = "instance"):
    import argparse

    from unet.cli import add_segment_options, segment_options

    parser = argparse.ArgumentParser()
    add_segment_options(parser)
    classes = ["background", "interior", "boundary"] if mode == "instance" else ["background", "a", "b"]
    metadata = ModelMetadata(input_size=(64, 64), channels=1, class_names=classes, mode=mode)
    return segment_options(parser.parse_args(list(argv)), metadata)


def test_instance_models_auto_scale_from_full_resolution_unless_told_otherwise():
    default = command_line_options()
    assert default.auto_scale and default.tile and default.object_diameter is None
    assert not command_line_options("--resize").auto_scale and not command_line_options("--resize").tile
    given = command_line_options("--diameter", "20")
    assert given.object_diameter == 20 and not given.auto_scale
    assert command_line_options("--threshold", "0.3").threshold == 0.3


def test_semantic_models_resize_unless_told_otherwise():
    assert command_line_options(mode="semantic") == command_line_options("--resize", mode="semantic")
    assert command_line_options("--tile", mode="semantic").tile
