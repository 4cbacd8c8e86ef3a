"""Where instances are separated from one model output: two methods, named once for every bench.

The runtime separates at the model's resolution and resizes the labels (unet.runtime.preprocess
.postprocess). The method it replaced resized the probabilities to the image and separated
there, with the size parameters (model-input pixels) scaled to the image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from unet.runtime.metadata import ModelMetadata

AT_MODEL_RESOLUTION = "separated at model resolution"
AT_IMAGE_SIZE = "separated at image size"


def instances_at_image_size(output: np.ndarray, size: tuple[int, int], metadata: ModelMetadata) -> np.ndarray:
    """output: (h, w, K) probabilities at the model's resolution -> (H, W) instance ids at `size`."""
    from PIL import Image

    from unet.runtime.imageio import resize_array
    from unet.runtime.instances import instances_from_probabilities

    scale = float(np.sqrt(size[0] * size[1] / (output.shape[0] * output.shape[1])))
    params = dataclasses.replace(
        metadata.instance, min_size=max(1, round(metadata.instance.min_size * scale**2)),
        marker_min_distance=round(metadata.instance.marker_min_distance * scale))
    return instances_from_probabilities(resize_array(output, size, Image.Resampling.BILINEAR), params)
