"""U-Net builders: the textbook small U-Net and the configurable one people train."""

from __future__ import annotations

import keras
from keras import layers

from unet.runtime.errors import UserError

UPSAMPLING_MODES = ("transpose", "resize")


def simple_unet(input_shape: tuple[int | None, int | None, int] = (128, 128, 1)) -> keras.Model:
    """The classic small U-Net: two poolings, one conv per level, sigmoid output (56,689 params)."""
    inputs = keras.Input(shape=input_shape, name="image")
    level1 = layers.Conv2D(16, 3, activation="relu", padding="same", name="enc1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(level1)
    level2 = layers.Conv2D(32, 3, activation="relu", padding="same", name="enc2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(level2)
    x = layers.Conv2D(64, 3, activation="relu", padding="same", name="bottleneck")(x)
    x = layers.Conv2DTranspose(32, 2, strides=2, padding="same", name="up2")(x)
    x = layers.Concatenate(name="skip2")([x, level2])
    x = layers.Conv2D(32, 3, activation="relu", padding="same", name="dec2")(x)
    x = layers.Conv2DTranspose(16, 2, strides=2, padding="same", name="up1")(x)
    x = layers.Concatenate(name="skip1")([x, level1])
    x = layers.Conv2D(16, 3, activation="relu", padding="same", name="dec1")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="simple_unet")


def build_unet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 1),
    num_classes: int = 1,
    depth: int = 4,
    base_filters: int = 16,
    batch_norm: bool = True,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    name: str = "unet",
    synchronized_batch_norm: bool = False,
    max_filters: int | None = None,
) -> keras.Model:
    """A U-Net with `depth` poolings, two 3x3 convs per level and filters doubling per level.

    max_filters: no level gets more filters than this. Most weights sit in the deepest levels,
    so a capped U-Net can be wider where the image is sharp for the same file size: base 20
    capped at 96 has 0.99M weights against 1.10M for base 12 uncapped, at depth 4.
    num_classes == 1 gives one sigmoid channel (binary); >= 2 gives a softmax over classes.
    Dropout, if any, is applied at the bottleneck, where it regularises without blurring edges.
    synchronized_batch_norm: batch statistics over the global batch when training is split over
    replicas (then it trains as on one device), at one all-reduce per normalisation.
    """
    _check_unet_arguments(input_shape, num_classes, depth, base_filters, dropout, upsampling)
    if max_filters is not None and max_filters < base_filters:
        raise UserError(f"max_filters ({max_filters}) must be at least base_filters ({base_filters})")

    def level_filters(level: int) -> int:
        return min(base_filters * 2**level, max_filters or base_filters * 2**level)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = _conv_block(x, level_filters(level), batch_norm, f"enc{level + 1}", synchronized_batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level + 1}")(x)
    x = _conv_block(x, level_filters(depth), batch_norm, "bottleneck", synchronized_batch_norm)
    if dropout > 0:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(depth)):
        filters = level_filters(level)
        x = _upsample(x, filters, upsampling, f"up{level + 1}")
        x = layers.Concatenate(name=f"skip{level + 1}")([x, skips[level]])
        x = _conv_block(x, filters, batch_norm, f"dec{level + 1}", synchronized_batch_norm)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    outputs = layers.Conv2D(num_classes, 1, activation=activation, name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def _conv_block(x, filters: int, batch_norm: bool, name: str, synchronized: bool = False):
    for index in (1, 2):
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=not batch_norm, name=f"{name}_conv{index}"
        )(x)
        if batch_norm:
            # Momentum 0.9: moving statistics settle within the few hundred steps of a CPU run.
            x = layers.BatchNormalization(momentum=0.9, synchronized=synchronized,
                                          name=f"{name}_bn{index}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def _upsample(x, filters: int, mode: str, name: str):
    if mode == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=name)(x)
    # Resize + conv avoids the checkerboard artefacts transpose convolutions can leave.
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_resize")(x)
    return layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)


def _check_unet_arguments(input_shape, num_classes, depth, base_filters, dropout, upsampling):
    if len(input_shape) != 3:
        raise UserError(f"input_shape must be (height, width, channels), got {input_shape}")
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise UserError(f"input channels must be 1 or 3, got {channels}")
    if depth < 1:
        raise UserError(f"depth must be at least 1, got {depth}")
    divisor = 2**depth
    for axis, size in (("height", height), ("width", width)):
        if size is not None and (size < divisor or size % divisor):
            raise UserError(
                f"input {axis} {size} is not divisible by 2**depth = {divisor} (depth {depth}); "
                f"use a multiple of {divisor} or a smaller depth"
            )
    if num_classes < 1:
        raise UserError(f"num_classes must be 1 (binary) or at least 2, got {num_classes}")
    if base_filters < 1:
        raise UserError(f"base_filters must be positive, got {base_filters}")
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"dropout must be in [0, 1), got {dropout}")
    if upsampling not in UPSAMPLING_MODES:
        raise UserError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")


def load_model(path: str, compile: bool = False) -> keras.Model:
    """Load a `.keras` model with safe_mode on; the project's losses and metrics are registered."""
    import unet.training.losses  # noqa: F401  (registers the custom objects)

    return keras.saving.load_model(path, compile=compile, safe_mode=True)
