"""The shared preprocess/postprocess path: shapes, ranges, channel conversion, round trips."""

import itertools

import numpy as np
import pytest

from unet.runtime.metadata import ModelMetadata, Normalisation
from unet.runtime.preprocess import normalise_intensities, postprocess, preprocess, to_channels
from unet.runtime.tiling import tiled_probabilities, window_starts


def test_percentile_normalisation_maps_percentiles_to_unit_range():
    image = np.arange(101, dtype=np.uint16).reshape(1, 101) * 100
    normalised = normalise_intensities(image, Normalisation("percentile", 10, 90))
    assert normalised.dtype == np.float32
    assert normalised[0, 10] == pytest.approx(0.0) and normalised[0, 90] == pytest.approx(1.0)
    assert normalised[0, 50] == pytest.approx(0.5)
    assert normalised.min() == 0.0 and normalised.max() == 1.0


def test_percentile_normalisation_is_invariant_to_bit_depth_and_exposure():
    rng = np.random.default_rng(0)
    image8 = rng.integers(0, 200, (32, 32)).astype(np.uint8)
    image16 = image8.astype(np.uint16) * 257 + 1000
    method = Normalisation()
    np.testing.assert_allclose(normalise_intensities(image8, method),
                               normalise_intensities(image16, method), atol=1e-5)


def test_unit_normalisation_and_flat_images():
    assert normalise_intensities(np.array([[0, 255]], np.uint8), Normalisation("unit")).tolist() == [[0, 1]]
    assert normalise_intensities(np.full((3, 3), 7, np.uint8), Normalisation()).max() == 0.0


def test_channel_conversion_uses_luma_and_repeats_gray():
    rgb = np.array([[[1.0, 0.0, 0.0]]], dtype=np.float32)
    assert to_channels(rgb, 1)[0, 0, 0] == pytest.approx(0.299)
    assert to_channels(np.ones((2, 2), np.float32), 3).shape == (2, 2, 3)


def test_preprocess_shapes_and_postprocess_back_to_original_size(binary_metadata):
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3)).astype(np.uint8)
    tensor, info = preprocess(image, binary_metadata)
    assert tensor.shape == (1, 32, 32, 1) and tensor.dtype == np.float32
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0
    output = np.zeros((1, 32, 32, 1), dtype=np.float32)
    output[0, :, 16:] = 0.9
    segmentation = postprocess(output, info, binary_metadata)
    assert segmentation.class_mask.shape == (50, 70)
    assert segmentation.class_mask[:, :30].max() == 0 and segmentation.class_mask[:, 40:].min() == 1


def test_postprocess_threshold_override_and_softmax_argmax():
    binary = ModelMetadata(input_size=(4, 4), channels=1, class_names=["b", "f"])
    output = np.full((1, 4, 4, 1), 0.4, dtype=np.float32)
    _, info = preprocess(np.zeros((4, 4), np.uint8), binary)
    assert postprocess(output, info, binary).class_mask.max() == 0
    assert postprocess(output, info, binary, threshold=0.3).class_mask.min() == 1
    three = ModelMetadata(input_size=(4, 4), channels=1, class_names=["a", "b", "c"])
    probabilities = np.zeros((1, 4, 4, 3), dtype=np.float32)
    probabilities[..., 2] = 1.0
    assert postprocess(probabilities, info, three).class_mask.tolist() == [[2] * 4] * 4


def test_postprocess_refuses_output_that_does_not_fit_the_metadata(binary_metadata):
    _, info = preprocess(np.zeros((8, 8), np.uint8), binary_metadata)
    with pytest.raises(ValueError, match="3 channels but the metadata describes 2 classes"):
        postprocess(np.zeros((1, 32, 32, 3), np.float32), info, binary_metadata)


def test_window_starts_cover_the_whole_length():
    assert window_starts(100, 100, 0.25) == [0]
    assert window_starts(40, 100, 0.25) == [0]
    starts = window_starts(250, 100, 0.25)
    assert starts[0] == 0 and starts[-1] == 150
    assert all(b - a <= 75 for a, b in itertools.pairwise(starts))


def test_tiling_an_identity_model_returns_the_normalised_image(binary_metadata):
    image = np.random.default_rng(1).integers(0, 255, (70, 45)).astype(np.uint8)
    probabilities, _ = tiled_probabilities(image, binary_metadata, lambda tensor: tensor)
    expected = normalise_intensities(image, binary_metadata.normalisation)
    assert probabilities.shape == (70, 45, 1)
    np.testing.assert_allclose(probabilities[..., 0], expected, atol=1e-5)
