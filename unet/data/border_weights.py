"""The U-Net paper's pixel weight map (Ronneberger et al., 2015, section 3, equation 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

w_c balances the class frequencies of the label map; d1 and d2 are the distances to the
nearest and the second-nearest object. The border term lands on the pixels that separate
objects: in the paper's binary labels those are the background pixels; in the instance
targets (background, interior, boundary) every pixel that is not interior, so the boundary
ring where two nuclei touch weighs as the paper's thin gap does.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from unet.runtime.errors import UserError

# The border term is dropped where it is below this: (d1 + d2) is then beyond about 3.7 sigma.
NEGLIGIBLE_TERM = 1e-3


def border_weight_map(
    object_labels: np.ndarray,
    class_targets: np.ndarray,
    border_weight: float = 10.0,
    border_sigma: float = 5.0,
    separating_classes: tuple[int, ...] = (0,),
) -> np.ndarray:
    """Per-pixel loss weights (H, W) float32, the paper's w(x).

    object_labels: (H, W) object ids, 0 = background. class_targets: (H, W) class indices,
    the training target the weights go with. The border term is added on pixels whose class is
    in `separating_classes`. w_c(x) = N / (K * n_c(x)) for the K classes present, N pixels and
    n_c pixels of class c, so w_c averages 1 over the map.
    """
    if object_labels.shape != class_targets.shape:
        raise UserError(f"object labels {object_labels.shape} and class targets {class_targets.shape} "
                        "differ in shape")
    if border_weight < 0 or border_sigma <= 0:
        raise UserError(f"the border weight must be >= 0 and its sigma > 0 px, got w0={border_weight}, "
                        f"sigma={border_sigma}")
    weights = class_balance(class_targets)
    if border_weight == 0:
        return weights
    nearest, second = two_nearest_object_distances(object_labels, reach=_reach(border_weight, border_sigma))
    border = border_weight * np.exp(-((nearest + second) ** 2) / (2.0 * border_sigma**2))
    separating = np.isin(class_targets, separating_classes)
    weights[separating] += border[separating].astype(np.float32)
    return weights


def class_balance(class_targets: np.ndarray) -> np.ndarray:
    """w_c: (H, W) float32, N / (K * n_c) at each pixel of class c, K the classes present."""
    classes, inverse, counts = np.unique(class_targets, return_inverse=True, return_counts=True)
    per_class = class_targets.size / (len(classes) * counts)
    return per_class[inverse.reshape(class_targets.shape)].astype(np.float32)


def two_nearest_object_distances(object_labels: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """(d1, d2): Euclidean distance of each pixel to its nearest and second-nearest object, (H, W)
    float64 each; 0 inside an object for its own. Distances beyond `reach` are not computed: inf.
    """
    nearest = np.full(object_labels.shape, np.inf)
    second = np.full(object_labels.shape, np.inf)
    margin = math.ceil(reach)
    height, width = object_labels.shape
    for index, box in enumerate(ndimage.find_objects(object_labels), start=1):
        if box is None:
            continue
        rows = slice(max(0, box[0].start - margin), min(height, box[0].stop + margin))
        cols = slice(max(0, box[1].start - margin), min(width, box[1].stop + margin))
        distance = ndimage.distance_transform_edt(object_labels[rows, cols] != index)
        window_nearest, window_second = nearest[rows, cols], second[rows, cols]
        window_second[...] = np.minimum(window_second, np.maximum(window_nearest, distance))
        window_nearest[...] = np.minimum(window_nearest, distance)
    return nearest, second


def _reach(border_weight: float, border_sigma: float) -> float:
    """d1 + d2 beyond which the border term is below NEGLIGIBLE_TERM (d2 alone is at most this)."""
    if border_weight <= NEGLIGIBLE_TERM:
        return 0.0
    return border_sigma * math.sqrt(2.0 * math.log(border_weight / NEGLIGIBLE_TERM))
