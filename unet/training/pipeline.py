"""tf.data input pipelines: random scale, crop and mask-consistent augmentation for training;
the inference `preprocess` and windows for validation, so validation scores what users will get.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from PIL import Image

from unet.runtime.imageio import resize_array
from unet.runtime.metadata import ModelMetadata, Normalisation
from unet.runtime.preprocess import (
    normalise_intensities,
    normalise_to_channels,
    prepare_pixels,
    preprocess,
)
from unet.runtime.tiling import window_starts


@dataclass
class Augmentation:
    """Random changes applied to each training crop (masks follow every geometric one)."""

    flips: bool = True
    rotate90: bool = True
    scale: tuple[float, float] = (0.7, 1.4)
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.5)
    noise: float = 0.03
    instance_brightness: float = 1.0


def prepare_training_images(images: list[np.ndarray], metadata: ModelMetadata) -> list[np.ndarray]:
    """Raw images -> full-size (H, W, C) float32 in [0, 1], exactly as inference normalises."""
    return [normalise_to_channels(image, metadata) for image in images]


def training_dataset(
    images: list[np.ndarray],
    targets: list[np.ndarray],
    input_size: tuple[int, int],
    batch_size: int,
    seed: int,
    augmentation: Augmentation = Augmentation(),  # noqa: B008  (frozen defaults)
    instance_labels: list[np.ndarray] | None = None,
    normalisation: Normalisation | None = None,
    first_batch: int = 0,
    pipeline: int = 0,
    pipelines: int = 1,
    per_replica_batch: int | None = None,
    pixel_weights: list[np.ndarray] | None = None,
) -> tf.data.Dataset:
    """An endless stream of augmented (image, target) batches, the same whoever reads it.

    images: (H, W, C) float32 in [0, 1], any size; targets: (H, W) class indices.
    Global batch k holds the samples at positions k * batch_size ... + batch_size - 1 of one
    sequence: the images in a fresh shuffled order each pass (drawn from `seed` and the pass),
    so a dataset of 12 large images still gives full batches; the caller sets steps per epoch.
    Every random choice of a sample (scale, crop, flips, rotation, intensity, per-object
    brightness) is drawn from (`seed`, its position) by stateless ops, so the stream is a pure
    function of the position: training that resumes at `first_batch` sees what it would have
    seen, and input pipeline `pipeline` of `pipelines` (one per worker) reads only its own
    share of each global batch, in batches of `per_replica_batch`, whatever the worker count.
    With `instance_labels` and `augmentation.instance_brightness` > 1, half of the samples are
    served with each object's brightness scaled on its own (see `scale_instance_brightness`).
    With `pixel_weights` ((H, W) float32 per image, unet.data.border_weights), each target is
    (h, w, 2): the class and the pixel's loss weight, which follows the class through every
    geometric change.
    """
    if batch_size % pipelines:
        raise ValueError(f"a global batch of {batch_size} does not split over {pipelines} input pipelines")
    share = batch_size // pipelines
    channels = images[0].shape[-1]
    target_channels = 1 if pixel_weights is None else 2
    spread = augmentation.instance_brightness
    owners = None
    if instance_labels is not None and spread > 1:
        from skimage.segmentation import expand_labels

        # An object's glow reaches past its outline; scale it with the object.
        owners = [expand_labels(labels, distance=2) for labels in instance_labels]
    orders: dict[int, np.ndarray] = {}

    def image_at(position: int) -> int:
        sweep, offset = divmod(position, len(images))
        if sweep not in orders:
            orders.clear()
            orders[sweep] = np.random.default_rng([seed, sweep]).permutation(len(images))
        return int(orders[sweep][offset])

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray, np.int64]]:
        batch = first_batch
        while True:
            start = batch * batch_size + pipeline * share
            for position in range(start, start + share):
                index = image_at(position)
                image = images[index]
                if owners is not None:
                    sample_rng = np.random.default_rng([seed, position, 1])
                    if sample_rng.random() < 0.5:
                        image = scale_instance_brightness(image, owners[index], spread, sample_rng,
                                                          normalisation)
                target = targets[index].astype(np.float32)
                if pixel_weights is not None:
                    target = np.stack([target, pixel_weights[index]], axis=-1)
                yield image, target.reshape(*target.shape[:2], target_channels), np.int64(position)
            batch += 1

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec((None, None, channels), tf.float32),
            tf.TensorSpec((None, None, target_channels), tf.float32),
            tf.TensorSpec((), tf.int64),
        ),
    )
    height, width = input_size

    def augment(image: tf.Tensor, target: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), position]), 10)
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.random.stateless_uniform([], seeds[0], *augmentation.scale)
        # Never scale below the crop size: a small image is enlarged to fit instead.
        scale = tf.maximum(scale, tf.reduce_max(tf.constant([height, width], tf.float32) / size))
        scaled_size = tf.cast(tf.math.ceil(size * scale), tf.int32)
        image = tf.image.resize(image, scaled_size, method="bilinear")
        target = tf.image.resize(target, scaled_size, method="nearest")
        stacked = tf.concat([image, target], axis=-1)
        crop_shape = [height, width, channels + target_channels]
        stacked = tf.image.stateless_random_crop(stacked, crop_shape, seeds[1])
        if augmentation.flips:
            stacked = tf.image.stateless_random_flip_left_right(stacked, seeds[2])
            stacked = tf.image.stateless_random_flip_up_down(stacked, seeds[3])
        if augmentation.rotate90 and height == width:
            stacked = tf.image.rot90(stacked, tf.random.stateless_uniform([], seeds[4], 0, 4, dtype=tf.int32))
        image, target = stacked[..., :channels], stacked[..., channels:]
        image = _augment_intensity(image, augmentation, seeds[5:])
        return image, target

    return (
        dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(per_replica_batch or share)
        .prefetch(tf.data.AUTOTUNE)
    )


def scale_instance_brightness(
    image: np.ndarray,
    owners: np.ndarray,
    spread: float,
    rng: np.random.Generator,
    normalisation: Normalisation | None = None,
) -> np.ndarray:
    """Scale each object's signal above the background by its own factor in [1/spread, 1].

    image: (H, W, C) float32 in [0, 1]; owners: (H, W) object ids, 0 = background. With a
    percentile `normalisation`, the result is stretched again as inference would stretch it.
    """
    background_level = np.percentile(image[owners == 0], 50) if (owners == 0).any() else 0.0
    factors = np.exp(rng.uniform(-np.log(spread), 0.0, size=int(owners.max()) + 1)).astype(np.float32)
    factors[0] = 1.0
    scaled = background_level + (image - background_level) * factors[owners][..., None]
    if normalisation is not None and normalisation.method == "percentile":
        return normalise_intensities(scaled, normalisation)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _augment_intensity(image: tf.Tensor, augmentation: Augmentation, seeds: tf.Tensor) -> tf.Tensor:
    """Gamma, contrast, brightness and noise, each drawn from its own row of `seeds` (5, 2)."""
    gamma = tf.random.stateless_uniform([], seeds[0], *augmentation.gamma)
    image = tf.pow(tf.clip_by_value(image, 0.0, 1.0), gamma)
    contrast = tf.random.stateless_uniform([], seeds[1], *augmentation.contrast)
    mean = tf.reduce_mean(image)
    image = (image - mean) * contrast + mean
    if augmentation.brightness > 0:
        image += tf.random.stateless_uniform([], seeds[2], -augmentation.brightness, augmentation.brightness)
    if augmentation.noise > 0:
        sigma = tf.random.stateless_uniform([], seeds[3], 0.0, augmentation.noise)
        image += tf.random.stateless_normal(tf.shape(image), seeds[4], stddev=sigma)
    return tf.clip_by_value(image, 0.0, 1.0)


def validation_arrays(
    images: list[np.ndarray], targets: list[np.ndarray], metadata: ModelMetadata,
    scales: list[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validation images and targets -> inputs (N, h, w, C) float32 and targets (N, h, w, 1).

    Without `scales`, each whole image goes through `preprocess` (resized to the model input),
    its target resized nearest. With them, each image is rescaled by its scale (model-input
    pixels per image pixel, at least the input size over the image's shorter side), normalised
    whole, and cut into model-sized windows that cover it, as tiled inference cuts it.
    """
    if scales is None:
        inputs = np.concatenate([preprocess(image, metadata)[0] for image in images])
        resized_targets = np.stack(
            [resize_array(t.astype(np.uint8), metadata.input_size, Image.Resampling.NEAREST) for t in targets]
        )
        return inputs, resized_targets[..., None].astype(np.float32)
    window_h, window_w = metadata.input_size
    windows, window_targets = [], []
    for image, target, scale in zip(images, targets, scales, strict=True):
        scaled_size = (math.ceil(target.shape[0] * scale), math.ceil(target.shape[1] * scale))
        if scaled_size[0] < window_h or scaled_size[1] < window_w:
            raise ValueError(f"scale {scale} makes a {target.shape[:2]} image {scaled_size}, "
                             f"smaller than the model input {metadata.input_size}")
        prepared = prepare_pixels(resize_array(image, scaled_size, Image.Resampling.BILINEAR), metadata)
        scaled_target = resize_array(target.astype(np.uint8), scaled_size, Image.Resampling.NEAREST)
        for top in window_starts(scaled_size[0], window_h, overlap=0.0):
            for left in window_starts(scaled_size[1], window_w, overlap=0.0):
                windows.append(prepared[top : top + window_h, left : left + window_w])
                window_targets.append(scaled_target[top : top + window_h, left : left + window_w])
    return np.stack(windows).astype(np.float32), np.stack(window_targets)[..., None].astype(np.float32)
