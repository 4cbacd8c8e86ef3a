"""The pictures the app and the edge runner show: blends, outlines and disagreement maps."""

import numpy as np

from unet.runtime.overlay import (
    DISAGREEMENT_COLOUR,
    class_overlay,
    disagreement_overlay,
    instance_colours,
    instance_overlay,
)

COLOURS = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]


def gradient_image() -> np.ndarray:
    return np.tile(np.arange(0, 240, 10, dtype=np.uint8), (24, 1))


def test_class_overlay_blends_foreground_and_leaves_background_untouched() -> None:
    image = gradient_image()
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[4:10, 4:10] = 1
    mask[12:20, 2:22] = 2
    overlay = class_overlay(image, mask, COLOURS, opacity=0.25)
    assert overlay.shape == (24, 24, 3) and overlay.dtype == np.uint8
    background = mask == 0
    np.testing.assert_array_equal(overlay[background], np.repeat(image[background][:, None], 3, axis=1))
    expected = np.round(image[..., None] * 0.75 + np.asarray(COLOURS, dtype=np.float64)[mask] * 0.25)
    np.testing.assert_allclose(overlay[~background], expected[~background], atol=1)


def test_class_overlay_at_full_opacity_is_the_palette() -> None:
    mask = np.zeros((24, 24), dtype=np.uint8)
    mask[5:15, 5:15] = 2
    overlay = class_overlay(gradient_image(), mask, COLOURS, opacity=1.0)
    np.testing.assert_array_equal(overlay[mask == 2], np.tile(COLOURS[2], (100, 1)))


def test_instance_overlay_outlines_each_object_in_white() -> None:
    image = np.full((20, 20), 100, dtype=np.uint8)
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[2:8, 2:8] = 1
    labels[2:8, 8:14] = 2
    overlay = instance_overlay(image, labels, opacity=0.5)
    assert (overlay[labels == 0] == 100).all()
    outline = np.zeros_like(labels, dtype=bool)
    outline[2, 2:14] = outline[7, 2:14] = True
    outline[2:8, [2, 7, 8, 13]] = True
    assert (overlay[outline] == 255).all()
    colours = instance_colours(2)
    for instance in (1, 2):
        inside = labels == instance
        inside &= ~outline
        expected = np.round(100 * 0.5 + colours[instance] * 0.5)
        np.testing.assert_allclose(overlay[inside], np.tile(expected, (inside.sum(), 1)), atol=1)


def test_disagreement_overlay_marks_exactly_the_differing_pixels() -> None:
    image = gradient_image()
    first = np.zeros(image.shape, dtype=np.uint8)
    second = first.copy()
    second[3:6, 10:20] = 1
    picture = disagreement_overlay(image, first, second)
    assert picture.mode == "P"
    overlay = np.asarray(picture.convert("RGB"))
    differ = first != second
    assert (overlay[differ] == DISAGREEMENT_COLOUR).all()
    np.testing.assert_allclose(overlay[~differ][:, 0], np.round(image[~differ] * 0.6), atol=1)
