"""Keras layers whose TFLite lowering XNNPACK cannot run, rewritten before conversion.

Keras 3 lowers `UpSampling2D(interpolation="nearest")` to RESHAPE and TILE ops; XNNPACK takes
no TILE, so every upsampling splits the graph into another delegate partition with reference
kernels in between (15 partitions on the keras-io Oxford Pets U-Net). The same nearest
upsampling by an integer factor f is f*f copies of the input side by side in the channels
followed by DEPTH_TO_SPACE: two ops XNNPACK runs, in float and in int8, with exactly the same
output. `UpSampling2D(interpolation="bilinear")` already lowers to one RESIZE_BILINEAR, which
XNNPACK runs, so it is left as it is.

XNNPACK takes an int8 ReLU only fused into the op that produces its input. A ReLU whose
input also feeds another branch (the residual path of the keras-io U-Net) stays a RELU op on
its own, outside XNNPACK, in every int8 block. It is rewritten as max(x, 0) = -min(-x, 0):
NEG and MINIMUM, which XNNPACK runs; in float the result is the same number.

The rewritten model is only converted, never saved; `check_rewrite` compares its outputs with
the original's before anything is converted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from unet.runtime.errors import UserError


class NearestUpsamplingDepthToSpace(keras.layers.Layer):
    """Nearest-neighbour upsampling by a square integer factor, as CONCATENATION + DEPTH_TO_SPACE."""

    def __init__(self, factor: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        copies = tf.concat([inputs] * (self.factor * self.factor), axis=-1)
        return tf.nn.depth_to_space(copies, self.factor)

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": self.factor}


class UnfusedRelu(keras.layers.Layer):
    """max(x, 0) spelled -min(-x, 0), so the converter does not turn it back into a lone RELU."""

    def call(self, inputs):
        return -tf.minimum(-inputs, 0.0)


@dataclass(frozen=True)
class Rewrite:
    layer: str
    was: str
    now: str

    def to_dict(self) -> dict:
        return asdict(self)


def _is_plain_relu(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "") == "relu"
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    return False


def _shared_inputs(model: keras.Model) -> set[int]:
    """ids of the tensors that feed more than one layer (a ReLU on one of them cannot fuse)."""
    consumers: dict[int, int] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    return {tensor for tensor, count in consumers.items() if count > 1}


def _replacement(layer: keras.layers.Layer, shared: set[int]) -> tuple[keras.layers.Layer, Rewrite] | None:
    inputs = [tensor for node in layer._inbound_nodes for tensor in node.input_tensors]
    if _is_plain_relu(layer) and any(id(tensor) in shared for tensor in inputs):
        return UnfusedRelu(name=layer.name), Rewrite(
            layer.name, "ReLU on a shared tensor -> RELU outside XNNPACK", "NEG + MINIMUM")
    if not isinstance(layer, keras.layers.UpSampling2D) or layer.interpolation != "nearest":
        return None
    rows, cols = (int(v) for v in layer.size)
    if rows != cols or layer.data_format != "channels_last":
        return None
    was = f"UpSampling2D(size={rows}, nearest) -> RESHAPE + TILE"
    now = "CONCATENATION + DEPTH_TO_SPACE"
    return NearestUpsamplingDepthToSpace(rows, name=layer.name), Rewrite(layer.name, was, now)


def rewrite_for_tflite(model: keras.Model) -> tuple[keras.Model, list[Rewrite]]:
    """A copy of `model` (same weights) with slow-lowering layers replaced, and what was replaced."""
    rewrites: list[Rewrite] = []
    shared = _shared_inputs(model)

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        replaced = _replacement(layer, shared)
        if replaced is None:
            return layer.__class__.from_config(layer.get_config())
        rewrites.append(replaced[1])
        return replaced[0]

    if not any(_replacement(layer, shared) for layer in model.layers):
        return model, []
    try:
        rewritten = keras.models.clone_model(model, clone_function=clone)
        rewritten.set_weights(model.get_weights())
    except Exception as error:  # subclassed or nested models clone_model cannot rebuild
        raise UserError(f"cannot rewrite {model.name} for TFLite ({error}); "
                        "export with --no-rewrite") from error
    return rewritten, rewrites


def check_rewrite(original: keras.Model, rewritten: keras.Model, inputs: list[np.ndarray]) -> float:
    """Largest absolute output difference; every rewrite here must give exactly 0."""
    largest = 0.0
    for tensor in inputs:
        expected = np.asarray(original(tensor, training=False))
        found = np.asarray(rewritten(tensor, training=False))
        largest = max(largest, float(np.abs(expected - found).max()))
    if largest > 0:
        raise UserError(f"the rewritten model differs from the original by up to {largest:.3g}; "
                        "export with --no-rewrite and report this model")
    return largest
