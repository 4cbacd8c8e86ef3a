"""Object scale: segment an image at the scale where its objects have the trained diameter.

Nuclei measure 8 px in one microscope's images and 40 px in another's. A model sees objects
best at the diameter its training showed it (`metadata.object_diameter`, model-input pixels),
so an image whose objects are `d` px across is rescaled by `object_diameter / d` and then
segmented in model-sized windows. `d` comes from the user, or from a first pass whose objects
are measured by `median_diameter` (area-weighted). Training records a plain median: recording
the area-weighted one instead (17.1 px, not 14.2, for the shipped nuclei model) lowered its
held-out F1@0.5 on 8 of 11 generalisation rows (cells3d 0.672 -> 0.625, int8).

One scale serves the whole image, so when its objects differ widely in size, auto-scale
magnifies it further (`spread_magnification`), bringing the smaller ones nearer the trained
diameter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from unet.runtime.errors import UserError
from unet.runtime.metadata import ModelMetadata

# A first pass whose objects are within this factor of the trained diameter is kept as it is.
AUTO_SCALE_TOLERANCE = 1.25
# The same, as help texts and the app say it.
AUTO_SCALE_TOLERANCE_TEXT = f"{AUTO_SCALE_TOLERANCE - 1:.0%}"
# Rescaling never goes beyond these factors (an estimate from a handful of specks is no guide).
SCALE_LIMITS = (0.125, 8.0)
# Measured factors are rounded to powers of 2 ** (1 / STEPS_PER_OCTAVE) (9% apart, well inside
# the tolerance). Backends whose first passes differ by a quantisation step then measure 19.38
# and 19.45 px and still rescale alike: unrounded, those gave 292 and 293 px images and masks
# that agreed on 99.0% of pixels (tflite-runtime on arm64 against LiteRT on x86).
STEPS_PER_OCTAVE = 8
# Size spread: the area-weighted median diameter over the area-weighted lower quartile's. Up
# to SPREAD_ALLOWED an image keeps its scale; beyond it, it is magnified by the excess, at
# most MAX_SPREAD_MAGNIFICATION. Chosen on development data (bench/results/merges.md, "One
# scale for nuclei of many sizes"): simulated nuclei of mixed sizes +0.043 F1@0.5, small
# nuclei +0.034, low light -0.012, elongated -0.019; 1.125 and 1.2 were also measured.
SPREAD_QUANTILE = 0.25
SPREAD_ALLOWED = 1.15
MAX_SPREAD_MAGNIFICATION = 2**0.5


@dataclass(frozen=True)
class ScaleChoice:
    """How an image was scaled for the model.

    method: "resize" (whole image to the model input), "tile" (model-sized windows at the
        image's own scale), "given" (the caller's object diameter) or "auto" (estimated by a
        first pass).
    factor: model-input pixels per image pixel.
    object_diameter_px: the objects' diameter in image pixels (given or measured), if known.
    passes: model passes spent (auto: 1 when the first pass was already at scale, else 2).
    spread_magnification: the part of `factor` that auto-scale added because the objects'
        sizes spread widely (`spread_magnification`); 1 otherwise.
    """

    method: str
    factor: float
    object_diameter_px: float | None = None
    passes: int = 1
    spread_magnification: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def trained_diameter(metadata: ModelMetadata) -> float:
    if metadata.object_diameter is None:
        raise UserError(
            f"model {metadata.name!r} records no object_diameter in its metadata, so it cannot be "
            "rescaled to its objects' size; retrain it with this version, or drop the scale option"
        )
    return metadata.object_diameter


def scale_for_diameter(metadata: ModelMetadata, object_diameter_px: float) -> float:
    """Model-input pixels per image pixel that bring objects of this diameter to the trained one."""
    if not object_diameter_px > 0:
        raise UserError(f"object diameter must be a positive number of pixels, got {object_diameter_px}")
    factor = trained_diameter(metadata) / object_diameter_px
    return float(np.clip(factor, *SCALE_LIMITS))


def scale_for_measured_diameter(metadata: ModelMetadata, measured_px: float) -> float:
    """`scale_for_diameter` of a measured diameter, rounded to a power of 2 ** (1 / STEPS_PER_OCTAVE)."""
    factor = scale_for_diameter(metadata, measured_px)
    return float(2.0 ** (round(np.log2(factor) * STEPS_PER_OCTAVE) / STEPS_PER_OCTAVE))


def median_diameter(instance_labels: np.ndarray) -> float | None:
    """Area-weighted median equivalent-circle diameter of the instances, in pixels (None: none).

    Weighting by area makes the estimate robust to the failure it must survive: a model at the
    wrong scale cuts big textured nuclei into many small fragments. On 40 px cells3d nuclei
    the plain median said 12 px, the area-weighted one 33 px.
    """
    return area_weighted_diameter(instance_labels, 0.5)


def area_weighted_diameter(instance_labels: np.ndarray, quantile: float) -> float | None:
    """The equivalent-circle diameter, in pixels, of the instance at `quantile` of the total
    area, instances sorted by area (None: no instances)."""
    areas = np.bincount(instance_labels.ravel())[1:]
    areas = np.sort(areas[areas > 0])
    if areas.size == 0:
        return None
    cumulative = np.cumsum(areas)
    at_quantile = areas[np.searchsorted(cumulative, cumulative[-1] * quantile)]
    return float(np.sqrt(4.0 * at_quantile / np.pi))


def spread_magnification(instance_labels: np.ndarray) -> float:
    """How much further to magnify an image whose objects spread widely in size: the size
    spread's excess over SPREAD_ALLOWED, rounded to a power of 2 ** (1 / STEPS_PER_OCTAVE),
    between 1 and MAX_SPREAD_MAGNIFICATION. 1 for fewer than three objects."""
    if np.count_nonzero(np.bincount(instance_labels.ravel())[1:]) < 3:
        return 1.0
    spread = median_diameter(instance_labels) / area_weighted_diameter(instance_labels, SPREAD_QUANTILE)
    steps = round(np.log2(max(spread / SPREAD_ALLOWED, 1.0)) * STEPS_PER_OCTAVE)
    return float(min(2.0 ** (steps / STEPS_PER_OCTAVE), MAX_SPREAD_MAGNIFICATION))


def needs_second_pass(metadata: ModelMetadata, measured_in_model_px: float) -> bool:
    ratio = measured_in_model_px / trained_diameter(metadata)
    return not 1 / AUTO_SCALE_TOLERANCE <= ratio <= AUTO_SCALE_TOLERANCE
