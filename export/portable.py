"""The portable variant: raw RGB bytes in, class probabilities out, preprocessing in the graph.

    uint8 (1, h, w, 3) raw RGB at the model's input size
      -> [float32 preprocessing graph: the runtime's `preprocess` after its resize]
      -> [the int8-float-io network, byte for byte]
      -> float32 (1, h, w, K) probabilities

A phone app or MediaPipe's ImageSegmenter resizes the camera frame and feeds bytes; nothing
else of this project's code is needed to get its class probabilities. The preprocessing is
converted in float32 on its own and joined in front of the already converted int8-float-io
model, so the integer network, its weights and its quantisation are exactly the ones the
report gates, and no quantiser sees the normalisation (quantised, a uniform image made its
divisor int8 zero, and the graph fell into 7 XNNPACK partitions).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from unet.runtime.errors import UserError
from unet.runtime.metadata import ModelMetadata
from unet.runtime.preprocess import LUMA_WEIGHTS, MIN_PERCENTILE_RANGE


def percentile_rank(percentile: float, count: int) -> tuple[int, float]:
    """numpy's 'linear' percentile of `count` sorted values: the lower rank and the fraction to the next."""
    position = (percentile / 100.0) * (count - 1)
    lower = math.floor(position)
    return lower, position - lower


def _lerp(lower, upper, fraction: float):
    """numpy's `_lerp`, with its switch to the upper end at fraction >= 0.5."""
    if fraction >= 0.5:
        return upper - (upper - lower) * (1.0 - fraction)
    return lower + (upper - lower) * fraction


def preprocessing_model(metadata: ModelMetadata):
    """A Keras model: uint8 RGB (1, h, w, 3) -> the float32 tensor `preprocess` gives (1, h, w, C).

    Percentile bounds come from two TOPK_V2 ops on the image's int32 values, numpy's linear
    interpolation between the two ranks around each percentile, then the same float32
    arithmetic as `normalise_intensities`, and luma with the runtime's weights.
    """
    import keras

    height, width = metadata.input_size
    count = height * width * 3
    normalisation = metadata.normalisation
    ops = keras.ops

    luma_kernel = LUMA_WEIGHTS.reshape(1, 1, 3, 1)

    class Preprocess(keras.layers.Layer):
        def call(self, image):
            pixels = ops.cast(image, "float32")
            if normalisation.method == "unit":
                scaled = ops.clip(pixels / 255.0, 0.0, 1.0)
            else:
                low, spread = percentile_bounds(image)
                scaled = ops.clip((pixels - low) / ops.maximum(spread, MIN_PERCENTILE_RANGE), 0.0, 1.0)
            if metadata.channels == 1:
                scaled = ops.conv(scaled, ops.convert_to_tensor(luma_kernel), padding="valid")
            return scaled

    def percentile_bounds(image):
        """The low percentile and the spread to the high one; a flat image's low lies above every value.

        Each TOPK_V2 reads the fastest form measured here at 256x256x3: the high end's few
        largest uint8 values as they are (0.20 ms, 0.33 as int32), the low end's smallest as
        negated int32 (0.49 ms; uint8 bit-flipped, 0.81).
        """
        low_rank, low_fraction = percentile_rank(normalisation.low, count)
        high_rank, high_fraction = percentile_rank(normalisation.high, count)
        flat = ops.reshape(image, [-1])
        smallest = -ops.cast(ops.top_k(-ops.cast(flat, "int32"), k=min(low_rank + 2, count))[0], "float32")
        largest = ops.cast(ops.top_k(flat, k=count - high_rank)[0], "float32")
        # largest[j] is the (count - 1 - j)-th smallest value.
        low = _lerp(smallest[low_rank], smallest[min(low_rank + 1, count - 1)], low_fraction)
        high = _lerp(largest[count - 1 - high_rank], largest[max(count - 2 - high_rank, 0)], high_fraction)
        spread = high - low
        # The runtime gives a flat image (spread <= MIN_PERCENTILE_RANGE) zeros: moving its low
        # end above 255 makes every pixel clip to 0 without another full-size op.
        is_flat = 1.0 - ops.minimum(spread / MIN_PERCENTILE_RANGE, 1.0)
        return low + is_flat * 256.0, spread

    image = keras.Input((height, width, 3), batch_size=1, dtype="uint8", name="image")
    return keras.Model(image, Preprocess(name="preprocess")(image), name="portable_preprocess")


def preprocessing_tflite(metadata: ModelMetadata) -> bytes:
    """The preprocessing graph alone, converted in float32 (uint8 in, float32 out)."""
    import tensorflow as tf

    model = preprocessing_model(metadata)
    height, width = metadata.input_size
    with tempfile.TemporaryDirectory() as workdir:
        saved = Path(workdir) / "preprocess"
        model.export(str(saved), format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec((1, height, width, 3), tf.uint8, name="image")])
        return tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()


def prepend_graph(front: bytes, back: bytes) -> bytes:
    """One .tflite that runs `front`, then `back` on front's output (one input, one output each).

    Tensors, buffers and operator codes of `back` are appended after those of `front`; back's
    operators read front's output where they read back's input. Back's model-level entries
    (runtime version, conversion metadata) are kept; its signature is pointed at the new ends.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    first = flatbuffer_utils.convert_bytearray_to_object(bytearray(front))
    second = flatbuffer_utils.convert_bytearray_to_object(bytearray(back))
    (graph_a,), (graph_b,) = first.subgraphs, second.subgraphs
    if len(graph_a.outputs) != 1 or len(graph_b.inputs) != 1 or len(graph_b.outputs) != 1:
        raise UserError("prepend_graph joins graphs of one input and one output each")
    joint_tensor = graph_a.outputs[0]
    joint_a, joint_b = graph_a.tensors[joint_tensor], graph_b.tensors[graph_b.inputs[0]]
    if list(joint_a.shape) != list(joint_b.shape) or joint_a.type != joint_b.type:
        raise UserError(f"the preprocessing gives {list(joint_a.shape)} (type {joint_a.type}) but the "
                        f"network takes {list(joint_b.shape)} (type {joint_b.type})")
    tensor_offset, buffer_offset = len(graph_a.tensors), len(first.buffers)
    code_offset = len(first.operatorCodes)

    def moved(index: int) -> int:
        if index == graph_b.inputs[0]:
            return joint_tensor
        return index + tensor_offset if index >= 0 else index

    for tensor in graph_b.tensors:
        tensor.buffer += buffer_offset
    for operator in graph_b.operators:
        operator.inputs = [moved(i) for i in operator.inputs]
        operator.outputs = [moved(i) for i in operator.outputs]
        operator.opcodeIndex += code_offset
        if operator.intermediates is not None:
            operator.intermediates = [moved(i) for i in operator.intermediates]
    joined = second
    graph_b.tensors = graph_a.tensors + graph_b.tensors
    graph_b.operators = graph_a.operators + graph_b.operators
    graph_b.inputs = list(graph_a.inputs)
    graph_b.outputs = [moved(i) for i in graph_b.outputs]
    joined.buffers = first.buffers + second.buffers
    joined.operatorCodes = first.operatorCodes + second.operatorCodes
    for entry in joined.metadata or []:
        entry.buffer += buffer_offset
    for signature in joined.signatureDefs or []:
        signature.inputs[0].tensorIndex = graph_b.inputs[0]
        signature.inputs[0].name = b"image"
        signature.outputs[0].tensorIndex = graph_b.outputs[0]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(joined))


# Why the preprocessing's ops that XNNPACK does not take are there (export/graph_health.py).
OUTSIDE_XNNPACK_REASON = (
    "the in-graph percentile normalisation: integer order statistics of the image (CAST, NEG, "
    "TOPK_V2, STRIDED_SLICE, RESHAPE), which XNNPACK has no kernels for; the float arithmetic after "
    "them runs in XNNPACK")


def portable_tflite(metadata: ModelMetadata, int8_float_io: bytes) -> tuple[bytes, bytes]:
    """The portable variant's bytes from the int8-float-io variant's, and its preprocessing graph alone."""
    preprocessing = preprocessing_tflite(metadata)
    return prepend_graph(preprocessing, int8_float_io), preprocessing

