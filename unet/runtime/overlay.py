"""Pictures of results: masks blended over images, instance outlines, disagreement maps, PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

from unet.runtime.atomic import atomic_path
from unet.runtime.metadata import Normalisation
from unet.runtime.preprocess import Segmentation, normalise_intensities, to_channels

DISAGREEMENT_COLOUR = (255, 0, 255)


def display_image(image: np.ndarray) -> np.ndarray:
    """Any decoded image -> (H, W, 3) uint8 for display (16-bit and float stretched to 8-bit)."""
    if image.dtype == np.uint8:
        rgb = to_channels(image, 3)
    else:
        stretched = normalise_intensities(image, Normalisation("percentile", 0.5, 99.5))
        rgb = to_channels(np.round(stretched * 255).astype(np.uint8), 3)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def blend_colours(base: np.ndarray, where: np.ndarray, colours: np.ndarray, opacity: float) -> np.ndarray:
    """A copy of uint8 `base` (H, W, 3) with `colours` (N, 3) blended over the N pixels of `where`.

    Only the covered pixels are computed: a full-image float blend costs several times more.
    """
    result = base.copy()
    covered = np.flatnonzero(where)
    pixels = result.reshape(-1, 3)
    blended = pixels[covered] * np.float32(1 - opacity) + colours * np.float32(opacity)
    pixels[covered] = np.round(blended).astype(np.uint8)
    return result


def class_overlay(
    image: np.ndarray, class_mask: np.ndarray, colours: list[tuple[int, int, int]], opacity: float = 0.5
) -> np.ndarray:
    """Blend class colours over the image; background (class 0) is left untouched."""
    palette = np.asarray(colours, dtype=np.uint8)
    foreground = class_mask > 0
    classes = np.clip(class_mask[foreground], 0, len(palette) - 1)
    return blend_colours(display_image(image), foreground, palette[classes], float(opacity))


def instance_colours(count: int) -> np.ndarray:
    """(count + 1, 3) uint8 colours, id 0 black; the same id always gets the same colour.

    Each channel is 60-255 from an integer hash of the id, in 32-bit arithmetic that the
    browser's overlay (web/overlay.js, instanceColour) repeats exactly.
    """
    mask = np.uint64(0xFFFFFFFF)
    state = (np.arange(count + 1, dtype=np.uint64) * np.uint64(2654435761)) & mask
    colours = np.zeros((count + 1, 3), dtype=np.uint8)
    for channel in range(3):
        state = ((state ^ (state >> np.uint64(15))) * np.uint64(2246822519)) & mask
        colours[:, channel] = 60 + state % np.uint64(196)
    colours[0] = 0
    return colours


def instance_overlay(image: np.ndarray, instance_labels: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """Each instance in its own colour with a white outline, so touching objects stay distinct."""
    colours = instance_colours(int(instance_labels.max()))
    foreground = instance_labels > 0
    result = blend_colours(display_image(image), foreground, colours[instance_labels[foreground]],
                           float(opacity))
    result[find_boundaries(instance_labels, mode="inner")] = 255
    return result


def segmentation_overlay(
    image: np.ndarray, segmentation: Segmentation, colours: list[tuple[int, int, int]],
    opacity: float | None = None,
) -> np.ndarray:
    """Instance overlay for instance models, class overlay otherwise (each at its own default opacity)."""
    blend = {} if opacity is None else {"opacity": opacity}
    if segmentation.instance_labels is not None:
        return instance_overlay(image, segmentation.instance_labels, **blend)
    return class_overlay(image, segmentation.class_mask, colours, **blend)


# The disagreement map is a palette image: index i < 255 is grey (i, i, i), 255 is magenta.
# Grey 0.6 x the mean of R, G and B, looked up by R + G + B; at most 153, below magenta.
DIMMED_GREY = np.round(np.arange(3 * 255 + 1) * (0.6 / 3)).astype(np.uint8)
DISAGREEMENT_PALETTE = [*((grey, grey, grey) for grey in range(255)), DISAGREEMENT_COLOUR]


def disagreement_overlay(image: np.ndarray, first_mask: np.ndarray, second_mask: np.ndarray) -> Image.Image:
    """Grayed image with the pixels where two masks differ in magenta.

    A palette image: the same pixels as RGB, encoded as PNG in a fifth of the time.
    """
    rgb = display_image(image)
    # Adding the channel planes is ten times faster than numpy's sum over a length-3 last axis.
    indices = DIMMED_GREY[rgb[..., 0].astype(np.uint16) + rgb[..., 1] + rgb[..., 2]]
    indices[first_mask != second_mask] = 255
    return mask_image(indices, DISAGREEMENT_PALETTE)


def mask_image(class_mask: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    """A palette PNG: pixel values are class indices, and viewers show the class colours."""
    image = Image.fromarray(class_mask.astype(np.uint8))
    flat = [channel for colour in colours for channel in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def save_png(image: Image.Image | np.ndarray, path: str | Path) -> Path:
    """Write a PNG atomically (uint16 arrays stay 16-bit)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    with atomic_path(path) as temporary:
        # Written on every request: zlib level 1 encodes a 512x512 overlay 2.5x faster than
        # the default level 6 (14 vs 34 ms) for a file about a quarter larger.
        image.save(temporary, format="PNG", compress_level=1)
    return Path(path)


def save_instance_labels(instance_labels: np.ndarray, path: str | Path) -> Path:
    """uint16 PNG of instance ids (0 = background)."""
    if instance_labels.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError(f"{instance_labels.max()} instances do not fit a uint16 PNG")
    return save_png(instance_labels.astype(np.uint16), path)
