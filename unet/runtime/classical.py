"""The classical baseline a nuclei U-Net must beat: Otsu threshold plus distance-transform watershed.

    image -> percentile normalisation -> Gaussian smoothing -> Otsu threshold -> fill holes
          -> drop small specks -> distance transform -> peaks at least `min_distance` apart
          -> watershed of the negated distance inside the foreground

Its parameters are chosen on training sources only (`choose_classical_params`), never on the
images it is scored on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import product

import numpy as np
from scipy import ndimage

from unet.runtime.instances import without_small_regions
from unet.runtime.metadata import Normalisation
from unet.runtime.preprocess import normalise_intensities, to_channels

SMOOTHING_CANDIDATES = (0.0, 1.0, 2.0)
MIN_DISTANCE_CANDIDATES = (3, 5, 7, 10, 14)


@dataclass(frozen=True)
class ClassicalParams:
    smoothing_sigma: float = 1.0
    min_distance: int = 5
    min_size: int = 12

    def to_dict(self) -> dict:
        return asdict(self)


def otsu_watershed(image: np.ndarray, params: ClassicalParams = ClassicalParams()) -> np.ndarray:
    """Image (H, W[, 3]), bright objects on a dark background -> instance ids (H, W) int32."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.measure import label
    from skimage.segmentation import relabel_sequential, watershed

    gray = to_channels(normalise_intensities(image, Normalisation()), 1)[..., 0]
    if params.smoothing_sigma > 0:
        gray = ndimage.gaussian_filter(gray, params.smoothing_sigma)
    if gray.max() <= gray.min():
        return np.zeros(gray.shape, dtype=np.int32)
    foreground = ndimage.binary_fill_holes(gray > threshold_otsu(gray))
    foreground = without_small_regions(foreground, params.min_size)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = peak_local_max(distance, min_distance=params.min_distance, labels=label(foreground),
                           exclude_border=False)
    markers = np.zeros(gray.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    instance_labels = watershed(-distance, markers, mask=foreground)
    return relabel_sequential(instance_labels)[0].astype(np.int32)


def choose_classical_params(images: list[np.ndarray], instance_labels: list[np.ndarray]) -> ClassicalParams:
    """The candidate with the best pooled F1@0.5 on these (training) images."""
    from unet.runtime.instance_metrics import dataset_instance_scores

    best, best_f1 = ClassicalParams(), -1.0
    for sigma, distance in product(SMOOTHING_CANDIDATES, MIN_DISTANCE_CANDIDATES):
        params = ClassicalParams(sigma, distance)
        predicted = [otsu_watershed(image, params) for image in images]
        f1 = dataset_instance_scores(instance_labels, predicted)["f1@0.5"]
        if f1 > best_f1:
            best, best_f1 = params, f1
    return best
